"""``folkways baseline --out``: checked before any seed runs, so bad input writes nothing.

An ``--out`` is accepted when it is new, an empty folder, or the output of the same
baseline command (same method, config file, overrides, seeds and resolved args, read from
its ``args.json``): that one is re-run in place, every file of it rewritten (the seeds
determine every record, so a tabular re-run writes the same records; it is how a run
interrupted while writing is finished). Any other folder is refused, so that seed
folders and ``results.json`` of different runs are never mixed or overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainer import config_loader
from trainer.out_dirs import check_out_dir

ACCEPTED = (
    "expected a new folder, or the output of this same baseline command (same method, "
    "config, overrides and --seeds; re-run in place)"
)
RECORD_KEYS = ("method", "config", "overrides", "seeds", "args")


def args_record(
    method: str, baseline_args: Any, seeds: Sequence[int], config_path: str, overrides: list[str]
) -> dict[str, Any]:
    """What ``args.json`` holds: how the baseline output was made."""
    record = {
        "method": method,
        "config": str(config_path),
        "overrides": list(overrides),
        "seeds": list(seeds),
        "args": config_loader.to_dict(baseline_args),
    }
    return json.loads(json.dumps(record))  # as read back from args.json (tuples as lists)


def check_out(out: Path, record: dict[str, Any]) -> None:
    """Refuse an ``--out`` that is a file, lies inside one, or is a non-empty folder
    other than the output of the command ``record`` describes (:func:`args_record`)."""
    check_out_dir(out, ACCEPTED)
    if out.is_dir():
        held = sorted(p.name for p in out.iterdir())
        if held:
            _check_previous_output(out, held, record)


def _check_previous_output(out: Path, held: list[str], record: dict[str, Any]) -> None:
    listed = f"{', '.join(held[:3])}{', ...' if len(held) > 3 else ''}"
    try:
        previous = json.loads((out / "args.json").read_text())
    except (OSError, ValueError):
        previous = None
    if not isinstance(previous, dict) or set(RECORD_KEYS) - set(previous):
        raise ValueError(
            f"--out {out} is not empty and not a folkways baseline output (it holds "
            f"{listed}); {ACCEPTED}"
        )
    for key in ("method", "config", "seeds", "args", "overrides"):  # the telling one first
        was, now = previous[key], record[key]
        if key == "config" and Path(was).resolve() == Path(now).resolve():
            continue
        if key == "args" and isinstance(was, dict) and was != now:
            names = sorted(k for k in {*was, *now} if was.get(k) != now.get(k))
            key, was, now = f"args.{names[0]}", was.get(names[0]), now.get(names[0])
        if was != now:
            raise ValueError(
                f"--out {out} holds another baseline's output ({key}={was!r} in its "
                f"args.json, {now!r} in this command); {ACCEPTED}"
            )
