"""The ``folkways`` command line: argument parsing and wiring only."""

from __future__ import annotations

import argparse
import errno
import sys

from trainer import cli_commands

EXIT_BAD_INPUT = 2
EXIT_DISK_FULL = 75  # EX_TEMPFAIL: retry once the disk has room


class UsageError(Exception):
    """A command line argparse rejects; ``main`` prints it as one line, exit code 2."""


class _Subcommands(argparse._SubParsersAction):
    """Subcommands whose own ``--help`` repeats the line the command list shows."""

    def add_parser(self, name, **kwargs):
        if "help" in kwargs:
            kwargs.setdefault("description", kwargs["help"])
        return super().add_parser(name, **kwargs)


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is raised (not printed with the usage and exited)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Subcommands)

    def error(self, message: str):
        raise UsageError(f"{message}; see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="folkways",
        description=(
            "Generations of LoRA-adapted LLM agents play social games, distil the "
            "community's transcripts into their own weights, and are probed for how their "
            "priors moved."
        ),
        epilog=(
            "Start with: folkways run configs/naming_game/quickstart.yaml (the README's "
            "'Two commands'). `folkways COMMAND --help` gives a command's options."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run or resume a multi-generation experiment")
    run.add_argument("config", help="experiment YAML, e.g. configs/naming_game/quickstart.yaml")
    run.add_argument("overrides", nargs="*", help="key=value overrides, e.g. population.size=8")
    run.add_argument("--json", action="store_true", help="print the per-generation summary as JSON")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(func=cli_commands.cmd_run)

    probe = sub.add_parser("probe", help="(re)measure the priors of a run's saved adapters")
    probe.add_argument("run_dir")
    probe.add_argument(
        "--generation",
        type=int,
        default=None,
        help="adapters after this generation (default: last complete; -1: initial)",
    )
    probe.add_argument(
        "--orders",
        type=int,
        default=None,
        help="option orders to average (default: the run's probe.orders)",
    )
    probe.add_argument(
        "--traits",
        choices=["rotations", "reversed"],
        default=None,
        help="ask the IPIP Big-Five markers instead, with these Likert anchor orders",
    )
    probe.add_argument("--json", action="store_true")
    probe.set_defaults(func=cli_commands.cmd_probe)

    report = sub.add_parser("report", help="plots and summary table from a run directory")
    report.add_argument("run_dir")
    report.add_argument(
        "more_runs", nargs="*", help="more run directories: compare them side by side (--out)"
    )
    report.add_argument("--out", default=None, help="output directory (default: the run directory)")
    report.add_argument("--json", action="store_true")
    report.set_defaults(func=cli_commands.cmd_report)

    release = sub.add_parser(
        "release", help="export one agent's adapter as a PEFT folder with a model card"
    )
    release.add_argument("run_dir")
    release.add_argument("--agent", required=True, help="agent id, e.g. agent_03")
    release.add_argument(
        "--generation", type=int, default=None, help="default: the last complete generation"
    )
    release.add_argument("--out", required=True, help="output folder")
    release.add_argument(
        "--full-precision-base",
        default=None,
        metavar="PATH",
        help="folder with the full-precision weights the run's base stands in for (e.g. the "
        "hub's SmolLM2-135M-Instruct): the card then reports how far the prior moves on it",
    )
    release.add_argument(
        "--push",
        default=None,
        metavar="REPO_ID",
        help="upload the released folder to this Hugging Face model repo (created if missing)",
    )
    release.add_argument(
        "--private", action="store_true", help="with --push: create the repo as private"
    )
    release.add_argument("--json", action="store_true")
    release.set_defaults(func=cli_commands.cmd_release)

    model = sub.add_parser("model", help="manage base models")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    prepare = model_sub.add_parser(
        "prepare", help="build the embedded model cache (and the tiny test model)"
    )
    prepare.add_argument("--cache-dir", default=None)
    prepare.add_argument("--json", action="store_true")
    prepare.set_defaults(func=cli_commands.cmd_model_prepare)

    from trainer.baseline_command import add_baseline_parser

    add_baseline_parser(sub)

    from trainer.sweep import add_sweep_parser

    add_sweep_parser(sub)

    compare = sub.add_parser(
        "compare",
        help="one naming game learnt in context, with distillation, and by weight-update baselines",
    )
    compare.add_argument("config")
    compare.add_argument("overrides", nargs="*")
    compare.add_argument("--seeds", type=int, default=3)
    compare.add_argument("--methods", default=None, help="comma-separated; default all")
    compare.add_argument("--llm-rl-rounds", type=int, default=None, help="default 4 x game.rounds")
    compare.add_argument("--out", default=None, help="default runs/compare-<config name>")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(func=cli_commands.cmd_compare)

    ps = sub.add_parser(
        "person-situation",
        help="share of behaviour explained by the agent (weights) vs the context, per generation",
    )
    ps.add_argument("run_dir")
    ps.add_argument("--generation", type=int, action="append", help="default: every complete one")
    ps.add_argument("--contexts", type=int, default=16, help="contexts drawn per generation")
    ps.add_argument("--seed", type=int, default=0)
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=cli_commands.cmd_person_situation)

    from trainer.replay_command import add_replay_parser

    add_replay_parser(sub)
    from trainer.wandb_sync import add_wandb_parser

    add_wandb_parser(sub)
    from trainer.steps import add_step_parser

    add_step_parser(sub)
    from trainer.slurm_command import add_slurm_parser

    add_slurm_parser(sub)
    return parser


# Commands that load no model and train nothing: they skip importing the training
# libraries only to quiet them (~6 s: `folkways report` 3.2 s instead of 9.5 s).
WITHOUT_MODELS = ("report", "wandb", "slurm")


def _loads_models(args: argparse.Namespace) -> bool:
    """Whether the command may load a model or train one (the tabular baselines do not)."""
    if args.command == "baseline":
        from trainer.baseline_command import LLM_RL

        return args.method == LLM_RL
    return args.command not in WITHOUT_MODELS


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; the key=value overrides of ``run``, ``baseline``, ``sweep`` and
    ``compare`` may also follow their options."""
    args, extra = build_parser().parse_known_args(argv)
    if extra:
        # argparse stops filling the overrides list at the first option
        # (`run CONFIG --no-progress population.size=8`): give it the rest.
        options = [
            e
            for e in extra
            if e.startswith("-")
            or args.command not in ("run", "baseline", "sweep", "compare", "slurm")
        ]
        if options:
            prog = "folkways" + (f" {args.command}" if args.command else "")
            raise UsageError(f"unrecognized arguments: {' '.join(options)}; see `{prog} --help`")
        args.overrides = [*args.overrides, *extra]
    return args


def _one_line(err: BaseException) -> str:
    """The error's message on one line (YAML errors, for one, span several)."""
    return " ".join(str(err).split())


def main(argv: list[str] | None = None) -> int:
    """Run the command; bad input is one ``folkways: error:`` line and exit code 2.

    Every error a user's input can cause is raised as one of the types caught here,
    with a message naming the input, the value, and what would be accepted.
    """
    from societies.model_store import ModelNotFoundError
    from trainer.config_loader import ConfigError
    from trainer.library_logs import quiet_libraries
    from trainer.malloc import MallocUnavailable, reexec_under_tcmalloc

    try:
        args = _parse(argv)
        if argv is None and _loads_models(args):
            # The command line itself (not a test calling main): before torch is imported.
            reexec_under_tcmalloc()
    except (UsageError, MallocUnavailable, ValueError) as err:
        print(f"folkways: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if _loads_models(args):
        quiet_libraries()
    try:
        return args.func(args)
    except (ConfigError, ModelNotFoundError, FileNotFoundError, ValueError) as err:
        print(f"folkways: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        # EX_TEMPFAIL (sysexits.h): not bad input; the same command succeeds later.
        print(
            f"folkways: error: no space left on device writing {err.filename or 'a file'}; "
            "free some space, then re-run the same command to resume (completed work is kept)",
            file=sys.stderr,
        )
        return EXIT_DISK_FULL
    except KeyboardInterrupt:
        print("folkways: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
