"""``folkways sweep CONFIG --grid key=v1,v2 [--grid ...] --seeds K [--jobs J] [--out DIR]
[--tipping-key KEY] [--slurm] [--json] [key=value ...]``: grids of runs and their aggregates.

Every grid point × seed (``run.seed`` + 0..K-1) is an ordinary run directory, run with
``trainer.generation_loop.run_experiment``, under one experiment directory (default
``<run.output_dir>/<run.name>-sweep``)::

    sweep.json                  manifest: config, overrides, grid, seeds, every run
    <run>/                      one run directory per grid point × seed, e.g.
                                game.num_names-2__seed-3 for game.num_names=2, run.seed=3
    logs/<run>.log              each run's own log lines
    aggregate.json, aggregate.csv   consensus, collective bias, tipping point per grid
                                point × generation (trainer.sweep_aggregates)
    consensus.png, bias.png, tipping.png   (trainer.sweep_plots)

Every run's config is loaded (and so checked: trainer.sweep_plan) before anything is
written; a bad grid key or value fails naming it, with nothing run or written. Re-running
the same command skips complete runs (every generation has its COMPLETE marker and the
recorded config is the one asked for) and resumes the others (``run_experiment``
resumes). ``--jobs J`` runs J runs at once in worker processes (spawned; each torch gets
cpu_count / J threads); torch processes sharing few cores slow each other several-fold
(two on a 2-core machine), so J=1 is the default. The thread count can change float32
rounding, never the seeds: a run made with J=2 matches one made with J=1 to rounding.

``--slurm`` submits the incomplete runs as one Slurm job array instead, prints its id and
returns (trainer.sweep_slurm); the same command run again once the array has finished
aggregates. While tasks of a recorded array are queued or running, the command refuses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from societies.atomic import atomic_write_json, atomic_write_text
from trainer.config_loader import ConfigError
from trainer.run_config_check import has_completed_work, resumable
from trainer.run_dir import RunLayout
from trainer.sweep_aggregates import SweepAggregate, aggregate
from trainer.sweep_outcomes import committed_option, read_run_outcome
from trainer.sweep_plan import SweepPlan, parse_grid, plan_sweep
from trainer.sweep_tables import csv_rows, format_aggregate

if TYPE_CHECKING:
    from trainer.config import ExperimentConfig

__all__ = [
    "SweepResult",
    "add_sweep_parser",
    "aggregate_sweep",
    "check_started_runs",
    "is_complete",
    "run_sweep",
    "run_sweep_command",
]


def _stderr(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)  # keeps the progress bar intact


@dataclass(frozen=True)
class SweepResult:
    out: Path
    ran: list[str]
    skipped: list[str]
    aggregate: SweepAggregate
    figures: list[Path]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "ran": self.ran,
            "skipped": self.skipped,
            "figures": [str(f) for f in self.figures],
            "aggregate": self.aggregate.to_dict(),
        }


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix[:-1]: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat |= _flat(value, f"{prefix}{key}.")
    return flat


def _differences(config: ExperimentConfig) -> list[str]:
    """Keys whose value in the run directory's recorded config differs from ``config``'s
    (none when nothing is recorded yet); keys a resume may change are not counted."""
    layout = RunLayout(config.run_dir)
    if not layout.config.is_file():
        return []
    recorded = _flat(yaml.safe_load(layout.config.read_text()))
    wanted = _flat(config.to_dict())
    keys = {k for k in set(recorded) | set(wanted) if not resumable(k)}
    return sorted(k for k in keys if recorded.get(k) != wanted.get(k))


def is_complete(config: ExperimentConfig) -> bool:
    """Whether the run of ``config`` has every generation COMPLETE, with this config."""
    layout = RunLayout(config.run_dir)
    return (
        layout.config.is_file()
        and all(layout.is_complete(g) for g in range(config.run.generations))
        and not _differences(config)
    )


def check_started_runs(plan: SweepPlan) -> None:
    """Refuse, before anything is written, a sweep whose runs were started with another
    config (``run_experiment`` would refuse each one, after the others had run)."""
    for run in plan.runs:
        config = plan.configs[run.name]
        layout = RunLayout(config.run_dir)
        differences = _differences(config)
        if differences and has_completed_work(layout):
            raise ConfigError(
                f"{layout.root} was started with a different config ({', '.join(differences[:5])} "
                "differ); re-run the sweep with the same config and overrides to resume it, or "
                "give another --out"
            )


def _append_log(path: Path) -> Callable[[str], None]:
    path.parent.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    return log


def _run_one(config: str, overrides: list[str], log_path: Path) -> float:
    """Run (or resume) one run, its log lines into ``log_path``; returns seconds taken."""
    from trainer.generation_loop import run_experiment

    start = time.perf_counter()
    run_experiment(config, overrides, progress=False, log=_append_log(log_path))
    return time.perf_counter() - start


def _init_worker(threads: int) -> None:
    """A spawned worker: its share of the cores, the libraries' own bars hidden."""
    import torch

    from trainer.library_logs import quiet_libraries

    torch.set_num_threads(threads)
    quiet_libraries()


def _run_in_worker(task: tuple[str, str, list[str], str]) -> tuple[str, float]:
    name, config, overrides, log_path = task
    return name, _run_one(config, overrides, Path(log_path))


