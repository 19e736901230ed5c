"""``folkways sweep``: grids of tiny runs and their aggregates.

The command on one 2-point × 2-seed sweep of the tiny naming game, run once (in two
worker processes) and then re-run, resumed and refused; its statistics on synthetic
outcomes with known answers are in tests/test_sweep_stats.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil

import pytest

from tests.conftest import QUICKSTART
from trainer.config_loader import ConfigError
from trainer.run_dir import RunLayout
from trainer.sweep import add_sweep_parser, run_sweep
from trainer.sweep_plan import parse_grid, plan_sweep, run_name

# ----- grid and names ---------------------------------------------------------------------


def test_grid_values_are_yaml_lists():
    grid = parse_grid(["game.num_names=2,4", "game.names=[A, B],[C, D]", "game.temperature=0.5, 1"])
    assert grid == {
        "game.num_names": [2, 4],
        "game.names": [["A", "B"], ["C", "D"]],
        "game.temperature": [0.5, 1],
    }
    for bad, message in [
        ("game.num_names", "not of the form key=v1,v2"),
        ("game.num_names=", "has an empty value"),
        ("game.num_names=2,2", "repeats a value: 2 and 2 "),
        ("game.temperature=1,1.0", r"repeats a value: 1 and 1.0 are equal \(they would be two"),
        ("game.names=[A, 2],[A, 2.0]", r'repeats a value: \["A", 2\] and \["A", 2.0\] are equal'),
        ("run.seed=1,2", "seeds come from --seeds"),
        ("game.names=[A,B", "not a valid YAML list"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_grid([bad])
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["game.num_names=2", "game.num_names=4"])
    # true is no 1 (the config refuses a bool for a number, and a number for a bool)
    assert parse_grid(["game.x=true,1,0.5"]) == {"game.x": [True, 1, 0.5]}


def test_grid_values_that_load_as_one_config_are_refused(tiny_model_path, tmp_path):
    # distinct YAML values, one config: game.names is a list of strings, so 1 loads as "1"
    overrides = [*tiny_sweep_overrides(tmp_path), "probe.orders=2"]
    grid = parse_grid(['game.names=[1, 2],[B, C],["1", "2"]'])
    assert grid["game.names"] == [[1, 2], ["B", "C"], ["1", "2"]]
    with pytest.raises(
        ConfigError,
        match=r'^--grid points game.names=\[1, 2\] and game.names=\["1", "2"\] load as the '
        r"same config \(two identical runs per seed\)",
    ):
        plan_sweep(QUICKSTART, grid, 2, overrides)
    plan = plan_sweep(QUICKSTART, parse_grid(["game.names=[1, 2],[B, C]"]), 2, overrides)
    assert [r.point["game.names"] for r in plan.runs] == [[1, 2], [1, 2], ["B", "C"], ["B", "C"]]
    assert list(tmp_path.iterdir()) == []


def test_run_names_are_valid_run_names():
    name = run_name({"game.num_names": 2}, 3)
    assert name == "game.num_names-2__seed-3"
    odd = run_name({"game.names": ["A", "B c"], "interventions.0.fraction": 0.25}, 0)
    assert odd == "game.names-A-B-c__interventions.0.fraction-0.25__seed-0"
    long = run_name({"game.names": [f"name{i}" for i in range(60)]}, 1)
    for n in (name, odd, long):
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", n) and len(n) <= 120


# ----- the command on the tiny model --------------------------------------------------------


def tiny_sweep_overrides(output_dir) -> list[str]:
    """tests/conftest.py's tiny run, one generation, the game's W left to the grid.
    The batched distillation backend: a third of TRL's time at this size."""
    return [
        "model.name_or_path=tiny-random",
        f"run.output_dir={output_dir}",
        "run.name=t",
        "run.generations=1",
        "population.size=4",
        "game.rounds=4",
        "game.pairs_per_round=2",
        "probe.orders=2",
        "metrics.window=2",
        "distill.max_examples=4",
        "distill.epochs=1",
        "distill.batch_size=4",
        "distill.backend=batched",
        "model.batch_size=8",
    ]


def sweep_command(*argv) -> int:
    """``folkways sweep ...`` through a parser built as trainer/cli.py builds it."""
    parser = argparse.ArgumentParser(prog="folkways")
    add_sweep_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sweep", *map(str, argv)])
    return args.func(args)


