"""``folkways wandb sync RUN_DIR [RUN_DIR ...] [--jobs J] [--dry-run]``: upload offline
W&B runs, each once.

Finds every offline W&B run under each path: ``<run_dir>/wandb/offline-run-*``, the
run directories of a sweep's experiment directory (any depth), a ``wandb`` folder, or
one ``offline-run-*`` folder. Each is uploaded with the ``wandb sync`` CLI (one process
per offline run, J at once) and, only after it succeeded, marked with
``<offline-run>/.folkways-synced``; a marked run is never uploaded again, because
syncing an offline run twice duplicates its artifact versions (wandb 0.31). A failed
upload leaves no marker, so the next sync retries it.

"Succeeded" means ``wandb sync`` exited 0 *and* wrote its own ``run-*.wandb.synced``
marker beside every ``.wandb`` file: wandb 0.31 exits 0 also when it did not upload
(e.g. "Not authenticated."), so the exit code alone would mark unsent runs as sent. A
run whose ``.wandb`` log has no exit record is still being written (a step in
progress: uploading it now would mark half a run as synced) or was killed; it is
skipped unless ``--include-unfinished``.

Tested here with an injected sync command (``command=``, ``--command``) that records
its arguments and succeeds or fails: this machine has no W&B server, so the upload
itself is not tested.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from societies.atomic import atomic_write_json

__all__ = [
    "MARKER",
    "SyncResult",
    "add_wandb_parser",
    "find_offline_runs",
    "has_exit_record",
    "is_finished",
    "read_records",
    "sync_offline_runs",
]

MARKER = ".folkways-synced"
_OFFLINE_PREFIX = "offline-run-"
# The .wandb transaction log (wandb-core's leveldb-style "W&B" log): a 7-byte file
# header, then 32 KiB blocks of records, each a 7-byte header (CRC32C, length, type)
# and a chunk of a serialized wandb_internal_pb2.Record; a record that does not fit a
# block continues in the next (types FIRST, MIDDLE, LAST); a block tail shorter than a
# header is zero padding. wandb 0.31 removed its Python reader.
_FILE_HEADER = b":W&B\xe1\xbe\x00"  # ident, magic 0xBEE1 (little-endian), version 0
_BLOCK = 32 * 1024
_RECORD_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: Path) -> Iterator[Any]:
    """The ``wandb_internal_pb2.Record`` messages of an offline run's ``.wandb`` file, in
    order; a torn last record (a process killed mid-write) ends the iteration.

    Raises:
        ValueError: ``path`` is not a W&B transaction log (names it).
    """
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if len(data) < len(_FILE_HEADER) and _FILE_HEADER.startswith(data):
        return  # killed before its header was written out: no records, unfinished
    if not data.startswith(_FILE_HEADER[:4]):
        raise ValueError(
            f"{path} is not a W&B run log (it starts {data[:7]!r}, expected {_FILE_HEADER!r})"
        )
    pos, pending = len(_FILE_HEADER), b""
    while pos + _RECORD_HEADER <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _RECORD_HEADER:
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _RECORD_HEADER])
        if kind == 0 and length == 0:  # padding to the end of the block
            pos += left_in_block
            continue
        start = pos + _RECORD_HEADER
        chunk, pos = data[start : start + length], start + length
        if len(chunk) < length:
            return
        if kind in (_FULL, _FIRST):
            pending = chunk
        else:
            pending += chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            try:
                record.ParseFromString(pending)
            except DecodeError:
                raise ValueError(
                    f"{path}: the record ending at byte {pos} does not parse; the log is "
                    "corrupt (expected wandb_internal_pb2.Record messages)"
                ) from None
            yield record
            pending = b""


def has_exit_record(log: Path) -> bool:
    """Whether a ``.wandb`` log holds its run's exit record (``run.finish`` ran and
    wandb-core wrote the log out)."""
    return any(r.WhichOneof("record_type") == "exit" for r in read_records(log))


def is_finished(offline_run: Path) -> bool:
    """Whether every ``.wandb`` log of the offline run holds its exit record."""
    logs = sorted(offline_run.glob("*.wandb"))
    return bool(logs) and all(has_exit_record(p) for p in logs)


def _offline_runs_in(wandb_dir: Path) -> list[Path]:
    return sorted(p for p in wandb_dir.glob(f"{_OFFLINE_PREFIX}*") if p.is_dir())


def find_offline_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Every offline W&B run folder under ``paths``, each once, in path order.

    A path may be a run directory (its ``wandb/offline-run-*``), any folder holding run
    directories (a sweep's experiment directory; searched at any depth), a ``wandb``
    folder, or an ``offline-run-*`` folder.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a path holds no offline run, or an offline run has no ``.wandb`` log.
    """
    found: dict[Path, None] = {}
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist; expected a run directory, a sweep's experiment "
                "directory, a wandb folder or an offline-run-* folder"
            )
        if not path.is_dir():
            raise ValueError(
                f"{path} is a file; expected a run directory, a sweep's experiment "
                "directory, a wandb folder or an offline-run-* folder"
            )
        if path.name.startswith(_OFFLINE_PREFIX):
            runs = [path]
        elif path.name == "wandb":
            runs = _offline_runs_in(path)
        else:
            runs = []
            for root, dirs, _files in os.walk(path):
                dirs.sort()
                if "wandb" in dirs:
                    runs += _offline_runs_in(Path(root) / "wandb")
                    dirs.remove("wandb")  # W&B's own files: no run directories inside
        if not runs:
            raise ValueError(
                f"{path} holds no offline W&B run (no wandb/{_OFFLINE_PREFIX}* folder below "
                "it); runs made with tracking.wandb=offline (or auto without credentials) "
                "write them"
            )
        for run in runs:
            if not any(run.glob("*.wandb")):
                raise ValueError(
                    f"{run} has no .wandb log; expected an offline run folder written by "
                    "wandb (run-<id>.wandb inside)"
                )
            found.setdefault(run.resolve(), None)
    return list(found)


