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
from trainer.out_dirs import check_rerun_out

ACCEPTED = (
    "expected a new folder, or the output of this same baseline command (same method, "
    "config, overrides and --seeds; re-run in place)"
)


def args_record(
    method: str, baseline_args: Any, seeds: Sequence[int], config_path: str, overrides: list[str]
) -> dict[str, Any]:
    """What ``args.json`` holds: how the baseline output was made."""
    record = {  # in the order check_out compares them: the telling one first
        "method": method,
        "config": str(config_path),
        "seeds": list(seeds),
        "args": config_loader.to_dict(baseline_args),
        "overrides": list(overrides),
    }
    return json.loads(json.dumps(record))  # as read back from args.json (tuples as lists)


def check_out(out: Path, record: dict[str, Any]) -> None:
    """Refuse an ``--out`` that is a file, lies inside one, or is a non-empty folder
    other than the output of the command ``record`` describes (:func:`args_record`)."""
    check_rerun_out(out, "args.json", record, "a folkways baseline output", ACCEPTED)
