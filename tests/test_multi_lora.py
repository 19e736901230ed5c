"""Equivalence of the stacked multi-LoRA engine with PEFT (tiny random Llama, fp32).

Tolerance: logits agree to TINY_LOGITS_ATOL (EMBEDDED_LOGITS_ATOL on the real model;
tests/float32.py derives both): the engine folds alpha/r into B and uses bmm instead of
two Linear calls, so only rounding differs; greedy tokens are identical.
"""

from __future__ import annotations

import pytest
import torch

from societies.model_store import prepare_tiny_random
from societies.multi_lora import NO_ADAPTER, MultiLoraEngine
from societies.stacked_lora_linear import TRANSPOSED_FROM_TOKENS, LoraDown
from tests.float32 import EMBEDDED_LOGITS_ATOL, TINY_LOGITS_ATOL

ATOL = TINY_LOGITS_ATOL
AGENTS = ("ann", "bob", "cy")


@pytest.fixture(scope="module")
def tiny_path():
    return str(prepare_tiny_random())


def _base(path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.eval()


def make_peft(path, agents=AGENTS, r=4, alpha=8, seed=0):
    """A PeftModel with distinct, non-zero adapters (lora_B perturbed: PEFT inits it to 0)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = None
    for k, agent in enumerate(agents):
        config = LoraConfig(
            r=r + k, lora_alpha=alpha, target_modules="all-linear", task_type="CAUSAL_LM"
        )
        if model is None:
            model = get_peft_model(_base(path), config, adapter_name=agent)
        else:
            model.add_adapter(agent, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def adapter_dirs(tiny_path, tmp_path_factory):
    peft_model = make_peft(tiny_path)
    root = tmp_path_factory.mktemp("adapters")
    dirs = {}
    for agent in AGENTS:
        peft_model.save_pretrained(root, selected_adapters=[agent])
        dirs[agent] = root / agent
    return peft_model, dirs


def _batch(tokenizer, texts):
    tokenizer.padding_side = "left"
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


@pytest.fixture(scope="module")
def tokenizer(tiny_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_path)


TEXTS = [
    "Pick a name: A, B or C.",
    "hi",
    "The convention in this village is to call the river",
    "Pick a name: A, B or C.",
    "short one",
]
ROW_AGENTS = ["bob", "ann", "__base__", "cy", "bob"]


def _peft_logits(peft_model, enc, names):
    pos = (enc.attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        return peft_model(
            input_ids=enc.input_ids,
            attention_mask=enc.attention_mask,
            position_ids=pos,
            adapter_names=list(names),
            logits_to_keep=1,
        ).logits


def test_forward_matches_peft_mixed_batch(tiny_path, adapter_dirs, tokenizer):
    peft_model, dirs = adapter_dirs
    engine = MultiLoraEngine.from_adapter_dirs(_base(tiny_path), dirs)
    enc = _batch(tokenizer, TEXTS)
    ours = engine.forward(enc.input_ids, enc.attention_mask, engine.indices(ROW_AGENTS))
    theirs = _peft_logits(peft_model, enc, ROW_AGENTS)
    assert ours.shape == theirs.shape == (len(TEXTS), 1, len(tokenizer))
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)
    # The adapters really differ from each other and from the base model, so the
    # equality above is not vacuous.
    assert (ours[0] - ours[3]).abs().max() > 1e-2  # same prompt, bob vs cy
    base_rows = _peft_logits(peft_model, enc, ["__base__"] * len(TEXTS))
    assert (ours[0] - base_rows[0]).abs().max() > 1e-2


def test_forward_matches_single_adapter_runs(tiny_path, adapter_dirs, tokenizer):
    """Each row equals the same prompt alone (no padding) under that adapter alone."""
    peft_model, dirs = adapter_dirs
    engine = MultiLoraEngine.from_adapter_dirs(_base(tiny_path), dirs)
    enc = _batch(tokenizer, TEXTS)
    ours = engine.forward(enc.input_ids, enc.attention_mask, engine.indices(ROW_AGENTS))
    for row, (text, agent) in enumerate(zip(TEXTS, ROW_AGENTS, strict=True)):
        single = _batch(tokenizer, [text])
        with torch.inference_mode():
            if agent == "__base__":
                with peft_model.disable_adapter():
                    ref = peft_model(**single, logits_to_keep=1).logits
            else:
                peft_model.set_adapter(agent)
                ref = peft_model(**single, logits_to_keep=1).logits
        torch.testing.assert_close(ours[row : row + 1], ref, atol=ATOL, rtol=0)


def test_identity_and_contiguous_selection_use_views(tiny_path, adapter_dirs, tokenizer):
    """Rows == stacked agents in order: no gather, same numbers as the gathered path."""
    peft_model, dirs = adapter_dirs
    engine = MultiLoraEngine.from_adapter_dirs(_base(tiny_path), dirs)
    enc = _batch(tokenizer, TEXTS[:3])
    layer = next(iter(engine.layers.values()))
    with engine.select([0, 1, 2]):
        assert layer._rows_A.data_ptr() == layer.lora_A.data_ptr()
    with engine.select([1, 2]):
        assert layer._rows_A.data_ptr() == layer.lora_A[1].data_ptr()
    ours = engine.forward(enc.input_ids, enc.attention_mask, [0, 1, 2])
    torch.testing.assert_close(ours, _peft_logits(peft_model, enc, AGENTS), atol=ATOL, rtol=0)


def test_outside_select_is_exactly_base(tiny_path, adapter_dirs, tokenizer):
    _, dirs = adapter_dirs
    base = _base(tiny_path)
    enc = _batch(tokenizer, TEXTS)
    with torch.inference_mode():
        before = base(**enc).logits
        engine = MultiLoraEngine.from_adapter_dirs(base, dirs)
        after = engine.model(**enc).logits
    assert torch.equal(before, after)
    base_rows = engine.forward(enc.input_ids, enc.attention_mask, [NO_ADAPTER] * len(TEXTS))
    pos = (enc.attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        ref = base(**enc, position_ids=pos, logits_to_keep=1).logits
    torch.testing.assert_close(base_rows, ref, atol=0, rtol=0)


def test_greedy_generation_matches_peft(tiny_path, adapter_dirs, tokenizer):
    peft_model, dirs = adapter_dirs
    engine = MultiLoraEngine.from_adapter_dirs(_base(tiny_path), dirs)
    enc = _batch(tokenizer, TEXTS)
    ours = engine.generate(enc.input_ids, enc.attention_mask, engine.indices(ROW_AGENTS), 12)
    with torch.inference_mode():
        theirs = peft_model.generate(
            **enc,
            adapter_names=ROW_AGENTS,
            max_new_tokens=12,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=None,
        )[:, enc.input_ids.shape[1] :]
    assert ours.shape == (len(TEXTS), 12)
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours[0], ours[3])  # same prompt, different adapter


def test_from_peft_model_keeps_peft_working(tiny_path, tokenizer):
    peft_model = make_peft(tiny_path, seed=1)
    enc = _batch(tokenizer, TEXTS)
    before = _peft_logits(peft_model, enc, ROW_AGENTS)
    engine = MultiLoraEngine.from_peft_model(peft_model)
    ours = engine.forward(enc.input_ids, enc.attention_mask, engine.indices(ROW_AGENTS))
    torch.testing.assert_close(ours, before, atol=ATOL, rtol=0)
    torch.testing.assert_close(_peft_logits(peft_model, enc, ROW_AGENTS), before, atol=0, rtol=0)


def test_from_peft_model_reads_only_the_named_adapters(tiny_path, tokenizer):
    # Two copies of one seeded PeftModel: an engine wraps its model's layers in place.
    full = MultiLoraEngine.from_peft_model(make_peft(tiny_path, seed=1))
    part = MultiLoraEngine.from_peft_model(make_peft(tiny_path, seed=1), ["cy"])
    assert full.names == list(AGENTS) and part.names == ["cy"]
    enc = _batch(tokenizer, TEXTS)
    rows = ["cy"] * len(TEXTS)
    expected = full.forward(enc.input_ids, enc.attention_mask, full.indices(rows))
    ours = part.forward(enc.input_ids, enc.attention_mask, part.indices(rows))
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=0)
    base = part.forward(enc.input_ids, enc.attention_mask, part.indices([None] * len(TEXTS)))
    assert (ours - base).abs().max() > 10 * ATOL  # the adapter is there, not zeros
    with pytest.raises(KeyError, match="'nobody'"):
        MultiLoraEngine.from_peft_model(make_peft(tiny_path, seed=1), ["nobody"])


def test_save_adapter_round_trips_through_peft(tiny_path, adapter_dirs, tokenizer, tmp_path):
    from peft import PeftConfig, PeftModel

    peft_model, dirs = adapter_dirs
    engine = MultiLoraEngine.from_adapter_dirs(_base(tiny_path), dirs)
    config = PeftConfig.from_pretrained(str(dirs["cy"])).to_dict()
    out = engine.save_adapter("cy", tmp_path / "cy", config=config)
    reloaded = PeftModel.from_pretrained(_base(tiny_path), str(out)).eval()
    enc = _batch(tokenizer, TEXTS)
    ours = engine.forward(enc.input_ids, enc.attention_mask, engine.indices(["cy"] * len(TEXTS)))
    pos = (enc.attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        ref = reloaded(**enc, position_ids=pos, logits_to_keep=1).logits
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)


def test_bad_inputs_are_named(tiny_path, adapter_dirs, tokenizer):
    _, dirs = adapter_dirs
    engine = MultiLoraEngine.from_adapter_dirs(_base(tiny_path), dirs)
    with pytest.raises(ValueError, match=r"\[-1, 2\]"):
        engine.forward(torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3), [3])
    with pytest.raises(KeyError, match="dora"):
        engine.indices(["dora"])
    enc = _batch(tokenizer, TEXTS[:2])
    with pytest.raises(ValueError, match="2 rows"):
        engine.forward(enc.input_ids, enc.attention_mask, [0, 1, 2])


def test_rows_grouped_by_adapter_use_no_gather(tiny_path, adapter_dirs, tokenizer):
    """k rows per agent, agents consecutive: one bmm operand per agent, PEFT's numbers."""
    peft_model, dirs = adapter_dirs
    engine = MultiLoraEngine.from_adapter_dirs(_base(tiny_path), dirs)
    names = ["ann", "ann", "bob", "bob", "cy", "cy"]
    texts = TEXTS[:3] + TEXTS[2:5]
    enc = _batch(tokenizer, texts)
    layer = next(iter(engine.layers.values()))
    with engine.select(engine.indices(names)):
        assert layer._group == 2 and layer._rows_A.data_ptr() == layer.lora_A.data_ptr()
    ours = engine.forward(enc.input_ids, enc.attention_mask, engine.indices(names))
    torch.testing.assert_close(ours, _peft_logits(peft_model, enc, names), atol=ATOL, rtol=0)


def test_sampling_is_seeded_and_eos_fills_the_row(tiny_path, adapter_dirs, tokenizer):
    _, dirs = adapter_dirs
    engine = MultiLoraEngine.from_adapter_dirs(_base(tiny_path), dirs)
    enc = _batch(tokenizer, TEXTS)
    rows = engine.indices(ROW_AGENTS)

    def sample(seed):
        gen = torch.Generator().manual_seed(seed)
        return engine.generate(
            enc.input_ids, enc.attention_mask, rows, 8, temperature=1.0, generator=gen
        )

    assert torch.equal(sample(3), sample(3))
    assert not torch.equal(sample(3), sample(4))
    greedy = engine.generate(enc.input_ids, enc.attention_mask, rows, 8)
    eos = int(greedy[0, 2])
    stopped = engine.generate(enc.input_ids, enc.attention_mask, rows, 8, eos_token_id=eos)
    first = int((greedy[0] == eos).nonzero()[0])
    assert torch.equal(stopped[0, : first + 1], greedy[0, : first + 1])
    assert (stopped[0, first:] == eos).all()


@pytest.mark.integration
def test_embedded_model_matches_peft_mixed_batch(tmp_path):
    """The real 30-layer model: logits within EMBEDDED_LOGITS_ATOL (|logits| ~ 20, 30 layers)."""
    from transformers import AutoTokenizer

    from societies.model_store import prepare_embedded

    path = str(prepare_embedded())
    tokenizer = AutoTokenizer.from_pretrained(path)
    peft_model = make_peft(path, r=8, alpha=16)
    for agent in AGENTS:
        peft_model.save_pretrained(tmp_path, selected_adapters=[agent])
    engine = MultiLoraEngine.from_adapter_dirs(_base(path), {a: tmp_path / a for a in AGENTS})
    enc = _batch(tokenizer, TEXTS)
    ours = engine.forward(enc.input_ids, enc.attention_mask, engine.indices(ROW_AGENTS))
    torch.testing.assert_close(
        ours, _peft_logits(peft_model, enc, ROW_AGENTS), atol=EMBEDDED_LOGITS_ATOL, rtol=0
    )
    assert (ours[0] - ours[3]).abs().max() > 1e-2


def test_shuffled_full_population_is_reordered_not_gathered(tiny_path, adapter_dirs, tokenizer):
    """A permutation of all agents runs in stack order (no gather); rows come back in
    the caller's order with PEFT's numbers and PEFT's greedy tokens."""
    peft_model, dirs = adapter_dirs
    engine = MultiLoraEngine.from_adapter_dirs(_base(tiny_path), dirs)
    names = ["cy", "ann", "bob", "ann", "cy", "bob"]  # each agent twice, shuffled
    texts = TEXTS[:3] + TEXTS[2:5]
    perm = engine.row_order(engine.indices(names))
    assert perm is not None and engine.indices(names)[perm].tolist() == [0, 0, 1, 1, 2, 2]
    assert engine.row_order(engine.indices(["ann", "cy"])) is None  # gap: gather instead
    enc = _batch(tokenizer, texts)
    ours = engine.forward(enc.input_ids, enc.attention_mask, engine.indices(names))
    torch.testing.assert_close(ours, _peft_logits(peft_model, enc, names), atol=ATOL, rtol=0)
    tokens = engine.generate(enc.input_ids, enc.attention_mask, engine.indices(names), 6)
    with torch.inference_mode():
        ref = peft_model.generate(
            **enc,
            adapter_names=names,
            max_new_tokens=6,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=None,
        )[:, enc.input_ids.shape[1] :]
    assert torch.equal(tokens, ref)


@pytest.mark.parametrize("tokens", [TRANSPOSED_FROM_TOKENS - 1, TRANSPOSED_FROM_TOKENS + 7])
def test_lora_down_projection_equals_bmm_with_exact_gradients(tokens):
    """Both layouts of the down-projection (plain below TRANSPOSED_FROM_TOKENS tokens per
    slot, transposed from it on) give bmm's values, and their hand-written backward
    passes torch's numerical gradient check (float64)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, tokens, 10, dtype=torch.float64, generator=gen, requires_grad=True)
    A = torch.randn(3, 10, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    torch.testing.assert_close(LoraDown.apply(x, A), torch.bmm(x, A), rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(LoraDown.apply, (x, A))
    # Only A trainable (the base activations carry no gradient in a first layer).
    x_frozen = x.detach()
    (g,) = torch.autograd.grad(LoraDown.apply(x_frozen, A).sum(), A)
    torch.testing.assert_close(g, x_frozen.sum(1)[:, :, None].expand_as(A))