def default_sync_command() -> list[str]:
    """``wandb sync`` of the wandb installed beside this Python."""
    return [sys.executable, "-m", "wandb", "sync"]


@dataclass
class SyncResult:
    """What one ``sync_offline_runs`` call did, per offline run folder."""

    synced: list[Path] = field(default_factory=list)
    already_synced: list[Path] = field(default_factory=list)
    unfinished: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)  # folder -> why
    would_sync: list[Path] = field(default_factory=list)  # --dry-run

    def to_dict(self) -> dict[str, Any]:
        return {
            "synced": [str(p) for p in self.synced],
            "already_synced": [str(p) for p in self.already_synced],
            "unfinished": [str(p) for p in self.unfinished],
            "failed": {str(p): why for p, why in self.failed.items()},
            "would_sync": [str(p) for p in self.would_sync],
        }


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def _sync_one(run: Path, command: Sequence[str], timeout: float | None = None) -> str | None:
    """Upload one offline run; None on success, else why it failed."""
    argv = [*command, str(run)]
    try:
        # stdin closed: a login prompt fails the upload instead of hanging the pool
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except OSError as err:
        return f"could not start {shlex.join(argv)}: {err}"
    except subprocess.TimeoutExpired as err:
        said = err.stderr or b""  # what it wrote so far (bytes, even with text=True)
        output = _tail(said.decode(errors="replace") if isinstance(said, bytes) else said)
        return (
            f"{shlex.join(argv)} did not finish within --timeout {timeout:g} s (stopped; the "
            "next sync retries it; is the W&B server reachable?)"
            + (f": {output}" if output else "")
        )
    output = _tail(done.stderr + "\n" + done.stdout)
    if done.returncode != 0:
        return f"{shlex.join(argv)} exited {done.returncode}" + (f": {output}" if output else "")
    unmarked = [p.name for p in sorted(run.glob("*.wandb")) if not _wandb_marked(p)]
    if unmarked:
        return (
            f"{shlex.join(argv)} exited 0 but did not mark {', '.join(unmarked)} synced "
            "(no .wandb.synced beside it; not logged in? try `wandb login`)"
            + (f": {output}" if output else "")
        )
    return None


def _wandb_marked(log: Path) -> bool:
    return log.with_name(log.name + ".synced").exists()


def _mark(run: Path, command: Sequence[str]) -> None:
    logs = sorted(run.glob("*.wandb"))
    atomic_write_json(
        run / MARKER,
        {
            "synced_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": list(command),
            "files": {p.name: p.stat().st_size for p in logs},
        },
    )


