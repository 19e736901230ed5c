"""Atomic writes: a file or folder appears whole or not at all.

Everything that marks progress in a run directory (or fills a cache) is written to a
temporary sibling and renamed into place, so a kill leaves the old state or the new
one, never half a file — the basis of resuming without lost or duplicated work.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from societies import faults

# Temporary siblings are named "<final name>.tmp-<random>"; a kill can leave one behind.
TEMP_MARK = ".tmp-"


def process_umask() -> int:
    """The process's file mode creation mask, read without changing it.

    Linux reports it in ``/proc/self/status`` (``Umask:`` line, since 4.7). Elsewhere the
    only way is ``os.umask(0)`` and back, which is process-global: a thread creating a
    file in between would get mode 0666, so that is done once and remembered.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _umask_read_once()


@functools.cache
def _umask_read_once() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _give_default_mode(path: str | Path, *, directory: bool) -> None:
    """Give what ``tempfile`` created owner-only (0600 / 0700) the mode a plain ``open``
    or ``mkdir`` would have: run directories live on shared file systems, where
    collaborators must be able to read the results."""
    os.chmod(path, (0o777 if directory else 0o666) & ~process_umask())


@contextlib.contextmanager
def naming_the_file_on_full_disk(path: Path) -> Iterator[None]:
    """Re-raise "no space left on device" with the file that could not be written.

    The operating system's ENOSPC names no file; the command line's message does, and
    says that re-running resumes once there is space again.
    """
    try:
        yield
    except OSError as err:
        if err.errno == errno.ENOSPC and err.filename is None:
            raise OSError(
                errno.ENOSPC, err.strerror or os.strerror(errno.ENOSPC), str(path)
            ) from err
        raise
    except Exception as err:
        # Writers in other languages report it in their own exception types, e.g.
        # safetensors: "SafetensorError: ... No space left on device (os error 28)".
        if "(os error 28)" in str(err) or os.strerror(errno.ENOSPC) in str(err):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from err
        raise


def atomic_write_text(path: Path, text: str, *, moment: str = "") -> None:
    """Write ``text`` to ``path`` whole or not at all.

    ``moment`` tells apart, in fault-point names (societies.faults), writes of a file
    that is rewritten during a run (e.g. "after generation 2" for lineage.json).
    """
    path = Path(path)
    where = faults.short(path, 2) + (f" ({moment})" if moment else "")
    tmp = None
    try:
        with naming_the_file_on_full_disk(path):
            faults.point(f"write:{where}", write=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=path.name + TEMP_MARK, dir=path.parent)
            _give_default_mode(tmp, directory=False)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        faults.point(f"rename:{where}")  # a kill here leaves the temporary file
        os.replace(tmp, path)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_json(path: Path, data: Any, *, moment: str = "") -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", moment=moment)


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
    tmp = None
    try:
        with naming_the_file_on_full_disk(final):
            faults.point(f"write:{faults.short(final, 3)}/", write=True)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=final.name + TEMP_MARK, dir=final.parent))
            _give_default_mode(tmp, directory=True)
            yield tmp
        faults.point(f"rename:{faults.short(final, 3)}/")  # a kill here leaves the folder
        if final.exists():
            if not replace:
                return
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def scratch_directory(beside: Path) -> tempfile.TemporaryDirectory:
    """A scratch folder for work that ends in ``beside``, created next to it.

    It is named as ``beside``'s temporary sibling, never placed in ``$TMPDIR``: a
    process killed while using it leaves it inside the run directory, whose resume
    removes it (:func:`remove_stale_temporaries`), instead of in ``/tmp`` for good.
    Use it as a context manager; it yields the folder's path as a string.
    """
    beside = Path(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=beside.name + TEMP_MARK, dir=beside.parent)


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Delete the temporary siblings a killed writer left anywhere under ``root``.

    Only call this when no other process writes under ``root`` (one run, one writer):
    a live writer's temporary file looks the same as a dead one's.

    Returns:
        the paths removed.
    """
    stale = [p for p in Path(root).rglob(f"*{TEMP_MARK}*") if TEMP_MARK in p.name]
    removed = []
    for path in sorted(stale, key=lambda p: len(p.parts)):
        if not path.exists() and not path.is_symlink():
            continue  # inside a temporary folder removed just before
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    return removed