def run_sweep(
    plan: SweepPlan,
    *,
    jobs: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = _stderr,
    committed: Callable[[Path], str | None] = committed_option,
    draws: int = 10_000,
) -> SweepResult:
    """Run the plan's incomplete runs, then aggregate all of them and draw the figures.

    Args:
        jobs: runs at once (worker processes when > 1).
        progress: a progress bar over runs on stderr.
        log: one line per run (skipped, ran); each run's own lines go to logs/<run>.log.
        committed: reads a run directory's committed option (tipping sweeps).
        draws: Monte Carlo draws of the chi-square tests.
    """
    if jobs < 1:
        raise ValueError(f"--jobs={jobs}; expected an integer >= 1")
    from trainer.sweep_slurm import check_no_queued_tasks

    check_no_queued_tasks(plan.out)  # runs of a Slurm array still running: not here too
    check_started_runs(plan)
    plan.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(plan.out / "sweep.json", plan.manifest())
    todo = []
    for run in plan.runs:
        if is_complete(plan.configs[run.name]):
            log(f"skip {run.name}: complete")
        else:
            todo.append(run)
    skipped = [r.name for r in plan.runs if r not in todo]
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="sweep", unit="run", disable=not progress, file=sys.stderr)
    logs = plan.out / "logs"
    tasks = [(r.name, plan.config, r.overrides, str(logs / f"{r.name}.log")) for r in todo]
    try:
        if jobs == 1 or len(todo) <= 1:
            for task in tasks:
                name, seconds = _run_in_worker(task)
                log(f"ran {name} in {seconds:.0f} s")
                bar.update()
        else:
            import multiprocessing

            threads = max(1, (os.cpu_count() or 1) // jobs)
            context = multiprocessing.get_context("spawn")  # no forked torch state
            with context.Pool(min(jobs, len(todo)), _init_worker, (threads,)) as pool:
                for name, seconds in pool.imap_unordered(_run_in_worker, tasks):
                    log(f"ran {name} in {seconds:.0f} s")
                    bar.update()
    finally:
        bar.close()
    agg = aggregate_sweep(plan, committed=committed, draws=draws)
    atomic_write_json(plan.out / "aggregate.json", agg.to_dict())
    atomic_write_text(plan.out / "aggregate.csv", _csv(csv_rows(agg)))
    from trainer.sweep_plots import write_figures

    figures = write_figures(agg, plan.out)
    return SweepResult(plan.out, [r.name for r in todo], skipped, agg, figures)


def aggregate_sweep(
    plan: SweepPlan,
    *,
    committed: Callable[[Path], str | None] = committed_option,
    draws: int = 10_000,
) -> SweepAggregate:
    """The aggregate of the plan's run directories, as they are on disk now."""
    from trainer.games import build_game

    outcomes = []
    for run in plan.runs:
        config = plan.configs[run.name]
        options = build_game(config.game, config.run.seed).options
        outcomes.append(
            read_run_outcome(
                config.run_dir,
                point=run.point,
                seed=run.seed,
                options=options,
                committed=committed,
            )
        )
    return aggregate(outcomes, list(plan.grid), tipping_key=plan.tipping_key, draws=draws)


def _csv(rows: list[dict[str, Any]]) -> str:
    import csv
    import io

    fields = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def add_sweep_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``folkways sweep``; its handler is :func:`run_sweep_command`."""
    parser = subparsers.add_parser(
        "sweep", help="a grid of runs x seeds in one experiment directory, and their aggregates"
    )
    parser.add_argument("config", help="experiment YAML, e.g. configs/naming_game/quickstart.yaml")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="key=value overrides shared by every run, e.g. run.generations=3",
    )
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="a config key and its values (YAML), e.g. game.num_names=2,4; repeat for more keys",
    )
    parser.add_argument(
        "--seeds", type=int, required=True, help="seeds per grid point: run.seed .. run.seed+K-1"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at once in worker processes (default 1: torch processes sharing a few "
        "cores slow each other several-fold)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="experiment directory (default <run.output_dir>/<run.name>-sweep)",
    )
    parser.add_argument(
        "--tipping-key",
        default=None,
        help="the grid key holding the committed fraction: fit the tipping point over it",
    )
    parser.add_argument(
        "--slurm",
        action="store_true",
        help="submit the incomplete runs as one Slurm job array (resources: slurm.rollout) "
        "and return; run the same command again when it has finished to aggregate",
    )
    parser.add_argument("--json", action="store_true", help="print the aggregate as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_sweep_command)
    return parser


def run_sweep_command(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise ValueError(f"--jobs={args.jobs}; expected an integer >= 1")
    if args.slurm and args.jobs != 1:
        raise ValueError(
            f"--jobs={args.jobs} with --slurm; the array runs up to slurm.max_parallel_tasks "
            "runs at once: drop --jobs"
        )
    plan = plan_sweep(
        args.config,
        parse_grid(args.grid),
        args.seeds,
        args.overrides,
        out=args.out,
        tipping_key=args.tipping_key,
    )
    if args.slurm:
        from trainer.sweep_slurm import submit_sweep

        submission = submit_sweep(plan, log=_stderr)
        if submission is not None:
            if args.json:
                print(json.dumps({"out": str(plan.out), **submission.to_dict()}, indent=2))
            else:
                print(f"experiment directory: {plan.out}")
                print(
                    f"submitted job array {submission.array_id}: {len(submission.runs)} of "
                    f"{len(plan.runs)} runs (the others are complete); follow it with "
                    f"squeue -j {submission.array_id}, then run this command again to aggregate"
                )
            return 0
        # every run is complete: aggregate, as without --slurm
    result = run_sweep(plan, jobs=args.jobs, progress=not args.no_progress)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"\nexperiment directory: {result.out}")
        print(
            f"runs: {len(plan.runs)} (ran {len(result.ran)}, skipped {len(result.skipped)} complete)"
        )
        print(format_aggregate(result.aggregate))
        print("figures: " + (", ".join(str(f) for f in result.figures) or "none"))
    return 0
