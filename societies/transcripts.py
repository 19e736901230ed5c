"""Append-only JSONL transcripts, written a whole round at a time.

A round's lines are written in one ``write`` and fsynced. A kill can leave at most
one torn final line or an incomplete last round; :func:`read_complete_rounds` drops
both, and :func:`truncate_to` cuts the file back so a resumed run appends cleanly —
no duplicated and no lost lines. Anything else that does not read (a bad line with
complete lines after it, a record from another schema, rounds out of order) is
damage a kill cannot cause: it is an error naming the file and line, never cut.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from societies import faults
from societies.atomic import naming_the_file_on_full_disk
from societies.records import SCHEMA_VERSION, Decision


class TranscriptError(ValueError):
    """A transcript line is damaged in a way a kill cannot explain; the message names file:line."""


_EXPECTED = f"one JSON Decision record (schema_version {SCHEMA_VERSION}) per line"


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


def _decision(path: Path, number: int, data: object) -> Decision:
    try:
        return Decision.from_dict(data)
    except (KeyError, TypeError, ValueError) as err:
        reason = f"missing field {err}" if isinstance(err, KeyError) else str(err)
        raise TranscriptError(
            f"{path}:{number}: not a decision record ({reason}); expected {_EXPECTED}"
        ) from None


def iter_decisions(path: Path) -> Iterator[Decision]:
    """The decisions of a finished transcript, one line at a time (each must parse)."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                data = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise TranscriptError(
                    f"{path}:{number}: not JSON ({err}); expected {_EXPECTED}"
                ) from None
            yield _decision(path, number, data)


def read_decisions(path: Path) -> list[Decision]:
    """All decisions of a finished transcript (every line must parse)."""
    return list(iter_decisions(path))


def read_complete_rounds(path: Path, decisions_per_round: int) -> tuple[list[Decision], int]:
    """Decisions of the complete rounds at the head of ``path`` and their byte length.

    A round is complete when it has ``decisions_per_round`` records; what a kill can
    leave after the last complete round (a torn last line, a partial last round) is
    not returned, and the byte length excludes it.

    Raises:
        TranscriptError: a line that is not JSON with complete lines after it, a line
            that is JSON but not a decision record, or a round that starts before the
            previous one is complete or out of order. Cutting there would silently drop
            every later round, so the message says which line and what to do instead.
    """
    if not path.exists():
        return [], 0
    with open(path, "rb") as handle:
        lines = handle.readlines()
    kept: list[Decision] = []
    pending: list[Decision] = []
    kept_bytes = offset = 0
    replay = (
        "delete line {n} and every line after it, then re-run to replay those rounds from the seeds"
    )
    for number, raw in enumerate(lines, start=1):
        last = number == len(lines)
        offset += len(raw)
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            if last:
                break  # a line torn by a kill mid-write
            raise TranscriptError(
                f"{path}:{number}: not JSON ({err}), and {len(lines) - number} complete "
                f"line(s) follow it, so it is not a line torn by a kill; expected {_EXPECTED}; "
                f"restore the file, or {replay.format(n=number)}"
            ) from None
        if last and not raw.endswith(b"\n"):
            break  # parses, but the write was cut before its newline: redo the round
        decision = _decision(path, number, data)
        expected_round = len(kept) // decisions_per_round
        if decision.round != expected_round:
            problem = (
                f"round {decision.round} starts while round {expected_round} has "
                f"{len(pending)} of its {decisions_per_round} decisions"
                if pending
                else f"round {decision.round} where round {expected_round} is next"
            )
            raise TranscriptError(
                f"{path}:{number}: {problem}; a transcript holds rounds 0, 1, ... in order, "
                f"each with {decisions_per_round} decisions; restore the file, or "
                f"{replay.format(n=number - len(pending))}"
            )
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
