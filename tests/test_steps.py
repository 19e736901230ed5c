"""A generation run as three separate steps (``folkways step``) equals ``folkways run``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import QUICKSTART, tiny_overrides
from trainer.cli import main
from trainer.provenance import read_environments
from trainer.run_dir import RunLayout
from trainer.steps import (
    StepOrderError,
    agent_groups,
    chosen_agents,
    prepare_run,
    run_step,
    step_agent_options,
)

AGENTS = [f"agent_{i:02d}" for i in range(4)]


def test_agent_groups_cover_every_agent_once():
    assert agent_groups(AGENTS, 3) == [AGENTS[:3], AGENTS[3:]]
    assert agent_groups(AGENTS, 1) == [[a] for a in AGENTS]
    assert chosen_agents(AGENTS, task=1, per_task=3) == ["agent_03"]
    assert chosen_agents(AGENTS, agents=["agent_02"]) == ["agent_02"]
    assert chosen_agents(AGENTS) == AGENTS
    with pytest.raises(ValueError, match=r"--task 2: 4 agents in groups of 3 make 2 tasks"):
        chosen_agents(AGENTS, task=2, per_task=3)
    with pytest.raises(ValueError, match=r"--agents \['agent_09'\]"):
        chosen_agents(AGENTS, agents=["agent_09"])
    with pytest.raises(ValueError, match="agents per task = 0"):
        agent_groups(AGENTS, 0)


def _files(layout: RunLayout, g: int) -> dict[str, str]:
    names = ["transcripts.jsonl", "probe_before.json", "probes.json", "summary.json"]
    return {n: (layout.generation(g) / n).read_text() for n in names}


def test_steps_in_separate_calls_equal_one_run(reference, tmp_path):
    run_dir = prepare_run(QUICKSTART, tiny_overrides(tmp_path))
    layout = RunLayout(run_dir)
    assert (run_dir / "config.yaml").is_file() and (run_dir / "graph.json").is_file()
    assert not (run_dir / "initial_adapters").exists()  # preparing loads no model

    with pytest.raises(StepOrderError, match="rollout of generation 0 .* is not recorded"):
        run_step(run_dir, "distill", 0)
    with pytest.raises(StepOrderError, match="generation 0 .* is not complete"):
        run_step(run_dir, "rollout", 1)
    assert main(["step", "rollout", str(run_dir), "--generation", "0", "--no-progress"]) == 0
    run_step(run_dir, "distill", 0, task=0, per_task=3)
    with pytest.raises(StepOrderError, match=r"agents \['agent_03'\] have no distilled"):
        run_step(run_dir, "probe", 0)
    run_step(run_dir, "distill", 0, task=1, per_task=3)
    saved = (layout.adapter(0, "agent_00") / "adapter_model.safetensors").stat().st_mtime_ns
    again = run_step(run_dir, "distill", 0, agents=["agent_00"])  # a requeued task
    assert again.agents == ["agent_00"]
    assert (layout.adapter(0, "agent_00") / "adapter_model.safetensors").stat().st_mtime_ns == saved
    run_step(run_dir, "probe", 0)
    assert run_step(run_dir, "rollout", 0).status == "already complete"
    for step in ("rollout", "distill", "probe"):
        run_step(run_dir, step, 1)

    expected = RunLayout(reference.run_dir)
    for g in (0, 1):
        assert layout.is_complete(g)
        assert _files(layout, g) == _files(expected, g)
        for agent in AGENTS:
            ours = load_file(layout.adapter(g, agent) / "adapter_model.safetensors")
            theirs = load_file(expected.adapter(g, agent) / "adapter_model.safetensors")
            assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert layout.lineage.read_text() == expected.lineage.read_text()
    assert layout.metrics.read_text() == expected.metrics.read_text()
    # Each step that did work recorded its environment; refused and complete ones did not.
    assert [r["work"] for r in read_environments(layout.environment)] == [
        "step rollout 0",
        "step distill 0",
        "step distill 0",
        "step distill 0",
        "step probe 0",
        "step rollout 1",
        "step distill 1",
        "step probe 1",
    ]


def test_step_agent_options_refuse_what_would_train_every_agent_or_be_ignored():
    assert step_agent_options("distill", " agent_01, agent_02 ,", None, None) == (
        ["agent_01", "agent_02"],
        1,
    )
    assert step_agent_options("distill", None, 1, 3) == (None, 3)
    assert step_agent_options("distill", None, None, None) == (None, 1)
    # An empty shell variable in `--agents "$NAMES"` must not mean "all agents".
    for empty in ("", ",", " , "):
        with pytest.raises(ValueError, match="names no agent"):
            step_agent_options("distill", empty, None, None)
    with pytest.raises(ValueError, match="--agents-per-task 2 without --task"):
        step_agent_options("distill", None, None, 2)
    with pytest.raises(ValueError, match="--agents: only `folkways step distill`"):
        step_agent_options("rollout", "agent_01", None, None)
    with pytest.raises(ValueError, match="--task: only `folkways step distill`"):
        step_agent_options("probe", None, 0, None)


def test_bad_step_input_is_one_line_error(tmp_path, capsys):
    run_dir = prepare_run(QUICKSTART, tiny_overrides(tmp_path))
    assert main(["step", "rollout", str(run_dir), "--generation", "5"]) == 2
    assert "--generation 5; accepted: 0..1" in capsys.readouterr().err
    assert main(["step", "distill", str(run_dir), "--generation", "0", "--agents", ""]) == 2
    assert "--agents '' names no agent" in capsys.readouterr().err
    missing = Path(tmp_path) / "nowhere"
    assert main(["step", "rollout", str(missing), "--generation", "0"]) == 2
    assert str(missing) in capsys.readouterr().err


def test_distill_step_under_torchrun_trains_with_two_processes(reference, tmp_path):
    """`folkways step distill` under a launcher: both ranks train each agent on half of
    the global batch, rank 0 writes; the loss of the first step (before any update, so
    only the order of the float32 reduction differs) is the one-process run's."""
    import json
    import os
    import subprocess
    import sys

    from tests.float32 import LOSS_ATOL

    run_dir = prepare_run(QUICKSTART, tiny_overrides(tmp_path))
    for step in ("rollout", "distill", "probe"):
        run_step(run_dir, step, 0)
    run_step(run_dir, "rollout", 1)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "-m",
        "trainer.cli",
        "step",
        "distill",
        str(run_dir),
        "--generation",
        "1",
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("step distill of generation 1: done") == 2  # both ranks ran
    layout, expected = RunLayout(run_dir), RunLayout(reference.run_dir)
    for agent in AGENTS:
        ours = json.loads((layout.adapter(1, agent) / "training.json").read_text())
        theirs = json.loads((expected.adapter(1, agent) / "training.json").read_text())
        assert ours["operation"] == theirs["operation"] == "sft"
        assert abs(ours["losses"][0] - theirs["losses"][0]) <= LOSS_ATOL, agent
    assert not list(layout.generation(1).rglob("*.tmp*"))
    run_step(run_dir, "probe", 1)
    assert layout.is_complete(1)


def test_a_distillation_task_leaves_other_tasks_temporaries_alone(reference, tmp_path):
    """Distillation tasks run at once in one run directory: one must not clear another's
    half-written adapter (the probe step, which runs alone, does)."""
    import shutil

    from societies.atomic import TEMP_MARK

    run_dir = tmp_path / "t"
    shutil.copytree(reference.run_dir, run_dir)
    layout = RunLayout(run_dir)
    (layout.generation(1) / "COMPLETE").unlink()
    live = layout.generation(1) / "adapters" / f"agent_01{TEMP_MARK}live"
    live.mkdir()
    run_step(run_dir, "distill", 1, task=0)  # agent_00's task; its adapter is kept
    assert live.is_dir()
    run_step(run_dir, "probe", 1)
    assert not live.exists() and layout.is_complete(1)
