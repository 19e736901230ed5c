"""The generation loop on the tiny model: run directory, exact replay, resume after kills."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import QUICKSTART, run_tiny, tiny_overrides
from tests.float32 import LOSS_ATOL, PROB_ATOL, assert_close
from trainer.config_loader import ConfigError
from trainer.lineage import read_lineage
from trainer.run_dir import RunLayout, adapter_is_saved
from trainer.tracking import read_metrics

ROOT = Path(__file__).parents[1]
AGENTS = [f"agent_{i:02d}" for i in range(4)]


def run(output_dir, logs=None, **extra):
    return run_tiny(output_dir, logs, **extra)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_run_directory_has_everything(reference):
    layout = RunLayout(reference.run_dir)
    assert layout.config.is_file() and "name_or_path: tiny-random" in layout.config.read_text()
    for g in (0, 1):
        assert layout.is_complete(g)
        records = [json.loads(x) for x in lines(layout.transcripts(g))]
        assert len(records) == 4 * 2 * 2  # rounds x pairs x 2 seats
        assert len({(r["round"], r["pair"], r["agent"]) for r in records}) == len(records)
        for agent in AGENTS:
            assert (layout.adapter(g, agent) / "adapter_model.safetensors").is_file()
        probes = json.loads(layout.probes(g).read_text())
        assert set(probes["before"]) == set(probes["after"]) == set(AGENTS)
        assert sum(probes["after"]["agent_00"]["probs"].values()) == pytest.approx(1.0)
    metrics = read_metrics(layout.metrics)
    assert {m.generation for m in metrics} == {0, 1}
    priors = [m for m in metrics if m.name == "prior_on_majority"]
    assert len(priors) == 2 * 2 * 4  # generations x (before, after) x agents
    # lineage: generation 1 adapters descend from generation 0's
    lineage = {(e.agent, e.generation): e for e in read_lineage(layout)}
    assert lineage[("agent_02", 1)].parents == ["generation_000/adapters/agent_02"]
    assert lineage[("agent_02", 0)].parents == ["initial_adapters/agent_02"]
    assert lineage[("agent_02", -1)].operation == "init"
    assert [s.generation for s in reference.summaries] == [0, 1]


def test_probe_before_of_a_generation_is_the_previous_after(reference):
    layout = RunLayout(reference.run_dir)
    after0 = json.loads(layout.probes(0).read_text())["after"]
    before1 = json.loads(layout.probes(1).read_text())["before"]
    assert before1 == after0  # the same adapters: measured once, reused


def test_each_adapter_set_is_probed_once(tiny_model_path, tmp_path, monkeypatch):
    """G generations probe G + 1 adapter sets: the initial ones and each generation's output."""
    import trainer.loop_rollout as loop  # where the probes are taken

    calls = []
    real = loop.prior_probe
    monkeypatch.setattr(loop, "prior_probe", lambda *a, **k: calls.append(1) or real(*a, **k))
    run(tmp_path, **{"run.generations": 3, "game.rounds": 2, "metrics.window": 1})
    assert len(calls) == 4


def test_seeded_run_repeats_exactly(reference, tmp_path):
    again = run(tmp_path)
    for g in (0, 1):
        a, b = RunLayout(reference.run_dir), RunLayout(again.run_dir)
        assert lines(a.transcripts(g)) == lines(b.transcripts(g))
        wa = load_file(a.adapter(g, "agent_01") / "adapter_model.safetensors")
        wb = load_file(b.adapter(g, "agent_01") / "adapter_model.safetensors")
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [s.to_dict() for s in again.summaries] == [s.to_dict() for s in reference.summaries]
    other_seed = run(tmp_path / "seed1", **{"run.seed": 1, "run.generations": 1})
    assert lines(RunLayout(other_seed.run_dir).transcripts(0)) != lines(
        RunLayout(reference.run_dir).transcripts(0)
    )


