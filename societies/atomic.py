"""Atomic writes: a file or folder appears whole or not at all.

Everything that marks progress in a run directory (or fills a cache) is written to a
temporary sibling and renamed into place, so a kill leaves the old state or the new
one, never half a file — the basis of resuming without lost or duplicated work.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_directory(final: Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it becomes ``final``.

    Args:
        final: where the finished directory should appear.
        replace: if ``final`` already exists, replace it (True) or keep it and drop
            the new one (False: another process finished the same work first).
    On an exception nothing appears and the temporary directory is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            if not replace:
                return
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