@pytest.fixture(scope="module")
def swept(tiny_model_path, tmp_path_factory):
    """One 2-point x 2-seed sweep of the tiny naming game, in two worker processes."""
    root = tmp_path_factory.mktemp("sweep")
    plan = plan_sweep(QUICKSTART, parse_grid(["game.num_names=2,4"]), 2, tiny_sweep_overrides(root))
    logs: list[str] = []
    result = run_sweep(plan, jobs=2, progress=False, log=logs.append, draws=2000)
    return plan, result, logs


def test_sweep_runs_every_point_and_seed_and_writes_manifest_table_and_plots(swept):
    plan, result, logs = swept
    out = plan.out
    assert out.name == "t-sweep"  # <run.output_dir>/<run.name>-sweep
    names = [
        "game.num_names-2__seed-0",
        "game.num_names-2__seed-1",
        "game.num_names-4__seed-0",
        "game.num_names-4__seed-1",
    ]
    assert sorted(result.ran) == names and result.skipped == []
    assert sorted(line.split()[1] for line in logs) == names  # "ran <name> in N s"
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["grid"] == {"game.num_names": [2, 4]} and manifest["seeds"] == [0, 1]
    assert [r["name"] for r in manifest["runs"]] == names
    first = manifest["runs"][0]
    assert first["point"] == {"game.num_names": 2} and first["seed"] == 0
    assert first["overrides"][-4:] == [
        "game.num_names=2",
        "run.seed=0",
        f"run.name={names[0]}",
        f'run.output_dir="{out}"',
    ]
    for name in names:
        layout = RunLayout(out / name)
        assert layout.is_complete(0)
        assert (out / "logs" / f"{name}.log").read_text().count("generation 0 complete") == 1

    agg = json.loads((out / "aggregate.json").read_text())
    assert agg == result.aggregate.to_dict()
    rows = {r["point"]["game.num_names"]: r for r in agg["rows"]}
    assert set(rows) == {2, 4} and all(r["generation"] == 0 for r in rows.values())
    for w, row in rows.items():
        assert row["seeds"] == [0, 1]
        bias = row["bias"]
        assert sum(bias["winners"].values()) + bias["no_winner"] == 2
        # each seed draws its own W letters: an option's uniform share is 1/W times the
        # share of the two seeds that have it
        assert sum(bias["uniform"].values()) == pytest.approx(1.0)
        assert {round(v * 2 * w, 9) for v in bias["uniform"].values()} <= {1, 2}
        assert sum(bias["individual_prior"].values()) == pytest.approx(1.0)
        assert row["consensus"]["seeds"] == 2
        assert len(row["consensus"]["convergence_rounds"]) == 2
        if bias["vs_uniform"] is not None:
            assert bias["vs_uniform"]["df"] == len(bias["uniform"]) - 1
    csv_lines = (out / "aggregate.csv").read_text().splitlines()
    assert csv_lines[0].startswith("game.num_names,generation,seeds,converged_share")
    assert [line.split(",")[:3] for line in csv_lines[1:]] == [["2", "0", "2"], ["4", "0", "2"]]
    assert sorted(f.name for f in result.figures) == ["bias.png", "consensus.png"]
    for figure in result.figures:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000