def test_resume_from_a_torn_generation_recomputes_only_what_is_missing(reference, tmp_path):
    """State a kill mid-rollout of generation 1 leaves behind: a torn transcript line,
    no distilled adapters, no COMPLETE."""
    out = tmp_path / "out"
    shutil.copytree(reference.run_dir.parent, out)
    layout = RunLayout(out / "t")
    g1 = layout.generation(1)
    for name in ("COMPLETE", "probes.json", "summary.json", "metrics.jsonl"):
        (g1 / name).unlink()
    shutil.rmtree(g1 / "adapters")
    text = layout.transcripts(1).read_text()
    layout.transcripts(1).write_text(text[: len(text) // 2 + 17])  # mid-line, mid-round
    gen0_adapter = layout.adapter(0, "agent_00") / "adapter_model.safetensors"
    gen0_mtime = gen0_adapter.stat().st_mtime_ns

    logs: list[str] = []
    resumed = run(out, logs)
    assert resumed.skipped == [0]
    assert any("resuming at round" in line for line in logs)
    ref = RunLayout(reference.run_dir)
    assert lines(layout.transcripts(1)) == lines(ref.transcripts(1))  # none lost, none duplicated
    assert gen0_adapter.stat().st_mtime_ns == gen0_mtime  # completed work not recomputed
    assert lines(layout.metrics) == lines(ref.metrics)
    assert [s.to_dict() for s in resumed.summaries] == [s.to_dict() for s in reference.summaries]


def test_finished_run_does_nothing_and_says_so(reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference.run_dir.parent, out)
    marker = RunLayout(out / "t").transcripts(1)
    mtime = marker.stat().st_mtime_ns
    logs: list[str] = []
    result = run(out, logs)
    assert result.skipped == [0, 1]
    assert any("already complete" in line and "nothing to do" in line for line in logs)
    assert marker.stat().st_mtime_ns == mtime


def test_a_runs_config_yaml_resumes_its_own_folder_from_anywhere(
    reference, tmp_path, monkeypatch, capsys
):
    """`folkways run RUN/config.yaml` once resumed whatever run.output_dir said: a moved
    copy resumed (here: reported) the original, a relative output_dir started a new run
    under the working directory."""
    from trainer.cli import main

    moved = shutil.copytree(reference.run_dir, tmp_path / "moved" / "t")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["run", str(moved / "config.yaml"), "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["run_dir"] == str(moved)
    assert list(elsewhere.iterdir()) == []
    # A relative output_dir, as a config file written by hand would have it.
    config = moved / "config.yaml"
    config.write_text(re.sub(r"output_dir: .*", "output_dir: runs", config.read_text()))
    assert main(["run", str(config), "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["run_dir"] == str(moved)
    assert list(elsewhere.iterdir()) == []
    # A renamed copy: its config names another run; refused, naming both.
    renamed = shutil.copytree(moved, tmp_path / "snapshot")
    assert main(["run", str(renamed / "config.yaml")]) == 2
    err = capsys.readouterr().err
    assert "is the config of run 't' but lives in a folder named 'snapshot'" in err


def test_changed_config_on_an_existing_run_is_refused_but_more_generations_extend_it(
    reference, tmp_path
):
    out = tmp_path / "out"
    shutil.copytree(reference.run_dir.parent, out)
    with pytest.raises(ConfigError, match=r"game.rounds: 4 \(run dir\) vs 5 \(now\)"):
        run(out, **{"game.rounds": 5})
    extended = run(out, **{"run.generations": 3})
    assert extended.skipped == [0, 1] and len(extended.summaries) == 3


def test_agents_without_selected_turns_keep_their_adapter(tiny_model_path, tmp_path):
    logs: list[str] = []
    # one pair plays one round: the two agents who sat out have no own turns
    result = run(
        tmp_path,
        logs,
        **{
            "run.generations": 1,
            "game.rounds": 1,
            "game.pairs_per_round": 1,
            "metrics.window": 1,
            "distill.selection": "own_successes",
            "game.temperature": 0,
        },
    )
    layout = RunLayout(result.run_dir)
    played = {json.loads(x)["agent"] for x in lines(layout.transcripts(0))}
    idle = [a for a in AGENTS if a not in played]
    assert len(idle) == 2
    for agent in idle:
        assert any(agent in line and "carried over unchanged" in line for line in logs)
        start = load_file(layout.initial_adapter(agent) / "adapter_model.safetensors")
        kept = load_file(layout.adapter(0, agent) / "adapter_model.safetensors")
        assert all(torch.equal(start[k], kept[k]) for k in start)
    assert result.summaries[0].carried_over >= 2


def test_killed_process_resumes_to_the_same_run(reference, tmp_path):
    """A real SIGKILL from outside during generation 0's adapter writes, then the same
    command again.

    The run pauses at a fault point (agent_00 and agent_01 saved, agent_02 not) and is
    killed there: polling for a file instead raced the run, which writes the tiny model's
    four carried-over adapters and the probe in well under a second."""
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "trainer.cli",
        "run",
        str(QUICKSTART),
        *tiny_overrides(out),
        "--no-progress",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    paused = "fault point write:generation_000/adapters/agent_02/: paused"
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**env, "FOLKWAYS_FAULTS": "pause@write:generation_000/adapters/agent_02/"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(300, proc.kill)  # a run that never pauses ends the wait
    watchdog.start()
    said = []
    try:
        for line in proc.stderr:
            said.append(line)
            if line.rstrip("\n") == paused:
                break
        else:
            pytest.fail(f"the run ended without pausing:\n{''.join(said[-20:])}")
        proc.send_signal(signal.SIGKILL)
    finally:
        watchdog.cancel()
        proc.wait()
        proc.stderr.close()
    layout = RunLayout(out / "t")
    assert not layout.is_complete(0)
    assert adapter_is_saved(layout.adapter(0, "agent_01"))
    assert not layout.adapter(0, "agent_02").exists()

    finished = subprocess.run(
        cmd + ["--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    report = json.loads(finished.stdout)
    assert report["skipped"] == []
    ref = RunLayout(reference.run_dir)
    for g in (0, 1):
        assert lines(layout.transcripts(g)) == lines(ref.transcripts(g))
    assert lines(layout.metrics) == lines(ref.metrics)
    assert report["generations"] == [s.to_dict() for s in reference.summaries]
    assert set(report["generations"][0]["game_metrics"]) == {
        "success_rate",
        "success_rate_last",
        "majority_name",
        "majority_share",
        "convergence_round",
    }


def test_cli_reports_bad_config_with_exit_code_2(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-m", "trainer.cli", "run", str(QUICKSTART), "population.szie=3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 2
    assert (
        "unknown key 'population.szie'" in finished.stderr
        and "known keys under 'population': size" in finished.stderr
    )


def test_the_command_line_is_parsed_without_importing_torch():
    """`folkways --help` and a mistyped command answer in a second, not after the ~2 s
    torch import (2-core AMD EPYC); the commands import what they use when they run."""
    code = (
        "import sys; from trainer.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_top_level_help_points_at_a_config_that_exists():
    """`folkways --help` says what the tool does and names a config to start from: a
    newcomer who copies the line must find the file."""
    from trainer.cli import build_parser

    text = build_parser().format_help()
    assert "argument parsing" not in text  # the module's docstring is for developers
    named = re.search(r"folkways run (\S+\.yaml)", text)
    assert named is not None, text
    assert (Path(__file__).parents[1] / named.group(1)).is_file(), named.group(1)


def test_every_subcommand_help_says_what_the_command_does():
    """`folkways run --help` (and every other command's) says what it does: the line the
    command list shows, unless the command has a longer description of its own; down to
    nested commands such as `folkways slurm submit`."""
    from trainer.cli import build_parser

    def commands(parser, path=()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                shown = {c.dest: c.help for c in action._choices_actions}
                for name, sub in action.choices.items():
                    yield path + (name,), shown.get(name), sub
                    yield from commands(sub, path + (name,))

    found = list(commands(build_parser()))
    assert len(found) >= 19
    for path, line, sub in found:
        assert line, f"`folkways {' '.join(path)}` has no help line"
        assert sub.description, f"`folkways {' '.join(path)} --help` says nothing of what it does"


def test_peft_engine_plays_the_same_run(reference, tmp_path):
    """The stacked multi-LoRA engine (default) and PEFT's mixed batch agree decision by decision."""
    peft_run = run(tmp_path, **{"model.engine": "peft", "run.generations": 1})
    ref = [json.loads(x) for x in lines(RunLayout(reference.run_dir).transcripts(0))]
    other = [json.loads(x) for x in lines(RunLayout(peft_run.run_dir).transcripts(0))]
    assert [d["action"] for d in other] == [d["action"] for d in ref]
    for a, b in zip(ref, other, strict=True):
        assert_close(a["option_probs"], b["option_probs"], PROB_ATOL, "option probabilities")


def test_batched_distillation_backend(reference, tmp_path):
    """distill.backend=batched trains every agent in one pass and writes the same records.

    The tiny run's generation 0 has no successes (every agent carried over: no
    "training" line), its generation 1 trains all four agents."""
    logs: list[str] = []
    result = run(tmp_path, logs, **{"distill.backend": "batched", "run.generations": 2})
    layout, ref = RunLayout(result.run_dir), RunLayout(reference.run_dir)
    assert lines(layout.transcripts(0)) == lines(ref.transcripts(0))  # rollout untouched
    for g in range(2):
        starts = [layout.initial_adapter(a) for a in AGENTS] if g == 0 else None
        trained = []
        for i, agent in enumerate(AGENTS):
            record = json.loads((layout.adapter(g, agent) / "training.json").read_text())
            start_dir = starts[i] if starts else layout.adapter(g - 1, agent)
            start = load_file(start_dir / "adapter_model.safetensors")
            after = load_file(layout.adapter(g, agent) / "adapter_model.safetensors")
            assert start.keys() == after.keys()
            if record["operation"] == "sft":
                trained.append(agent)
                # The same examples and first step as the reference run's TRL backend.
                trl = json.loads((ref.adapter(g, agent) / "training.json").read_text())
                assert record["losses"][0] == pytest.approx(trl["losses"][0], abs=LOSS_ATOL)
                assert any(not torch.equal(start[k], after[k]) for k in start if "lora_B" in k)
            else:
                assert all(torch.equal(start[k], after[k]) for k in start)
        said = [line for line in logs if line.startswith(f"generation {g}: training ")]
        expected = [f"generation {g}: training {len(trained)} adapters batched, in agent groups"]
        assert [line.split(" that fit")[0] for line in said] == (expected if trained else [])
    assert trained == AGENTS  # generation 1 trained every agent
    from trainer.config_loader import ConfigError as _ConfigError

    with pytest.raises(_ConfigError, match="whole number with distill.backend=batched"):
        run(tmp_path / "bad", **{"distill.backend": "batched", "distill.epochs": 1.5})


def test_prefix_cache_off_plays_the_same_run(reference, tmp_path):
    plain = run(tmp_path, **{"model.prefix_cache": False, "run.generations": 1})
    ref = [json.loads(x) for x in lines(RunLayout(reference.run_dir).transcripts(0))]
    other = [json.loads(x) for x in lines(RunLayout(plain.run_dir).transcripts(0))]
    assert [d["action"] for d in other] == [d["action"] for d in ref]
    for a, b in zip(ref, other, strict=True):
        assert_close(a["option_probs"], b["option_probs"], PROB_ATOL, "option probabilities")
    with pytest.raises(ConfigError, match="model.prefix_cache=true needs model.engine=multi_lora"):
        run(tmp_path / "bad", **{"model.prefix_cache": True, "model.engine": "peft"})
