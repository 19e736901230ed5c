"""Checking an ``--out`` folder before any work, so a mistyped path writes nothing.

Used by ``report``, ``replay``, ``compare``, ``release``, ``baseline`` and ``slurm
render`` (release and baseline add their own rules for a non-empty folder).
"""

from __future__ import annotations

from pathlib import Path


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
