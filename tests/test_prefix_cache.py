"""Prefix reuse gives the same next-token logits as the uncached engine (TINY_LOGITS_ATOL)."""

from __future__ import annotations

import pytest
import torch

from societies.model_store import prepare_tiny_random
from societies.multi_lora import MultiLoraEngine
from societies.prefix_cache import PrefixCache, static_prefix_ids
from tests.float32 import TINY_LOGITS_ATOL

ATOL = TINY_LOGITS_ATOL
AGENTS = ["ann", "bob", "cy"]


@pytest.fixture(scope="module")
def setup():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = str(prepare_tiny_random())
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    engine = MultiLoraEngine.with_zero_adapters(model, AGENTS, rank=4)
    torch.manual_seed(0)
    for layer in engine.layers.values():  # distinct, non-zero adapters
        layer.lora_A.data.normal_(0, 0.3)
        layer.lora_B.data.normal_(0, 0.3)
    return tokenizer, engine


def _chat(agent, round_text):
    return [
        {
            "role": "system",
            "content": f"You are {agent}. Rules: name the river; matching names win.",
        },
        {"role": "user", "content": round_text},
    ]


def _uncached(tokenizer, engine, agents, prompts):
    enc = tokenizer.pad({"input_ids": prompts}, return_tensors="pt")
    return engine.forward(enc.input_ids, enc.attention_mask, engine.indices(agents))[:, -1, :]


@pytest.mark.parametrize(
    "rounds",
    [
        ["Round 1: pick A or B.", "Round 2: last time you said A and won. Pick A or B."],
        ["x", "a much longer memory of many earlier rounds " * 3],
    ],
)
def test_cached_equals_uncached_over_rounds(setup, rounds):
    tokenizer, engine = setup
    cache = PrefixCache(engine, pad_token_id=tokenizer.pad_token_id)
    row_agents = ["bob", "ann", "cy", "bob"]
    cache.encode({a: static_prefix_ids(tokenizer, _chat(a, "-")) for a in AGENTS})
    assert len(cache) == 3
    for round_text in rounds:  # the same cached heads serve every round
        texts = [round_text, round_text + " now", round_text, "?" + round_text]
        prompts = [
            tokenizer.apply_chat_template(_chat(a, t), tokenize=True, add_generation_prompt=True)
            for a, t in zip(row_agents, texts, strict=True)
        ]
        prompts = [p if isinstance(p, list) else p["input_ids"] for p in prompts]
        cached = cache.forward(row_agents, prompts)
        ref = _uncached(tokenizer, engine, row_agents, prompts)
        torch.testing.assert_close(cached, ref, atol=ATOL, rtol=0)
        assert (cached[0] - cached[3]).abs().max() > 1e-3  # rows really differ


def test_prefix_cache_rejects_stale_or_missing_prefixes(setup):
    tokenizer, engine = setup
    cache = PrefixCache(engine, pad_token_id=tokenizer.pad_token_id)
    cache.encode({"ann": [1, 2, 3]})
    assert cache.prefix_ids("ann") == (1, 2, 3)
    with pytest.raises(KeyError, match="bob"):
        cache.forward(["bob"], [[1, 2, 3, 4]])
    with pytest.raises(ValueError, match="does not extend"):
        cache.forward(["ann"], [[1, 2, 4, 5]])
    with pytest.raises(ValueError, match="does not extend"):
        cache.forward(["ann"], [[1, 2, 3]])
    cache.clear()
    assert len(cache) == 0


def test_static_prefix_ids_is_a_token_prefix(setup):
    tokenizer, _ = setup
    messages = _chat("ann", "Pick A or B.")
    head = static_prefix_ids(tokenizer, messages)
    full = tokenizer(
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
        add_special_tokens=False,
    ).input_ids
    assert 5 < len(head) < len(full) and full[: len(head)] == head
    with pytest.raises(ValueError, match="static_messages"):
        static_prefix_ids(tokenizer, messages, static_messages=2)
