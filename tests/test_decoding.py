"""The decode loop's preallocated key/value cache against transformers' growing one.

``greedy_or_sampled_decode`` writes each step's keys and values into a cache allocated
once (``StaticCache``) instead of concatenating them onto a ``DynamicCache``. Both are
run through the same loop here (the growing cache passed in), with every step's
logits recorded: they agree to TINY_LOGITS_ATOL (attention over the masked, unwritten
positions changes only the summation order), and greedy and seeded sampled tokens are
equal.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from societies import decoding
from tests.float32 import TINY_LOGITS_ATOL

TEXTS = [
    "the cat sat on the mat and looked at the door",
    "hello",
    "a longer prompt, left-padded against the short ones in one batch",
]


class LogitsRecorder(nn.Module):
    """The model, with the last-position logits of every forward kept."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        self.steps: list[torch.Tensor] = []
        self.caches: set[str] = set()

    def forward(self, **kwargs):
        self.caches.add(type(kwargs["past_key_values"]).__name__)
        out = self.model(**kwargs)
        self.steps.append(out.logits[:, -1].clone())
        return out


@pytest.fixture(scope="module")
def model_and_batch(tiny_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    tokenizer.padding_side = "left"
    enc = tokenizer(TEXTS, return_tensors="pt", padding=True, add_special_tokens=False)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()
    return model, enc


def decode(model, enc, growing: bool, **kwargs):
    """Tokens and per-step logits of one decode, with the preallocated or the growing cache."""
    from transformers import DynamicCache

    recorder = LogitsRecorder(model)
    with torch.inference_mode():
        tokens = decoding.greedy_or_sampled_decode(
            recorder,
            enc.input_ids,
            enc.attention_mask,
            10,
            cache=DynamicCache() if growing else None,
            **kwargs,
        )
    assert recorder.caches == {"DynamicCache" if growing else "StaticCache"}
    return tokens, torch.stack(recorder.steps, dim=1)


def test_decode_cache_is_preallocated_for_prompt_and_new_tokens(model_and_batch):
    from transformers import StaticCache

    model, enc = model_and_batch
    cache = decoding.preallocated_cache(model, enc.input_ids.shape[1] + 10)
    assert isinstance(cache, StaticCache)
    assert {layer.max_cache_len for layer in cache.layers} == {enc.input_ids.shape[1] + 10}


def test_preallocated_cache_gives_the_growing_caches_logits_and_tokens(model_and_batch):
    model, enc = model_and_batch
    tokens, logits = decode(model, enc, growing=False)
    ref_tokens, ref_logits = decode(model, enc, growing=True)
    assert logits.shape == (len(TEXTS), 10, model.config.vocab_size)
    torch.testing.assert_close(logits, ref_logits, atol=TINY_LOGITS_ATOL, rtol=0)
    assert torch.equal(tokens, ref_tokens)
    # The rows are decoded, not copied: left padding must not make the rows agree.
    assert not torch.equal(tokens[0], tokens[1])


def test_preallocated_cache_samples_the_same_tokens_for_a_seed(model_and_batch):
    model, enc = model_and_batch
    draws = [
        decode(
            model,
            enc,
            growing=growing,
            temperature=1.0,
            generator=torch.Generator().manual_seed(7),
        )[0]
        for growing in (False, True)
    ]
    assert torch.equal(draws[0], draws[1])
