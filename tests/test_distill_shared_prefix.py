"""Shared-prefix training equals plain training (tiny Llama, three agents).

Each agent's rows start with that agent's own head (different heads per agent, as
personas make them) followed by tails of different lengths. The shared-prefix step must
give the plain step's per-token losses and LoRA gradients: to the float64 tolerances in
float64 (where the two differ only by the order of additions), to LOSS_ATOL and a
gradient tolerance in float32. Whole training runs must then give the same per-step
losses (both dtypes) and, in float64, the same weights. The plain path itself is
checked against separate per-agent PEFT training in tests/test_distill_batched.py.
"""

from __future__ import annotations

import pytest
import torch

from societies.model_store import prepare_tiny_random
from societies.multi_lora import MultiLoraEngine
from tests.float32 import (
    ADAM_WEIGHTS_ATOL_FLOAT64,
    LOSS_ATOL,
    LOSS_ATOL_FLOAT64,
    assert_close,
)
from trainer.distill_batched import (
    BatchedSftConfig,
    SftExample,
    step_token_losses,
    train_batched_sft,
)
from trainer.distill_shared_prefix import common_prefix_length, shared_head_length

AGENTS = ("ann", "bob", "cy")
HEAD = {"ann": 9, "bob": 12, "cy": 10}  # tokens every row of the agent starts with
# (each tail starts with its own token 500 + i: the heads are exactly these)
ROWS = {"ann": 4, "bob": 5, "cy": 2}
# LoRA gradients (max |g| ~1.4 here): the shared head sums its rows' key/value gradients
# before the head's backward, the plain step after, and transformers' Llama rounds
# gradients to float32 in RMSNorm's backward whatever the model's dtype
# (tests/float32.py), so both dtypes differ by float32 roundings: u32 * 1.4 ~ 1e-7 each.
# Measured on an AMD EPYC: 4.8e-7 (float32), 2.5e-8 (float64). 5e-6 is ~50 roundings,
# while a head attended by the wrong rows or at the wrong positions moves them by >1e-2.
GRAD_ATOL = 5e-6


def _data() -> dict[str, list[SftExample]]:
    gen = torch.Generator().manual_seed(1)
    data = {}
    for k, agent in enumerate(AGENTS):
        head = torch.randint(3, 500, (HEAD[agent],), generator=gen).tolist()
        rows = []
        for i in range(ROWS[agent]):
            tail = [500 + i, *torch.randint(3, 500, (1 + (3 * i) % 5,), generator=gen).tolist()]
            rows.append(SftExample(tuple(head + tail), (100 + k, 200 + i, 7)))
        data[agent] = rows
    return data


def _engine(dtype) -> MultiLoraEngine:
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(prepare_tiny_random()), dtype=dtype)
    engine = MultiLoraEngine.with_zero_adapters(base, list(AGENTS), rank=4)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-zero B so that every factor gets a gradient
        for layer in engine.layers.values():
            for p in (layer.lora_A, layer.lora_B):
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype) * 0.1)
    return engine


def _flat(factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    return torch.cat([f.flatten() for pair in factors.values() for f in pair])


def test_head_is_the_rows_common_prefix_stopped_before_the_last_prompt_token():
    assert common_prefix_length([(1, 2, 3, 4), (1, 2, 3), (1, 2, 5, 6)]) == 2
    assert common_prefix_length([(1, 2), (3,)]) == 0
    rows = _data()
    assert [shared_head_length(rows[a]) for a in AGENTS] == [HEAD[a] for a in AGENTS]
    # A lone row shares its whole prompt but the last token; a one-token prompt nothing.
    assert shared_head_length([SftExample((5, 6, 7, 8), (1,))]) == 3
    assert shared_head_length([SftExample((5,), (1,)), SftExample((5, 6), (1,))]) == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_one_step_gives_the_plain_losses_and_gradients(dtype):
    data = _data()
    outputs = {}
    for shared in (False, True):
        engine = _engine(dtype)
        engine.model.train()
        params = [p for layer in engine.layers.values() for p in (layer.lora_A, layer.lora_B)]
        for p in params:
            p.requires_grad_(True)
        losses, token_agent, run, saved = step_token_losses(engine, data, 0, shared)
        losses.sum().backward()
        grads = torch.cat([p.grad.flatten() for p in params])
        outputs[shared] = (losses.detach(), token_agent, run, saved, grads)
    plain, fast = outputs[False], outputs[True]
    loss_atol = LOSS_ATOL_FLOAT64 if dtype is torch.float64 else LOSS_ATOL
    assert torch.equal(plain[1], fast[1])  # same tokens, same agents, same order
    assert_close(fast[0], plain[0], loss_atol, "per-token losses")
    assert_close(fast[4], plain[4], GRAD_ATOL, "LoRA gradients")
    assert plain[4].abs().max() > 1e-3  # gradients are not all zero
    # Each agent's head runs once instead of once per row.
    total = sum(len(r.prompt_ids) + len(r.completion_ids) for rows in data.values() for r in rows)
    saved = {a: HEAD[a] * (ROWS[a] - 1) for a in AGENTS}
    assert (plain[2], plain[3]) == (total, {})
    assert (fast[2], fast[3]) == (total - sum(saved.values()), saved)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("rows_per_forward", [None, 2], ids=["whole-steps", "split-steps"])
def test_training_gives_the_plain_losses_and_weights(dtype, rows_per_forward):
    """With ``rows_per_forward=2`` the shared path runs each 3-row step as forwards of 2
    and 1 rows (each with its own head) and accumulates their gradients."""
    data = _data()
    results, weights = {}, {}
    for shared in (False, True):
        engine = _engine(dtype)
        config = BatchedSftConfig(learning_rate=5e-4, batch_size=3, num_epochs=2)
        config = BatchedSftConfig(**{**config.__dict__, "shared_prefix": shared})
        results[shared] = train_batched_sft(
            engine,
            data,
            config,
            pad_token_id=0,
            rows_per_forward=rows_per_forward if shared else None,
        )
        weights[shared] = {a: _flat(engine.adapter_factors(a)) for a in AGENTS}
    loss_atol = LOSS_ATOL_FLOAT64 if dtype is torch.float64 else LOSS_ATOL
    for agent in AGENTS:
        assert_close(results[True].losses[agent], results[False].losses[agent], loss_atol, agent)
    saved = sum(results[True].tokens_saved.values())
    assert saved > 0
    assert results[True].tokens + saved == results[False].tokens
    if dtype is torch.float64:
        # A small learning rate: Adam turns the float32 roundings above into steps of
        # up to lr in near-cancelling elements (measured 1.1e-8 at lr 5e-4, AMD EPYC).
        assert_close(weights[True], weights[False], ADAM_WEIGHTS_ATOL_FLOAT64, "LoRA weights")
        start = _engine(dtype)
        moved = max(
            (weights[True][a] - _flat(start.adapter_factors(a))).abs().max() for a in AGENTS
        )
        assert moved > 1e-4