def sync_offline_runs(
    paths: Sequence[str | Path],
    *,
    jobs: int = 1,
    command: Sequence[str] | None = None,
    dry_run: bool = False,
    include_unfinished: bool = False,
    timeout: float | None = None,
    log: Callable[[str], None] = print,
) -> SyncResult:
    """Upload every not-yet-synced offline run under ``paths``, ``jobs`` at once.

    Args:
        jobs: uploads at once (each a ``wandb sync`` process).
        command: the upload command; the offline run folder is appended as its last
            argument. Default ``python -m wandb sync``.
        dry_run: list what would be uploaded; upload nothing, mark nothing.
        include_unfinished: also upload runs whose log has no exit record (killed).
        timeout: seconds one upload may take before it is stopped and counted failed
            (``None``: no limit; ``wandb sync`` retries an unreachable server for long).
        log: a line as each upload starts and one per offline run's outcome.

    Raises:
        FileNotFoundError, ValueError: a bad path (named), before anything is uploaded.
    """
    if jobs < 1:
        raise ValueError(f"--jobs={jobs}; expected an integer >= 1")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"--timeout={timeout}; expected seconds > 0")
    command = list(command) if command else default_sync_command()
    result = SyncResult()
    todo: list[Path] = []
    for run in find_offline_runs(paths):
        if (run / MARKER).exists():
            result.already_synced.append(run)
            log(f"skip {run}: synced before ({MARKER})")
        elif not include_unfinished and not is_finished(run):
            result.unfinished.append(run)
            log(
                f"skip {run}: unfinished (a step still running, or killed: "
                "--include-unfinished uploads it)"
            )
        elif dry_run:
            result.would_sync.append(run)
            log(f"would sync {run}")
        else:
            todo.append(run)
    if not todo:
        return result

    def upload(run: Path) -> str | None:
        log(f"syncing {run} ...")
        return _sync_one(run, command, timeout)

    with ThreadPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
        for run, why in zip(todo, pool.map(upload, todo), strict=True):
            if why is None:
                _mark(run, command)  # only now: a failed or killed upload is retried
                result.synced.append(run)
                log(f"synced {run}")
            else:
                result.failed[run] = why
                log(f"FAILED {run}: {why}")
    return result


def add_wandb_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``folkways wandb sync``; its handler is :func:`run_wandb_sync_command`."""
    parser = subparsers.add_parser("wandb", help="Weights & Biases: upload offline runs")
    wandb_sub = parser.add_subparsers(dest="wandb_command", required=True)
    sync = wandb_sub.add_parser(
        "sync",
        help="upload the offline W&B runs of run directories (each once; in parallel)",
        description="Uploads every offline W&B run under the paths with `wandb sync`, J at "
        "once, and marks each uploaded one (<offline-run>/.folkways-synced) so a later sync "
        "skips it: syncing a run twice duplicates its artifacts. A failed upload is retried "
        "by the next sync; runs still being written are skipped.",
    )
    sync.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="a run directory, a sweep's experiment directory, a wandb or offline-run-* folder",
    )
    sync.add_argument("--jobs", type=int, default=1, help="uploads at once (default 1)")
    sync.add_argument("--dry-run", action="store_true", help="list what would be uploaded")
    sync.add_argument(
        "--include-unfinished",
        action="store_true",
        help="also upload runs whose log has no exit record (killed steps)",
    )
    sync.add_argument(
        "--command",
        default=None,
        help="the upload command, the offline run folder appended (default: "
        "'python -m wandb sync'; e.g. 'wandb sync --entity my-team')",
    )
    sync.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop an upload that takes longer and count it failed (retried by the next "
        "sync); default: no limit",
    )
    sync.add_argument("--json", action="store_true", help="print the result as JSON")
    sync.set_defaults(func=run_wandb_sync_command)
    return parser


def run_wandb_sync_command(args: argparse.Namespace) -> int:
    """0 when every offline run is synced (now or before) or skipped; 1 if one failed."""
    command = shlex.split(args.command) if args.command else None
    if args.command is not None and not command:
        raise ValueError("--command ''; expected a command, e.g. 'wandb sync'")
    result = sync_offline_runs(
        args.run_dirs,
        jobs=args.jobs,
        command=command,
        dry_run=args.dry_run,
        include_unfinished=args.include_unfinished,
        timeout=args.timeout,
        log=(lambda _: None) if args.json else print,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(
            f"synced {len(result.synced)}, already synced {len(result.already_synced)}, "
            f"unfinished (skipped) {len(result.unfinished)}, failed {len(result.failed)}"
            + (f", would sync {len(result.would_sync)}" if args.dry_run else "")
        )
    return 1 if result.failed else 0
