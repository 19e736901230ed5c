"""``folkways slurm submit|status|cancel|render``: argument parsing and wiring only
(the pipeline is :mod:`trainer.slurm_pipeline`, the scripts :mod:`trainer.slurm_render`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_slurm_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("slurm", help="run an experiment as a chain of Slurm jobs")
    sub = parser.add_subparsers(dest="slurm_command", required=True)

    submit = sub.add_parser(
        "submit", help="submit every remaining step (a resumed run: only what is missing)"
    )
    submit.add_argument("config", help="experiment YAML, or an existing run directory")
    submit.add_argument("overrides", nargs="*")
    submit.add_argument("--json", action="store_true")
    submit.set_defaults(func=_cmd_submit)

    render = sub.add_parser(
        "render", help="dry run: write the sbatch scripts and print the sbatch commands"
    )
    render.add_argument("config", help="experiment YAML, or an existing run directory")
    render.add_argument("overrides", nargs="*")
    render.add_argument("--out", default=None, help="default: <run_dir>/slurm/scripts")
    render.set_defaults(func=_cmd_render)

    status = sub.add_parser("status", help="each generation's steps and their jobs' state")
    status.add_argument("run_dir")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_cmd_status)

    cancel = sub.add_parser("cancel", help="scancel the run's queued and running jobs")
    cancel.add_argument("run_dir")
    cancel.set_defaults(func=_cmd_cancel)


def _experiment(config: str, overrides: list[str]):
    from trainer.generation_loop import Experiment
    from trainer.run_dir import RunLayout

    path = Path(config)
    if path.is_dir():
        if not RunLayout(path).config.exists():
            raise FileNotFoundError(
                f"{config} is a folder without config.yaml; expected an experiment YAML or "
                "a run directory made by folkways"
            )
        if overrides:
            raise ValueError(
                f"overrides {overrides} with a run directory: a run keeps its config; "
                "give the experiment YAML to change slurm: resources"
            )
        return Experiment.from_run_dir(path, progress=False, log=_log)
    from trainer.config import load_experiment

    if not path.is_file():
        raise FileNotFoundError(
            f"config {config!r} does not exist; expected an experiment YAML (e.g. "
            "configs/naming_game/quickstart.yaml) or a run directory"
        )
    return Experiment(load_experiment(path, overrides), progress=False, log=_log)


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def _cmd_submit(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from trainer.slurm_pipeline import submit_pipeline

    exp = _experiment(args.config, args.overrides)
    jobs = submit_pipeline(exp, log=_log)
    if args.json:
        print(json.dumps({"run_dir": str(exp.layout.root), "jobs": [asdict(j) for j in jobs]}))
    else:
        print(f"run directory: {exp.layout.root}")
        print(f"follow it with: folkways slurm status {exp.layout.root}")
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from trainer.slurm_render import render_pipeline

    exp = _experiment(args.config, args.overrides)
    rendered = render_pipeline(exp, Path(args.out) if args.out else None)
    where = rendered.folder
    if rendered.removed:
        print(f"# removed from {where}, of its previous render: {' '.join(rendered.removed)}")
    if rendered.foreign:
        print(f"# left in {where}, not written by this render: {' '.join(rendered.foreign)}")
    if not rendered.scripts:
        print(f"# {exp.layout.root} is complete; nothing to render (no scripts written)")
        return 0
    for line in rendered.commands:
        print(line)
    print(
        f"# wrote {len(rendered.scripts)} scripts to {where}; run them in order with "
        f"{where / 'submit.sh'}"
    )
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from trainer.generation_loop import Experiment
    from trainer.slurm_status import format_status, pipeline_status

    rows = pipeline_status(Experiment.from_run_dir(args.run_dir, progress=False, log=_log))
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
    else:
        print(format_status(rows))
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    from trainer.run_dir import open_run_dir
    from trainer.slurm_pipeline import cancel_pipeline

    cancelled = cancel_pipeline(open_run_dir(args.run_dir).root)
    print(
        f"cancelled {len(cancelled)} job(s): {' '.join(cancelled)}"
        if cancelled
        else "no job of this run is queued"
    )
    return 0
