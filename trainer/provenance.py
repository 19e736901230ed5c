"""Which machine and software did a run's work: one line per piece of work in
``RUN_DIR/environment.jsonl``.

A run may be resumed elsewhere, and its Slurm steps run on other nodes; float32 results
differ between CPU kinds and library versions (tests/float32.py), so each generation a
``folkways run`` completes, and each step a ``folkways step`` completes, appends what it
ran on: CPU, Python, the pinned libraries' versions and the folkways commit (with
whether the checkout had uncommitted changes). Versions come from the installed
packages' metadata, so recording imports nothing. A line is written when the work is
done: a command refused for bad input writes none, and neither does a killed process
(what it kept is redone or used by the process that finishes the work, which records).

Each line is written with one ``write`` to a file opened for appending, so processes
that work at once (a generation's distillation tasks) never interleave their lines, and
a killed process leaves no part of one.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from trainer.malloc import active_malloc

PACKAGES = ("folkways", "torch", "transformers", "peft", "trl", "accelerate", "datasets")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def source_commit(source: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, has uncommitted changes) of the checkout folkways runs from; (None, None)
    when it is not a git checkout (an installed wheel) or git is missing."""
    where = (source or Path(__file__).resolve().parents[1]).resolve()
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
        )
        lines = head.stdout.splitlines()  # a path may hold spaces
        # Only folkways' own checkout: an install inside another repository is not one.
        if head.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != where:
            return None, None
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        )
    except OSError:
        return None, None
    return lines[1], bool(status.stdout.strip()) if status.returncode == 0 else None


def environment_record(work: str) -> dict:
    """What this process runs on, for ``work`` (``"run generation 0"``, ``"step distill 1"``)."""
    commit, modified = source_commit()
    return {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "work": work,
        "argv": sys.argv,
        "host": platform.node(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
        "folkways_commit": commit,
        "folkways_modified": modified,
        # Not part of the environment's identity (distinct_environments): it changes
        # speed and memory, not results.
        "malloc": active_malloc(),
    }


def record_environment(path: Path, work: str) -> dict:
    """Append this process's :func:`environment_record` to ``path``; return it."""
    record = environment_record(work)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a line a full disk cut short stays apart from this one
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return record


def read_environments(path: Path) -> list[dict]:
    """The records of ``path`` in order; none if the run never recorded one. A line a
    full disk cut short is skipped: the record is informative, not the run's state."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def work_generation(record: dict) -> int | None:
    """The generation a record's work belongs to (``"step distill 3"`` -> 3), if it names one."""
    last = str(record.get("work", "")).rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else None


def distinct_environments(records: list[dict]) -> list[dict]:
    """Each distinct environment of ``records``, in order of first appearance: CPU, CPU
    count, Python, the libraries' versions and the folkways commit (not the time, host or
    command line), with ``work`` listing what was done in it."""
    groups: dict[str, dict] = {}
    for r in records:
        packages = r.get("packages", {})
        environment = {
            "cpu": r.get("cpu"),
            "cpus": r.get("cpus"),
            "python": r.get("python"),
            **{p: packages.get(p) for p in PACKAGES[1:]},  # folkways: the commit says more
            "commit": r.get("folkways_commit"),
            "modified": r.get("folkways_modified"),
        }
        key = json.dumps(environment, sort_keys=True)
        groups.setdefault(key, {**environment, "work": []})["work"].append(r.get("work"))
    return list(groups.values())


def environments_markdown(environments: list[dict], whose: str = "The run's work") -> str:
    """A ``## Ran on`` table of :func:`distinct_environments`' groups: each environment
    and how many pieces of work (generations of a run, steps) were done in it; ``whose``
    names the work in the warning when there was more than one."""
    if not environments:
        return ""
    columns = ("cpu", "cpus", "python", *PACKAGES[1:], "commit")
    lines = [
        "## Ran on",
        "",
        "| work done | " + " | ".join(columns) + " |",
        "|" + " --- |" * (len(columns) + 1),
    ]
    for e in environments:
        commit = e["commit"] and e["commit"][:12] + (" (modified)" if e["modified"] else "")
        cells = ("-" if v is None else str(v) for v in (*(e[c] for c in columns[:-1]), commit))
        lines.append(f"| {len(e['work'])} | " + " | ".join(cells) + " |")
    if len(environments) > 1:
        lines += [
            "",
            f"{whose} was done in {len(environments)} environments: float32 results "
            "computed in different ones agree only to rounding.",
        ]
    return "\n".join(lines) + "\n"
