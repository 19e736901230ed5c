"""Batched multi-adapter SFT equals separate per-agent training (tiny Llama).

Reference: for each agent alone, a PeftModel trained with torch.optim.AdamW, HF's linear
schedule (LambdaLR), clip_grad_norm_ and mean cross-entropy over completion tokens, on
the same batches in the same order. Both run twice: in float32 (what runs) the per-step
losses agree to LOSS_ATOL; in float64 the losses and the final LoRA weights agree to
the float64 tolerances. Weights are not compared in float32: Adam turns the rounding of
a nearly cancelling gradient into a step of up to the learning rate (tests/float32.py).
"""

from __future__ import annotations

from pathlib import Path

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
    agent_batches,
    collate,
    lr_at,
    sft_example_from_chat,
    train_batched_sft,
)
from trainer.stacked_adamw import StackedAdamW

AGENTS = ("ann", "bob", "cy")
# Unequal data: agents run out at different steps, so "inactive agent" is exercised.
N_EXAMPLES = {"ann": 5, "bob": 8, "cy": 3}
CONFIG = BatchedSftConfig(learning_rate=5e-3, batch_size=2, num_epochs=2, max_grad_norm=0.5)


def _base(path, dtype=torch.float32):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()


def _data():
    gen = torch.Generator().manual_seed(0)
    data = {}
    for k, agent in enumerate(AGENTS):
        data[agent] = [
            SftExample(
                tuple(
                    torch.randint(
                        0, 500, (int(torch.randint(3, 9, (1,), generator=gen)),), generator=gen
                    ).tolist()
                ),
                tuple([100 + k, 200 + k] + [7] * (i % 3)),
            )
            for i in range(N_EXAMPLES[agent])
        ]
    return data


@pytest.fixture(scope="module", params=[torch.float32, torch.float64], ids=["float32", "float64"])
def trained(request, tmp_path_factory):
    from peft import LoraConfig, get_peft_model

    dtype = request.param
    path = str(prepare_tiny_random())
    root = tmp_path_factory.mktemp("init")
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    peft_model = get_peft_model(_base(path), config, adapter_name=AGENTS[0])
    for agent in AGENTS[1:]:
        peft_model.add_adapter(agent, config)
    with torch.no_grad():  # non-zero B so that A gets gradients from step 1
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    peft_model.save_pretrained(root, selected_adapters=list(AGENTS))
    dirs = {a: root / a for a in AGENTS}

    data = _data()
    engine = MultiLoraEngine.from_adapter_dirs(_base(path, dtype), dirs)
    result = train_batched_sft(engine, data, CONFIG, pad_token_id=0)
    out = tmp_path_factory.mktemp("out")
    saved = {a: engine.save_adapter(a, out / a) for a in AGENTS}
    return path, dirs, data, result, saved, dtype


def _completion_loss(model, enc):
    """Mean cross-entropy over the completion tokens, in the model's own precision
    (HF's built-in loss casts logits to float32, which would round a float64 run)."""
    logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1), enc["labels"][:, 1:].flatten(), ignore_index=-100
    )


def _reference(path, adapter_dir, examples, agent, dtype):
    """One agent trained alone with stock torch/PEFT pieces."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(_base(path, dtype), str(adapter_dir), is_trainable=True)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    batches = agent_batches(examples, CONFIG, agent)
    opt = torch.optim.AdamW(params, lr=CONFIG.learning_rate, weight_decay=0.0)
    total = len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: lr_at(CONFIG, k, total) / CONFIG.learning_rate
    )
    losses = []
    for batch in batches:
        enc = collate(batch, pad_token_id=0)
        loss = _completion_loss(model, enc)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CONFIG.max_grad_norm)
        opt.step()
        sched.step()
        losses.append(loss.item())
    from peft import get_peft_model_state_dict

    return losses, get_peft_model_state_dict(model)


@pytest.mark.parametrize("agent", AGENTS)
def test_losses_and_weights_match_separate_training(trained, agent):
    from safetensors.torch import load_file

    path, dirs, data, result, saved, dtype = trained
    ref_losses, ref_state = _reference(path, dirs[agent], data[agent], agent, dtype)
    assert len(result.losses[agent]) == len(ref_losses) == -(-N_EXAMPLES[agent] // 2) * 2
    loss_atol = LOSS_ATOL_FLOAT64 if dtype is torch.float64 else LOSS_ATOL
    assert_close(result.losses[agent], ref_losses, loss_atol, f"{agent}'s per-step losses")
    assert ref_losses[-1] < ref_losses[0]  # training did something
    ours = load_file(str(saved[agent] / "adapter_model.safetensors"))
    assert set(ours) == set(ref_state)
    if dtype is torch.float64:
        assert_close(ours, ref_state, ADAM_WEIGHTS_ATOL_FLOAT64, f"{agent}'s LoRA weights")
    init = load_file(str(dirs[agent] / "adapter_model.safetensors"))
    assert max((ours[k] - init[k]).abs().max() for k in init) > 1e-3  # weights moved


def test_a_step_split_over_forwards_gives_the_same_losses_and_weights(trained, tmp_path):
    """rows_per_forward=1: each 2-row step runs as two forwards whose gradients
    accumulate. Rows hold 2-4 completion tokens, so dividing a token's loss by its own
    forward's tokens instead of the whole step's would change both losses and weights."""
    from safetensors.torch import load_file

    path, dirs, data, result, saved, dtype = trained
    engine = MultiLoraEngine.from_adapter_dirs(_base(path, dtype), dirs)
    split = train_batched_sft(engine, data, CONFIG, pad_token_id=0, rows_per_forward=1)
    loss_atol = LOSS_ATOL_FLOAT64 if dtype is torch.float64 else LOSS_ATOL
    for agent in AGENTS:
        assert_close(split.losses[agent], result.losses[agent], loss_atol, f"{agent}'s losses")
        if dtype is torch.float64:
            ours = load_file(
                str(engine.save_adapter(agent, tmp_path / agent) / "adapter_model.safetensors")
            )
            whole = load_file(str(saved[agent] / "adapter_model.safetensors"))
            assert_close(ours, whole, ADAM_WEIGHTS_ATOL_FLOAT64, f"{agent}'s LoRA weights")
    assert split.tokens == result.tokens  # the same rows ran, no more


def test_glibc_heap_is_trimmed_between_the_forwards_of_a_split_step(monkeypatch):
    """Between forwards of one step only (a whole step never trims): the memory the last
    forward freed goes back to the OS before the next one allocates (README: Performance)."""
    import trainer.distill_batched as batched

    calls = []
    monkeypatch.setattr(batched, "trim_glibc_heap", lambda: calls.append(1))
    data = _data()
    engine = MultiLoraEngine.with_zero_adapters(_base(str(prepare_tiny_random())), AGENTS, rank=2)
    train_batched_sft(engine, data, CONFIG, pad_token_id=0)
    assert calls == []
    train_batched_sft(engine, data, CONFIG, pad_token_id=0, rows_per_forward=1)
    schedule = {a: agent_batches(data[a], CONFIG, a) for a in AGENTS}
    steps = max(len(b) for b in schedule.values())
    rows = [max(len(b[k]) for b in schedule.values() if k < len(b)) for k in range(steps)]
    assert len(calls) == sum(r - 1 for r in rows) > 0


def test_inactive_agent_is_not_moved_by_momentum():
    """After an agent's data runs out, its slice stays fixed while others keep training."""
    p = torch.nn.Parameter(torch.zeros(2, 3))
    opt = StackedAdamW([p], 2, BatchedSftConfig(learning_rate=0.1))
    p.grad = torch.ones(2, 3)
    opt.step(torch.tensor([True, True]), torch.tensor([0.1, 0.1]))
    frozen = p[1].detach().clone()
    p.grad = torch.zeros(2, 3)  # agent 1 has no rows: its momentum would still move it
    opt.step(torch.tensor([True, False]), torch.tensor([0.1, 0.0]))
    assert torch.equal(p[1].detach(), frozen)
    assert opt.steps.tolist() == [2, 1]
    assert not torch.equal(p[0].detach(), frozen)  # agent 0 kept moving on momentum


