"""``folkways baseline --out``: checked before any seed runs, so bad input writes nothing."""

from __future__ import annotations

from pathlib import Path

ACCEPTED = "expected a new folder, or the output of this same baseline command (re-run in place)"


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that is a file or lies inside one."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; {ACCEPTED}")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {out} is inside {parent}, which is a file; {ACCEPTED}")
