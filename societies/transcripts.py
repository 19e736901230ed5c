"""Append-only JSONL transcripts, written a whole round at a time.

A round's lines are written in one ``write`` and fsynced. A kill can leave at most
one torn final line or an incomplete last round; :func:`read_complete_rounds` drops
both, and :func:`truncate_to` cuts the file back so a resumed run appends cleanly —
no duplicated and no lost lines.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from societies import faults
from societies.atomic import naming_the_file_on_full_disk
from societies.records import Decision


def append_decisions(path: Path, decisions: Sequence[Decision]) -> None:
    """Append ``decisions`` as one write, flushed to disk."""
    text = "".join(json.dumps(d.to_dict(), sort_keys=True) + "\n" for d in decisions)
    where = f"{faults.short(path, 2)} round {decisions[0].round}" if decisions else path.name
    with naming_the_file_on_full_disk(path), open(path, "a", encoding="utf-8") as handle:
        faults.point(f"write:{where}", write=True)
        if faults.armed():  # fault injection: a kill between the halves leaves a torn line
            handle.write(text[: len(text) // 2])
            handle.flush()
            faults.point(f"torn write:{where}")
            text = text[len(text) // 2 :]
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def read_decisions(path: Path) -> list[Decision]:
    """All decisions of a finished transcript (every line must parse)."""
    decisions = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                decisions.append(Decision.from_dict(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{path}:{number}: not a decision record ({err})") from None
    return decisions


def read_complete_rounds(path: Path, decisions_per_round: int) -> tuple[list[Decision], int]:
    """Decisions of the complete rounds at the head of ``path`` and their byte length.

    A round is complete when it has ``decisions_per_round`` records; anything after
    the last complete round (a torn line, a partial round) is not returned.
    """
    if not path.exists():
        return [], 0
    kept: list[Decision] = []
    pending: list[Decision] = []
    kept_bytes = offset = 0
    with open(path, "rb") as handle:
        for raw in handle:
            offset += len(raw)
            if not raw.endswith(b"\n"):
                break  # torn final line
            try:
                decision = Decision.from_dict(json.loads(raw))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                break
            if pending and decision.round != pending[0].round:
                break  # a new round started before the last one filled up
            pending.append(decision)
            if len(pending) == decisions_per_round:
                kept.extend(pending)
                pending = []
                kept_bytes = offset
    return kept, kept_bytes


def truncate_to(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size != size:
        with open(path, "r+b") as handle:
            handle.truncate(size)
            handle.flush()
            os.fsync(handle.fileno())


def rounds(decisions: Iterable[Decision]) -> dict[int, list[Decision]]:
    """Decisions grouped by round, in order."""
    grouped: dict[int, list[Decision]] = {}
    for d in decisions:
        grouped.setdefault(d.round, []).append(d)
    return grouped
