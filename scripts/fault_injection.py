"""Kill a run K times anywhere, resume it each time, and check it ends as if never killed.

    python scripts/fault_injection.py configs/naming_game/quickstart.yaml --kills 30
    python scripts/fault_injection.py configs/naming_game/quickstart.yaml --kills 10 \
        model.name_or_path=tiny-random population.size=4 game.pairs_per_round=2

Prints where each kill landed, the kills per phase and every difference between the
killed-and-resumed run directory and the uninterrupted one (none, when resuming
works); exits 1 if there is a difference. The logic is trainer.fault_injection.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from trainer.fault_injection import check_kill_anywhere


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    parser.add_argument("--kills", type=int, default=30, help="SIGKILLs to deliver")
    parser.add_argument("--seed", type=int, default=0, help="draws the kill positions")
    parser.add_argument("--workdir", default=None, help="default: a new temporary directory")
    parser.add_argument(
        "--focus",
        default="",
        help="comma-separated phases the first kills go to, e.g. rollout,distillation",
    )
    parser.add_argument(
        "--adapter-atol", type=float, default=0.0, help="allowed adapter weight difference"
    )
    parser.add_argument(
        "--fresh-interpreters",
        action="store_true",
        help="start each process as python -m trainer.cli (default: fork it from a server "
        "with the libraries imported, ~9 s faster per process)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_intermixed_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="folkways-faults-"))
    report = check_kill_anywhere(
        args.config,
        args.overrides,
        workdir,
        kills=args.kills,
        seed=args.seed,
        adapter_atol=args.adapter_atol,
        focus=[p for p in args.focus.split(",") if p],
        fresh_interpreters=args.fresh_interpreters,
        progress=(lambda m: print(m, file=sys.stderr)),
    )
    if args.json:
        print(json.dumps({**report.to_dict(), "workdir": str(workdir)}, indent=2))
    else:
        print(f"workdir: {workdir}")
        print(f"fault points in an uninterrupted run: {report.points}")
        print(f"kills: {len(report.kills)} in {report.processes} processes")
        for phase, count in report.phases.items():
            print(f"  {phase:<18} {count}")
        print(f"files compared: {report.files_compared}")
        print("differences: " + ("none" if report.ok else ""))
        for line in report.differences:
            print(f"  {line}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
