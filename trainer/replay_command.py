"""``folkways replay``: one generation of a finished run played again with one factor
changed (:mod:`trainer.replay`), or each agent's effect on it (``--attribution``)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from trainer.summary import majority_label

if TYPE_CHECKING:  # importing them at parse time would import torch for every command
    from trainer.replay_records import AgentEffect, ReplayResult


def add_replay_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``folkways replay``; its handler is :func:`run_replay_command`."""
    parser = subparsers.add_parser(
        "replay",
        help="replay one generation with one factor changed and the seeds held fixed",
    )
    parser.add_argument("run_dir", help="a run directory written by `folkways run`")
    parser.add_argument(
        "--generation", type=int, required=True, help="the complete generation to replay"
    )
    parser.add_argument(
        "--swap-adapter",
        action="append",
        default=[],
        metavar="AGENT=DONOR",
        help="AGENT starts with DONOR's start adapter (repeatable; swaps are simultaneous)",
    )
    parser.add_argument(
        "--reset",
        action="append",
        default=[],
        metavar="AGENT",
        help="AGENT starts with its initial adapter, the base model (repeatable)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override, e.g. game.temperature=0.7 (repeatable)",
    )
    parser.add_argument(
        "--attribution",
        action="store_true",
        help="replay once per LLM agent with it reset; print each agent's effect",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="the replay's folder (default: beside the run, <run>-replay-g<G>-<label>); "
        "with --attribution, the folder the replays go in",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_replay_command)
    return parser


def parse_swaps(values: list[str]) -> dict[str, str]:
    """``["agent_01=agent_03", ...]`` -> ``{"agent_01": "agent_03"}``."""
    swaps: dict[str, str] = {}
    for value in values:
        agent, sep, donor = value.partition("=")
        if not sep or not agent.strip() or not donor.strip():
            raise ValueError(
                f"--swap-adapter {value!r} is not of the form AGENT=DONOR (e.g. agent_01=agent_03)"
            )
        agent, donor = agent.strip(), donor.strip()
        if agent in swaps:
            raise ValueError(
                f"--swap-adapter {value!r}: {agent} is already given {swaps[agent]}'s adapter; "
                "expected each agent once"
            )
        swaps[agent] = donor
    return swaps


def run_replay_command(args: argparse.Namespace) -> int:
    from trainer.replay import attribution, replay_generation

    swaps = parse_swaps(args.swap_adapter)
    log = _stderr if not args.no_progress else (lambda _: None)
    if args.attribution:
        if swaps or args.reset:
            raise ValueError(
                "--attribution replays each agent reset in turn; it takes no --swap-adapter "
                "or --reset (run those as a plain replay)"
            )
        effects = attribution(
            Path(args.run_dir),
            args.generation,
            overrides=args.overrides,
            out_root=args.out,
            progress=not args.no_progress,
            log=log,
        )
        if args.json:
            print(json.dumps([e.to_dict() for e in effects], indent=2))
        else:
            print(format_attribution(args.run_dir, args.generation, effects))
        return 0
    result = replay_generation(
        Path(args.run_dir),
        args.generation,
        swap_adapters=swaps,
        reset_to_start=args.reset,
        overrides=args.overrides,
        out_dir=args.out,
        progress=not args.no_progress,
        log=log,
    )
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_result(result))
    return 0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def format_result(result: ReplayResult) -> str:
    spec, a, b = result.spec, result.original, result.replay
    first = result.first_difference
    lines = [
        f"replay of generation {spec.generation} of {spec.source} ({spec.label}): {result.out_dir}",
        "identical to the original, byte for byte"
        if result.identical
        else (
            "no decision differs (the files differ in formatting only)"
            if first is None
            else f"first difference: round {first.round}, {first.agent} (pair {first.pair})"
        ),
        f"{'':30}{'original':>12}{'replay':>12}{'difference':>12}",
        f"{'success rate, all rounds':30}{a.success_rate:>12.3f}{b.success_rate:>12.3f}"
        f"{result.success_rate_delta:>+12.3f}",
    ]
    # The window rows: the rounds `folkways run`/`report` print "success (last rounds)"
    # and "majority (share)" over (metrics.window), labelled so they are not read as
    # the whole generation's.
    last = "last rounds" if a.window is None else f"last {a.window} rounds"
    if a.success_rate_last is not None and b.success_rate_last is not None:
        lines.append(
            f"{'success rate, ' + last:30}{a.success_rate_last:>12.3f}"
            f"{b.success_rate_last:>12.3f}{b.success_rate_last - a.success_rate_last:>+12.3f}"
        )
    # A tie at the top is no majority: "tie A=B", its share the one each tied option has,
    # and no original majority whose share the replay could keep.
    if a.majority_option is not None:
        held = (
            f"{'share of ' + a.majority_option + ', ' + last:30}{a.majority_share:>12.3f}"
            f"{result.original_majority_share_in_replay:>12.3f}"
            f"{result.original_majority_share_delta:>+12.3f}"
        )
    else:
        why = (
            f"the original had no single majority ({majority_label(None, a.majority_tied)})"
            if a.majority_tied
            else "the original made no choices"
        )
        held = f"{'share of original majority':30}{'n/a':>12}{'n/a':>12}{'n/a':>12}  ({why})"
    lines += [
        f"{'majority option, ' + last:30}{majority_label(a.majority_option, a.majority_tied):>12}"
        f"{majority_label(b.majority_option, b.majority_tied):>12}",
        f"{'majority share, ' + last:30}{a.majority_share:>12.3f}{b.majority_share:>12.3f}"
        f"{result.majority_share_delta:>+12.3f}",
        held,
        f"{'mean payoff, all rounds':30}{a.mean_payoff:>12.2f}{b.mean_payoff:>12.2f}"
        f"{result.mean_payoff_delta:>+12.2f}",
        "payoff difference by agent: "
        + ", ".join(f"{k} {v:+.1f}" for k, v in result.payoff_delta_by_agent.items()),
    ]
    if result.pinned_names:
        lines.append(
            f"names held as the original's: game.names={list(result.pinned_names)} (the run "
            "drew them from run.seed; a --set run.seed would otherwise redraw them)"
        )
    return "\n".join(lines)


def format_attribution(run_dir, generation: int, effects: list[AgentEffect]) -> str:
    lines = [
        f"attribution of generation {generation} of {run_dir}: each agent reset to its initial "
        "adapter; effect = original - replay",
        "(success and mean payoff: all rounds; majority share: last metrics.window rounds)",
        f"{'agent':12}{'success':>10}{'majority share':>16}{'mean payoff':>13}"
        f"{'convention without':>20}{'first diff':>12}",
    ]
    for e in effects:
        first = "-" if e.first_difference_round is None else f"round {e.first_difference_round}"
        # NaN: the original's options tied at the top, so no share of its majority moved.
        share = "n/a" if math.isnan(e.majority_share_effect) else f"{e.majority_share_effect:+.3f}"
        without = majority_label(e.replay_majority_option, e.replay_majority_tied)
        lines.append(
            f"{e.agent:12}{e.success_rate_effect:>+10.3f}{share:>16}"
            f"{e.mean_payoff_effect:>+13.2f}{without:>20}{first:>12}"
        )
    return "\n".join(lines)