def test_rerun_skips_complete_runs(swept, monkeypatch, capsys):
    plan, _, _ = swept

    def must_not_run(*args, **kwargs):
        raise AssertionError("run_experiment called for a complete run")

    monkeypatch.setattr("trainer.generation_loop.run_experiment", must_not_run)
    before = {p: p.stat().st_mtime_ns for p in plan.out.rglob("generation_000/*")}
    logs: list[str] = []
    again = plan_sweep(
        QUICKSTART, parse_grid(["game.num_names=2,4"]), 2, tiny_sweep_overrides(plan.out.parent)
    )
    result = run_sweep(again, progress=False, log=logs.append, draws=2000)
    assert result.ran == [] and len(result.skipped) == 4
    assert logs == [f"skip {r.name}: complete" for r in plan.runs]
    assert {p: p.stat().st_mtime_ns for p in plan.out.rglob("generation_000/*")} == before
    # the command line: the same, the aggregate as JSON on stdout
    args = ["--grid", "game.num_names=2,4", "--seeds", 2, "--json", "--no-progress"]
    assert sweep_command(QUICKSTART, *tiny_sweep_overrides(plan.out.parent), *args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ran"] == [] and printed["aggregate"]["grid_keys"] == ["game.num_names"]


def test_rerun_with_another_config_is_refused_before_writing(swept):
    plan, _, _ = swept
    manifest = (plan.out / "sweep.json").read_text()
    changed = plan_sweep(
        QUICKSTART,
        parse_grid(["game.num_names=2,4"]),
        2,
        [*tiny_sweep_overrides(plan.out.parent), "game.rounds=5"],
    )
    with pytest.raises(
        ConfigError,
        match="game.num_names-2__seed-0 was started with a different config .game.rounds differ",
    ):
        run_sweep(changed, progress=False, log=lambda _: None)
    assert (plan.out / "sweep.json").read_text() == manifest


def test_rerun_resumes_an_unfinished_run(swept):
    plan, _, _ = swept
    unfinished = plan.out / "game.num_names-4__seed-1"
    summary = (unfinished / "generation_000/summary.json").read_text()
    (unfinished / "generation_000/COMPLETE").unlink()
    logs: list[str] = []
    result = run_sweep(plan, jobs=1, progress=False, log=logs.append, draws=2000)
    assert result.ran == [unfinished.name] and len(result.skipped) == 3
    assert RunLayout(unfinished).is_complete(0)
    assert (unfinished / "generation_000/summary.json").read_text() == summary  # same seeds


def test_bad_grid_key_fails_before_anything_is_written(tiny_model_path, tmp_path):
    overrides = tiny_sweep_overrides(tmp_path)
    with pytest.raises(
        ConfigError, match=r"--grid point game.num_namez=2 .*unknown key 'game.num_namez'"
    ):
        sweep_command(QUICKSTART, *overrides, "--grid", "game.num_namez=2,4", "--seeds", 2)
    # the second point is out of range: still nothing run or written for the first
    with pytest.raises(ConfigError, match="game.num_names=30 is out of range"):
        sweep_command(QUICKSTART, *overrides, "--grid", "game.num_names=2,30", "--seeds", 1)
    with pytest.raises(ConfigError, match="sets the grid key game.rounds"):
        sweep_command(
            QUICKSTART, *overrides, "game.rounds=3", "--grid", "game.rounds=2,4", "--seeds", 1
        )
    with pytest.raises(ValueError, match="--tipping-key 'game.rounds' is not a grid key"):
        args = ["--grid", "game.num_names=2,4", "--seeds", 1, "--tipping-key", "game.rounds"]
        sweep_command(QUICKSTART, *overrides, *args)
    with pytest.raises(ValueError, match="--seeds=0; expected an integer >= 1"):
        sweep_command(QUICKSTART, *overrides, "--grid", "game.num_names=2,4", "--seeds", 0)
    assert list(tmp_path.iterdir()) == []


def test_tipping_sweep_on_disk_reads_committed_options(tiny_model_path, tmp_path, swept):
    """A tipping sweep's aggregate from run directories whose intervention records are
    written by hand (the grid key stands in for a committed fraction: planning refuses a
    key that is no committed share, so the plan is given the key after planning)."""
    plan, _, _ = swept
    out = tmp_path / "copy"
    shutil.copytree(plan.out, out)
    planned = plan_sweep(
        QUICKSTART,
        parse_grid(["game.num_names=2,4"]),
        2,
        tiny_sweep_overrides(plan.out.parent),
        out=out,
    )
    tipping = dataclasses.replace(planned, tipping_key="game.num_names")
    for run in tipping.runs:
        transcript = out / run.name / "generation_000/transcripts.jsonl"
        window = [json.loads(line) for line in transcript.read_text().splitlines()]
        counts: dict[str, int] = {}
        for d in window:
            if d["round"] >= 2:  # metrics.window=2 of game.rounds=4
                counts[d["action"]] = counts.get(d["action"], 0) + 1
        top = [o for o, n in counts.items() if n == max(counts.values())]
        assert len(top) == 1, f"{run.name} ties at the top: {counts}"  # a tie is no flip
        option = top[0] if run.seed == 0 else "none-of-them"
        record = {"kind": "committed_minority", "option": option}
        (out / run.name / "generation_000/interventions.jsonl").write_text(
            json.dumps(record) + "\n"
        )
    result = run_sweep(tipping, progress=False, log=lambda _: None, draws=200)
    assert result.ran == []
    (curve,) = result.aggregate.tipping
    assert curve.fit.fractions == [2.0, 4.0] and curve.fit.flipped == [1, 1]
    assert curve.fit.interval == (None, None)  # one of two flipped at each value: no curve
    assert [r.flipped_share for r in result.aggregate.rows] == [0.5, 0.5]
    assert (out / "tipping.png").is_file()


# ----- --slurm without a scheduler (tests/test_slurm.py runs it on a real one) --------------


class _RecordingExecutor:
    """Stands in for submitit.SlurmExecutor: records what would be submitted."""

    def __init__(self, folder, max_requeues):
        self.folder, self.max_requeues = folder, max_requeues

    def update_parameters(self, **params):
        self.params = params

    def map_array(self, fn, *iterables):
        self.fn, self.args = fn, iterables
        return [argparse.Namespace(job_id=f"42_{i}") for i in range(len(iterables[0]))]


def test_slurm_submission_is_one_array_of_runs_as_a_local_sweep_runs_them(
    tiny_model_path, tmp_path
):
    from trainer.sweep_slurm import submit_sweep

    slurm = ["slurm.rollout.cpus=3", "slurm.max_parallel_tasks=1", "slurm.max_requeues=5"]
    overrides = [*tiny_sweep_overrides(tmp_path), *slurm]
    plan = plan_sweep(QUICKSTART, parse_grid(["game.num_names=2,4"]), 1, overrides)
    executors = []

    def factory(folder, max_requeues):
        executors.append(_RecordingExecutor(folder, max_requeues))
        return executors[-1]

    submission = submit_sweep(plan, executor_factory=factory)
    (executor,) = executors
    names = ["game.num_names-2__seed-0", "game.num_names-4__seed-0"]
    assert submission.array_id == "42" and submission.runs == names
    assert executor.folder == plan.out / "slurm" / "logs" / "%j" and executor.max_requeues == 5
    params = executor.params
    assert (params["cpus_per_task"], params["array_parallelism"]) == (3, 1)
    assert params["job_name"] == "fw-sweep-t-sweep" and params["additional_parameters"]["requeue"]
    # Each task: the run's own overrides, as a local sweep runs it, and its log file.
    assert executor.args == (
        names,
        [r.overrides for r in plan.runs],
        [str(plan.out / "logs" / f"{n}.log") for n in names],
    )
    assert executor.fn.config == str(QUICKSTART.resolve())
    requeued = executor.fn.checkpoint(names[0], plan.runs[0].overrides, "x.log")
    assert requeued.function is executor.fn and requeued.args[0] == names[0]
    recorded = json.loads((plan.out / "slurm_jobs.json").read_text())
    assert [(s["array_id"], s["runs"]) for s in recorded] == [("42", names)]
    assert json.loads((plan.out / "sweep.json").read_text()) == plan.manifest()


def test_slurm_sweep_refuses_jobs_and_gridded_resources_before_writing(tiny_model_path, tmp_path):
    overrides = tiny_sweep_overrides(tmp_path)
    with pytest.raises(ValueError, match="--jobs=2 with --slurm"):
        sweep_command(QUICKSTART, *overrides, "--seeds", 1, "--slurm", "--jobs", 2)
    with pytest.raises(ValueError, match="different slurm: sections; one job array"):
        grid = ["--grid", "slurm.rollout.cpus=1,2", "--seeds", 1, "--slurm"]
        sweep_command(QUICKSTART, *overrides, *grid)
    assert list(tmp_path.iterdir()) == []


# ----- committed shares and the tipping key, checked before anything runs --------------------


def test_tipping_key_and_committed_shares_are_checked_before_anything_runs(
    tiny_model_path, tmp_path, capsys
):
    from trainer.cli import main

    committed = QUICKSTART.parent / "committed_minority.yaml"
    overrides = [*tiny_sweep_overrides(tmp_path), "interventions.0.round=2"]
    share = ["--grid", "interventions.0.share=0.25,0.5"]
    with pytest.raises(ConfigError, match=r"interventions\[0\].share=1.5 is out of range"):
        sweep_command(
            committed, *overrides, "--grid", "interventions.0.share=0.5,1.5", "--seeds", 1
        )
    # a grid key that is no committed share: refused, naming the keys that are
    memory = ["--grid", "game.memory=3,5", "--tipping-key", "game.memory", "--seeds", 1]
    with pytest.raises(
        ValueError,
        match=r"^--tipping-key 'game.memory' is not the share of a committed minority; "
        r"accepted: interventions.0.share$",
    ):
        sweep_command(committed, *overrides, *share, *memory)
    with pytest.raises(ValueError, match="accepted: none: the config has no committed_minority"):
        sweep_command(QUICKSTART, *tiny_sweep_overrides(tmp_path), *memory)
    # the command line: one error line, exit code 2, nothing run or written
    argv = ["sweep", str(committed), *overrides, *share, *map(str, memory), "--no-progress"]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("folkways: error: --tipping-key 'game.memory' is not the share")
    assert list(tmp_path.iterdir()) == []
