"""Checking an ``--out`` folder before any work, so a mistyped path writes nothing.

Used by ``report``, ``replay``, ``compare``, ``release``, ``baseline`` and ``slurm
render``. ``baseline`` and ``compare`` accept a non-empty folder only when it holds the
same command's output (:func:`check_rerun_out`); release has its own rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer.messages import listing


def check_out_dir(out_dir: Path, accepted: str) -> None:
    """Refuse an ``--out`` that is an existing file or lies inside one.

    Args:
        out_dir: the folder a command will create (with its parents) and write into.
        accepted: what the command accepts, ending the error (e.g. "expected a folder").

    Raises:
        ValueError: ``out_dir`` or its nearest existing parent is a file.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ValueError(f"--out {out_dir} is a file; {accepted}")
        return
    parent = out_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {out_dir} is inside {parent}, which is a file; {accepted}")


def check_rerun_out(
    out_dir: Path, record_file: str, record: dict[str, Any], what: str, accepted: str
) -> None:
    """Refuse an ``--out`` that is a file, lies inside one, or is a non-empty folder other
    than the output of the same command (a re-run in place, e.g. after a crash).

    The command writes ``record`` (how its output was made: JSON values) into
    ``out_dir/record_file`` before any work; a non-empty folder is accepted only when it
    holds that file with the same values.

    Args:
        out_dir: the ``--out`` folder.
        record_file: the record's file name inside ``out_dir`` (e.g. ``args.json``).
        record: the record this command would write, as read back from JSON. Its keys are
            compared in order (the telling one first); a ``config`` key holds a path and is
            compared resolved; a dict value names its first differing key.
        what: the command's output, for the error ("a folkways baseline output").
        accepted: what the command accepts, ending every error.

    Raises:
        ValueError: naming the folder's content or the first value that differs.
    """
    check_out_dir(out_dir, accepted)
    if not out_dir.is_dir():
        return
    held = sorted(p.name for p in out_dir.iterdir())
    if not held:
        return
    try:
        previous = json.loads((out_dir / record_file).read_text())
    except (OSError, ValueError):
        previous = None
    if not isinstance(previous, dict) or set(record) - set(previous):
        raise ValueError(
            f"--out {out_dir} is not empty and not {what} (it holds {listing(held)}); {accepted}"
        )
    for key, now in record.items():
        was = previous[key]
        if key == "config" and Path(was).resolve() == Path(now).resolve():
            continue
        if isinstance(was, dict) and isinstance(now, dict) and was != now:
            names = sorted(k for k in {*was, *now} if was.get(k) != now.get(k))
            key, was, now = f"{key}.{names[0]}", was.get(names[0]), now.get(names[0])
        if was != now:
            raise ValueError(
                f"--out {out_dir} holds another command's output ({key}={was!r} in its "
                f"{record_file}, {now!r} in this command); {accepted}"
            )
