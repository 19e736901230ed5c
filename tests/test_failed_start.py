"""A failed start never blocks the corrected command (issue: reliability, item 2).

What config validation cannot check (the model, LoRA target names) is checked before
the run directory is written; a run directory holding no completed work (no transcript
line, no trained adapter) is treated as not started.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import QUICKSTART, run_tiny, tiny_overrides
from trainer.cli import main
from trainer.config_loader import ConfigError
from trainer.generation_loop import Experiment


def _cli_run(tmp_path, capsys, **extra) -> tuple[int, str]:
    code = main(["run", str(QUICKSTART), *tiny_overrides(tmp_path, **extra), "--no-progress"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "override, named",
    [
        ({"model.name_or_path": "/nonexistent"}, "model.name_or_path='/nonexistent'"),
        ({"lora.target_modules": "[q_proj, q_projj]"}, "['q_projj'] match no linear layer"),
        ({"lora.target_modules": "[all-linear, q_proj]"}, "'all-linear' must stand alone"),
    ],
    ids=["model-path", "target-module-typo", "all-linear-mixed"],
)
def test_a_bad_start_writes_nothing_and_the_corrected_command_runs(
    tmp_path, capsys, override, named
):
    code, err = _cli_run(tmp_path, capsys, **override)
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []  # not even runs/t/config.yaml
    if "target-module" in named or "match no linear" in named:
        # the error lists what would be accepted
        assert "names among ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj'" in err
    code, err = _cli_run(tmp_path, capsys, **{"run.generations": 1})
    assert code == 0, err
    assert (tmp_path / "t" / "generation_000" / "COMPLETE").is_file()


def test_named_target_modules_are_what_the_adapters_carry(tmp_path):
    result = run_tiny(tmp_path, **{"lora.target_modules": "[q_proj, v_proj]", "run.generations": 1})
    config = json.loads(
        (result.run_dir / "initial_adapters/agent_00/adapter_config.json").read_text()
    )
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]


def test_a_run_dir_without_completed_work_is_not_started(tmp_path, monkeypatch):
    """A start that died before any round finished: the next config replaces it."""

    def crash(self, population, g):
        raise RuntimeError("died before the first round")

    with monkeypatch.context() as patch:
        patch.setattr(Experiment, "play_rounds", crash)
        with pytest.raises(RuntimeError, match="first round"):
            run_tiny(tmp_path, **{"lora.r": 8})
    run_dir = tmp_path / "t"
    assert (run_dir / "initial_adapters/agent_00").is_dir()  # a failed start left these
    assert (run_dir / "generation_000/probe_before.json").is_file()

    logs: list[str] = []
    run_tiny(tmp_path, logs, **{"lora.r": 4, "run.generations": 1})
    assert any("holds no completed work" in line and "lora.r" in line for line in logs)
    config = json.loads((run_dir / "initial_adapters/agent_00/adapter_config.json").read_text())
    assert config["r"] == 4  # rebuilt for the new config, not left from the failed start
    assert (run_dir / "generation_000/COMPLETE").is_file()


def test_a_run_dir_with_completed_rounds_still_refuses_another_config(tmp_path, monkeypatch):
    def crash(self, *args, **kwargs):
        raise RuntimeError("died in distillation")

    with monkeypatch.context() as patch:
        patch.setattr(Experiment, "_distill", crash)
        with pytest.raises(RuntimeError, match="distillation"):
            run_tiny(tmp_path)
    assert (tmp_path / "t/generation_000/transcripts.jsonl").stat().st_size > 0
    with pytest.raises(ConfigError, match=r"lora.r: 8 \(run dir\) vs 4 \(now\)"):
        run_tiny(tmp_path, **{"lora.r": 4})


def test_a_run_stopped_in_distillation_resumes_with_a_raised_memory_budget(tmp_path, monkeypatch):
    """The budget error asks for a larger distill.memory_budget_gb: the corrected command
    resumes the run (its rounds kept, byte for byte) instead of being refused."""

    def crash(self, *args, **kwargs):
        raise MemoryError("one training row of agent_00 needs more than the budget leaves")

    batched = {"distill.backend": "batched", "run.generations": 1}
    with monkeypatch.context() as patch:
        patch.setattr(Experiment, "_distill", crash)
        with pytest.raises(MemoryError, match="agent_00"):
            run_tiny(tmp_path, **batched, **{"distill.memory_budget_gb": 1})
    transcript = tmp_path / "t/generation_000/transcripts.jsonl"
    played = transcript.read_bytes()
    assert played

    logs: list[str] = []
    run_tiny(tmp_path, logs, **batched, **{"distill.memory_budget_gb": 12})
    assert transcript.read_bytes() == played  # the rounds were kept, not replayed
    assert not any("afresh" in line for line in logs)
    assert (tmp_path / "t/generation_000/COMPLETE").is_file()
    with pytest.raises(ConfigError, match=r"distill.epochs: 1.0 \(run dir\) vs 2.0 \(now\)"):
        run_tiny(tmp_path, **{**batched, "distill.epochs": 2})