def test_span_of_active_agents_updates_as_torch_adamw_and_leaves_the_rest():
    """Agents 1 and 3 of 5 active: each moves as its own torch.optim.AdamW with clipping
    would move it; agent 2 (inside the span, inactive) and agents 0 and 4 (outside it)
    keep their values and step counts, and their norms are reported as 0."""
    config = BatchedSftConfig(learning_rate=0.05, max_grad_norm=0.5, weight_decay=0.1)
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(5, 4, 3, dtype=torch.float64, generator=gen)
    grads = [torch.randn(5, 4, 3, dtype=torch.float64, generator=gen) for _ in range(3)]
    active = torch.tensor([False, True, False, True, False])
    p = torch.nn.Parameter(start.clone())
    opt = StackedAdamW([p], 5, config)
    references = {}
    for a in (1, 3):
        q = torch.nn.Parameter(start[a].clone())
        references[a] = (q, torch.optim.AdamW([q], lr=0.05, weight_decay=0.1))
    for g in grads:
        p.grad = g * active.view(-1, 1, 1)  # inactive agents had no rows: zero gradient
        norms = opt.clip_grad_norms(config.max_grad_norm, active)
        assert norms[[0, 2, 4]].tolist() == [0.0, 0.0, 0.0]
        opt.step(active, torch.full((5,), 0.05, dtype=torch.float64))
        for a, (q, ref) in references.items():
            q.grad = g[a].clone()
            assert float(norms[a]) == pytest.approx(float(q.grad.norm()), rel=1e-12)
            torch.nn.utils.clip_grad_norm_([q], config.max_grad_norm)
            ref.step()
    for a, (q, _) in references.items():
        torch.testing.assert_close(p[a].detach(), q.detach(), rtol=0, atol=1e-12)
        assert not torch.equal(p[a].detach(), start[a])
    for a in (0, 2, 4):
        assert torch.equal(p[a].detach(), start[a])
    assert opt.steps.tolist() == [0, 3, 0, 3, 0]


def test_base_weights_unchanged(trained):
    from safetensors.torch import load_file

    path, *_ = trained  # noqa: F841 - the fixture builds the tiny model
    # The engine trained a fresh copy of the base; its frozen weights must equal the file.
    engine = MultiLoraEngine.with_zero_adapters(_base(path), ["x"], rank=2)
    before = {k: v.clone() for k, v in engine.model.state_dict().items() if "lora_" not in k}
    train_batched_sft(
        engine, {"x": _data()["ann"]}, BatchedSftConfig(learning_rate=1e-2, batch_size=2), 0
    )
    after = engine.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    files = load_file(str(next(Path(path).glob("*.safetensors"))))
    assert torch.equal(
        files["model.layers.0.mlp.up_proj.weight"], after["model.layers.0.mlp.up_proj.base.weight"]
    )


def test_sft_example_from_chat_splits_at_the_assistant_turn():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(prepare_tiny_random()))
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name?"}]
    example = sft_example_from_chat(tokenizer, prompt, [{"role": "assistant", "content": "R"}])
    assert tokenizer.decode(example.prompt_ids).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(example.completion_ids).startswith("R<|im_end|>")
