"""Batched distillation under a memory budget: agents split into groups that fit."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import trainer.distill_batched
from tests.float32 import ADAM_WEIGHTS_ATOL_FLOAT64, LOSS_ATOL, LOSS_ATOL_FLOAT64, assert_close
from trainer import distill_memory
from trainer.distill_memory import activation_bytes_per_token, plan_groups, rows_per_forward

AGENTS = ("ann", "bob", "cy")


def test_activation_estimate_counts_the_layer_tensors():
    config = SimpleNamespace(
        hidden_size=8,
        intermediate_size=16,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_hidden_layers=3,
    )
    # per layer: 6h + 2kv + 4i + 7r + heads*seq = 48 + 8 + 64 + 14 + 20 = 154 floats
    expected = distill_memory.SAFETY * 4 * 154 * 3
    assert activation_bytes_per_token(config, lora_rank=2, seq_len=10) == pytest.approx(expected)


def test_groups_fill_up_in_order_and_an_agent_too_big_is_named():
    tokens = {"a": 100, "b": 100, "c": 300, "d": 50}
    assert plan_groups(tokens, 2.0, 600) == [["a", "b"], ["c"], ["d"]]
    assert plan_groups(tokens, 1.0, 1000) == [["a", "b", "c", "d"]]
    with pytest.raises(MemoryError, match=r"step of c \(300 tokens\).*lower the batch"):
        plan_groups(tokens, 2.0, 500, hint="lower the batch")


def test_rows_are_split_only_when_one_agents_step_does_not_fit():
    rows = {"a": 8, "b": 4}
    assert rows_per_forward(rows, 10.0, 80) is None
    assert rows_per_forward(rows, 10.0, 79) == 7
    assert rows_per_forward(rows, 10.0, 25) == 2
    with pytest.raises(
        MemoryError, match=r"row of a needs ~10\.0 GiB.* 9\.0 GiB .*raise the budget"
    ):
        rows_per_forward(rows, 10.0 * 2**30, 9 * 2**30, hint="raise the budget")


def _examples(k: int) -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": f"Pick a name, round {i} of agent {k}."}],
            "completion": [{"role": "assistant", "content": "ABC"[(i + k) % 3]}],
        }
        for i in range(3 + k)
    ]


class RecordingBar:
    """Stands in for tqdm: records what the distillation reports."""

    def __init__(self, **kwargs):
        self.kwargs, self.updates, self.postfixes = kwargs, [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        self.updates.append(n)

    def set_postfix(self, refresh=True, **kwargs):
        self.postfixes.append(kwargs)


def _distil(
    tmp_path,
    tiny_model_path,
    start,
    budget_gb,
    bars=None,
    agents=AGENTS,
    done=(),
    dtype="float64",
    plan_file=None,
):
    from trainer.distill_group import distill_group
    from trainer.distill_sft import SftSettings

    def make_bar(**kwargs):
        bars.append(RecordingBar(**kwargs))
        return bars[-1]

    out = {a: tmp_path / a for a in agents}
    outcomes = distill_group(
        model_path=tiny_model_path,
        start_adapters={a: start[a] for a in agents},
        examples={a: _examples(k) for k, a in enumerate(AGENTS) if a in agents},
        out_dirs=out,
        settings=SftSettings(
            epochs=2, learning_rate=5e-3, batch_size=2, memory_budget_gb=budget_gb
        ),
        seed=0,
        dtype=dtype,  # float64: weights compared exactly enough to catch a bug (tests/float32.py)
        make_bar=make_bar if bars is not None else None,
        done=done,
        plan_file=plan_file,
    )
    return outcomes, out


def test_grouped_training_equals_one_group(tiny_model_path, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from societies.population import LoraSpec, PopulationModel

    population = PopulationModel(
        tiny_model_path, list(AGENTS), LoraSpec(r=4, alpha=8), init_seeds={"ann": 1, "bob": 2}
    )
    start = {a: population.save_adapter(a, tmp_path / "start" / a) for a in AGENTS}
    calls: list[list[str]] = []
    real = trainer.distill_batched.train_batched_sft

    def spy(engine, data, *args, **kwargs):
        calls.append(sorted(data))
        return real(engine, data, *args, **kwargs)

    monkeypatch.setattr(trainer.distill_batched, "train_batched_sft", spy)
    together_bars: list[RecordingBar] = []
    together, out_together = _distil(
        tmp_path / "one", tiny_model_path, start, 1000.0, together_bars
    )
    assert calls == [sorted(AGENTS)]
    # One group: 4 steps train all three agents, then cy alone has 2 more.
    assert together_bars[0].updates == [3, 3, 3, 3, 1, 1]
    assert together_bars[0].postfixes[-1]["agent"] == "cy"

    # A budget that holds one agent's step (2 rows) but not two, RSS taken as 0.
    monkeypatch.setattr(distill_memory, "current_rss_bytes", lambda: 0)
    calls.clear()
    need, lora_bytes = _step_need_and_lora_bytes(tiny_model_path, start)
    budget = (1.5 * need + lora_bytes) / 1e9
    bars: list[RecordingBar] = []
    apart, out_apart = _distil(tmp_path / "apart", tiny_model_path, start, budget, bars)
    assert calls == [["ann"], ["bob"], ["cy"]]

    # The progress bar: agent k has 3 + k examples, batches of 2, 2 epochs, so 2 x 2,
    # 2 x 2 and 2 x 3 steps; one agent per group, so each step shows that agent's loss.
    (bar,) = bars
    assert bar.kwargs["total"] == 4 + 4 + 6 == sum(bar.updates)
    assert set(bar.updates) == {1}
    shown = [(p["agent"], p["loss"]) for p in bar.postfixes]
    expected = [(o.agent, f"{loss:.3g}") for o in apart for loss in o.losses]
    assert shown == expected

    for a, b in zip(together, apart, strict=True):
        assert a.operation == b.operation == "sft"
        assert_close(
            b.losses, a.losses, LOSS_ATOL_FLOAT64, f"{a.agent}'s losses, grouped vs one pass"
        )
    for agent in AGENTS:
        one = load_file(out_together[agent] / "adapter_model.safetensors")
        grouped = load_file(out_apart[agent] / "adapter_model.safetensors")
        assert_close(
            grouped, one, ADAM_WEIGHTS_ATOL_FLOAT64, f"{agent}'s adapter, grouped vs one pass"
        )
        moved = load_file(start[agent] / "adapter_model.safetensors")
        assert max((one[k] - moved[k]).abs().max() for k in one) > 1e-3  # it trained
    assert not torch.equal(
        load_file(out_together["ann"] / "adapter_model.safetensors")[next(iter(one))],
        load_file(out_together["bob"] / "adapter_model.safetensors")[next(iter(one))],
    )


def test_a_step_that_does_not_fit_runs_in_one_row_forwards(tiny_model_path, tmp_path, monkeypatch):
    """A budget that holds one row but not one agent's 2-row step: each agent trains in
    its own pass, each step as two one-row forwards with accumulated gradients, to the
    one-group adapters; the plan file keeps the split for a resumed process."""
    from safetensors.torch import load_file

    from societies.population import LoraSpec, PopulationModel
    from trainer.run_dir import read_json

    population = PopulationModel(
        tiny_model_path, list(AGENTS), LoraSpec(r=4, alpha=8), init_seeds={"ann": 1, "bob": 2}
    )
    start = {a: population.save_adapter(a, tmp_path / "start" / a) for a in AGENTS}
    together, _ = _distil(tmp_path / "one", tiny_model_path, start, 1000.0)
    calls: list[tuple[list[str], int | None]] = []
    real = trainer.distill_batched.train_batched_sft

    def spy(engine, data, *args, **kwargs):
        calls.append((sorted(data), kwargs.get("rows_per_forward")))
        return real(engine, data, *args, **kwargs)

    monkeypatch.setattr(trainer.distill_batched, "train_batched_sft", spy)
    monkeypatch.setattr(distill_memory, "current_rss_bytes", lambda: 0)
    need, lora_bytes = _step_need_and_lora_bytes(tiny_model_path, start)  # a 2-row step
    plan = tmp_path / "plan.json"
    split, out_split = _distil(
        tmp_path / "split", tiny_model_path, start, (0.75 * need + lora_bytes) / 1e9, plan_file=plan
    )
    assert calls == [(["ann"], 1), (["bob"], 1), (["cy"], 1)]
    assert read_json(plan)["rows_per_forward"] == 1
    # This test checks the plumbing (planner -> split forwards -> the same training);
    # the split's arithmetic is checked at float64 precision in test_distill_batched.py
    # and test_distill_shared_prefix.py. Here a one-row forward has a longer shared head
    # than a two-row one, so the float32 steps inside the float64 model (tests/float32.py)
    # see other inputs and Adam at lr 5e-3 amplifies those roundings (weights 2.6e-5
    # apart, losses 2.5e-8, Intel Xeon): the two sides differ as two float32 code paths
    # do, so the float32 loss tolerance applies.
    for a, b in zip(together, split, strict=True):
        assert_close(b.losses, a.losses, LOSS_ATOL, f"{a.agent}'s losses, split vs whole")
        assert len(b.losses) >= 4
    for agent in AGENTS:
        apart = load_file(out_split[agent] / "adapter_model.safetensors")
        moved = load_file(start[agent] / "adapter_model.safetensors")
        assert max((apart[k] - moved[k]).abs().max() for k in apart) > 1e-3  # it trained


def test_each_group_is_saved_before_the_next_trains(tiny_model_path, tmp_path, monkeypatch):
    """A pass that dies in its last group keeps the groups before it; the resumed pass
    trains only the missing agent, to the same weights as an uninterrupted pass."""
    from safetensors.torch import load_file

    from societies.population import LoraSpec, PopulationModel
    from trainer.run_dir import adapter_is_saved

    population = PopulationModel(
        tiny_model_path, list(AGENTS), LoraSpec(r=4, alpha=8), init_seeds={"ann": 1, "bob": 2}
    )
    start = {a: population.save_adapter(a, tmp_path / "start" / a) for a in AGENTS}
    monkeypatch.setattr(distill_memory, "current_rss_bytes", lambda: 0)
    need, lora_bytes = _step_need_and_lora_bytes(tiny_model_path, start)
    budget = (1.5 * need + lora_bytes) / 1e9  # one agent per group
    real = trainer.distill_batched.train_batched_sft

    def dies_on_cy(engine, data, *args, **kwargs):
        if "cy" in data:
            raise RuntimeError("killed while training cy")
        return real(engine, data, *args, **kwargs)

    monkeypatch.setattr(trainer.distill_batched, "train_batched_sft", dies_on_cy)
    with pytest.raises(RuntimeError, match="killed while training cy"):
        _distil(tmp_path / "cut", tiny_model_path, start, budget)
    saved = {a: adapter_is_saved(tmp_path / "cut" / a) for a in AGENTS}
    assert saved == {"ann": True, "bob": True, "cy": False}

    monkeypatch.setattr(trainer.distill_batched, "train_batched_sft", real)
    resumed, _ = _distil(tmp_path / "cut", tiny_model_path, start, budget, done=("ann", "bob"))
    whole, out_whole = _distil(tmp_path / "whole", tiny_model_path, start, budget)
    assert [o.losses for o in resumed] == [o.losses for o in whole]
    for agent in AGENTS:
        a = load_file(tmp_path / "cut" / agent / "adapter_model.safetensors")
        b = load_file(out_whole[agent] / "adapter_model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), agent


def test_a_group_cut_between_its_writes_is_trained_whole_again(
    tiny_model_path, tmp_path, monkeypatch
):
    """A kill after ann's folder is written but before bob's: the resumed pass trains
    the three together again (in float32, as a run does), writes bob and cy, and every
    adapter equals the uninterrupted pass's bit for bit; ann's folder is not rewritten."""
    from safetensors.torch import load_file

    import trainer.distill_group
    from societies.population import LoraSpec, PopulationModel
    from trainer.run_dir import adapter_is_saved

    population = PopulationModel(
        tiny_model_path, list(AGENTS), LoraSpec(r=4, alpha=8), init_seeds={"ann": 1, "bob": 2}
    )
    start = {a: population.save_adapter(a, tmp_path / "start" / a) for a in AGENTS}
    real = trainer.distill_group.atomic_directory

    def killed_at_bob(path):
        if path.name == "bob":
            raise RuntimeError("killed before bob's folder")
        return real(path)

    monkeypatch.setattr(trainer.distill_group, "atomic_directory", killed_at_bob)
    with pytest.raises(RuntimeError, match="killed before bob"):
        _distil(tmp_path / "cut", tiny_model_path, start, 1000.0, dtype="float32")
    assert [adapter_is_saved(tmp_path / "cut" / a) for a in AGENTS] == [True, False, False]
    ann_written = (tmp_path / "cut" / "ann" / "adapter_model.safetensors").stat().st_mtime_ns

    monkeypatch.setattr(trainer.distill_group, "atomic_directory", real)
    cut = tmp_path / "cut"
    resumed, _ = _distil(cut, tiny_model_path, start, 1000.0, done=("ann",), dtype="float32")
    whole, out_whole = _distil(tmp_path / "whole", tiny_model_path, start, 1000.0, dtype="float32")
    assert [o.losses for o in resumed] == [o.losses for o in whole]
    assert (cut / "ann" / "adapter_model.safetensors").stat().st_mtime_ns == ann_written
    for agent in AGENTS:
        a = load_file(cut / agent / "adapter_model.safetensors")
        b = load_file(out_whole[agent] / "adapter_model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), agent


def test_a_resumed_pass_trains_the_groups_the_first_process_planned(
    tiny_model_path, tmp_path, monkeypatch
):
    """The plan counts the memory the process holds. The first process (after a rollout)
    held enough that one agent fit per group; the resumed one holds nothing and, planning
    afresh, would train all three together. It reads the saved plan and trains cy alone,
    to the uninterrupted pass's weights bit for bit (float32, as a run trains)."""
    from safetensors.torch import load_file

    from societies.population import LoraSpec, PopulationModel

    population = PopulationModel(
        tiny_model_path, list(AGENTS), LoraSpec(r=4, alpha=8), init_seeds={"ann": 1, "bob": 2}
    )
    start = {a: population.save_adapter(a, tmp_path / "start" / a) for a in AGENTS}
    need, lora_bytes = _step_need_and_lora_bytes(tiny_model_path, start)
    budget = (3.5 * need + lora_bytes) / 1e9
    after_rollout = lambda: int(2.5 * need)  # noqa: E731  leaves one agent's step
    real = trainer.distill_batched.train_batched_sft
    calls: list[list[str]] = []

    def dies_on_cy(engine, data, *args, **kwargs):
        calls.append(sorted(data))
        if "cy" in data:
            raise RuntimeError("killed while training cy")
        return real(engine, data, *args, **kwargs)

    monkeypatch.setattr(trainer.distill_batched, "train_batched_sft", dies_on_cy)
    monkeypatch.setattr(distill_memory, "current_rss_bytes", after_rollout)
    cut, plan = tmp_path / "cut", tmp_path / "plan.json"
    with pytest.raises(RuntimeError, match="killed while training cy"):
        _distil(cut, tiny_model_path, start, budget, dtype="float32", plan_file=plan)
    assert calls == [["ann"], ["bob"], ["cy"]]

    def spy(engine, data, *args, **kwargs):
        calls.append(sorted(data))
        return real(engine, data, *args, **kwargs)

    monkeypatch.setattr(trainer.distill_batched, "train_batched_sft", spy)
    monkeypatch.setattr(distill_memory, "current_rss_bytes", lambda: 0)  # a fresh process
    calls.clear()
    _distil(tmp_path / "replanned", tiny_model_path, start, budget, dtype="float32")
    assert calls == [sorted(AGENTS)]  # what planning afresh would have done
    calls.clear()
    _distil(
        cut, tiny_model_path, start, budget, done=("ann", "bob"), dtype="float32", plan_file=plan
    )
    assert calls == [["cy"]]

    monkeypatch.setattr(distill_memory, "current_rss_bytes", after_rollout)
    _, out_whole = _distil(tmp_path / "whole", tiny_model_path, start, budget, dtype="float32")
    for agent in AGENTS:
        a = load_file(cut / agent / "adapter_model.safetensors")
        b = load_file(out_whole[agent] / "adapter_model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), agent


def _step_need_and_lora_bytes(model_path, start) -> tuple[float, float]:
    """The largest agent step's activation estimate, and what a pass holds besides
    activations: LoRA's gradients and AdamW moments, and the pass's fixed cost."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from societies.multi_lora import MultiLoraEngine
    from trainer.distill_batched import sft_example_from_chat

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    rows = [
        sft_example_from_chat(tokenizer, r["prompt"], r["completion"])
        for k in range(len(AGENTS))
        for r in _examples(k)
    ]
    width = max(len(r.prompt_ids) + len(r.completion_ids) for r in rows)
    engine = MultiLoraEngine.from_adapter_dirs(
        AutoModelForCausalLM.from_pretrained(model_path), start
    )
    per_token = activation_bytes_per_token(engine.model.config, 4, width)
    lora = sum(x.lora_A.numel() + x.lora_B.numel() for x in engine.layers.values())
    return 2 * width * per_token, 3 * 4 * lora + distill_memory.PASS_FIXED_BYTES


def test_freed_memory_is_not_counted_against_the_budget():
    """Many small freed blocks stay in glibc's heap (resident) until trimmed; the budget
    must see them as free (a sweep's third run once found its budget spent this way)."""
    import sys

    import numpy as np

    from trainer.distill_memory import current_rss_bytes, release_free_memory

    if not sys.platform.startswith("linux"):
        pytest.skip("resident memory is read from /proc (Linux)")
    blocks = [np.ones(1000) for _ in range(100_000)]  # ~0.8 GB in 8 kB blocks
    held = current_rss_bytes()
    del blocks
    release_free_memory()
    assert current_rss_bytes() < held - 0.6e9
