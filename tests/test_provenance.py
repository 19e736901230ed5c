"""Each generation a run completes, and each step, records the CPU, libraries and commit
it ran on (``RUN_DIR/environment.jsonl``); the report lists them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from trainer.provenance import (
    distinct_environments,
    environments_markdown,
    read_environments,
    record_environment,
    source_commit,
)
from trainer.run_dir import RunLayout

ROOT = Path(__file__).parents[1]


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def test_a_run_records_the_machine_libraries_and_commit_it_ran_on(reference):
    records = read_environments(RunLayout(reference.run_dir).environment)
    assert [r["work"] for r in records] == ["run generation 0", "run generation 1"]
    record = records[0]
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    assert record["cpu"] == names[0] and record["cpus"] == os.cpu_count()
    assert record["packages"]["torch"] == torch.__version__  # the module's own, not metadata
    head = _git("rev-parse", "HEAD")
    if head.returncode == 0:  # a git checkout (a clone in CI): its commit and state
        assert record["folkways_commit"] == head.stdout.strip()
        dirty = _git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        assert record["folkways_modified"] is bool(dirty)
    else:
        assert record["folkways_commit"] is None


def test_the_report_says_where_the_work_was_done(reference, tmp_path):
    from trainer.report import make_report

    make_report(reference.run_dir, tmp_path)
    text = (tmp_path / "summary.md").read_text()
    (row,) = [line for line in text.splitlines() if line.startswith("| 2 |")]
    assert row.startswith(
        f"| 2 | {read_environments(RunLayout(reference.run_dir).environment)[0]['cpu']} |"
    )
    assert "environments" not in text.split("## Ran on")[1]  # one machine, no warning


def test_an_install_inside_another_repository_reports_no_commit(tmp_path):
    """folkways installed into a venv inside someone's project: not folkways' commit."""
    project = tmp_path / "my project"  # a space in the path, too
    package = project / ".venv" / "site-packages"
    package.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(project),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "theirs",
        ],
        check=True,
    )
    assert source_commit(package) == (None, None)
    assert source_commit(project)[0] is not None  # the checkout's own root is recognised
    assert source_commit(tmp_path / "nowhere") == (None, None)


def test_processes_appending_at_once_write_whole_lines_in_one_file(tmp_path):
    """Distillation tasks of one generation record at the same time into one file."""
    path = tmp_path / "environment.jsonl"
    code = (
        "import sys; from pathlib import Path; from trainer.provenance import record_environment; "
        "record_environment(Path(sys.argv[1]), 'step distill ' + sys.argv[2])"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", code, str(path), str(i)], cwd=ROOT)
        for i in range(8)
    ]
    assert [w.wait() for w in workers] == [0] * 8
    lines = path.read_text().splitlines()
    assert sorted(json.loads(line)["work"] for line in lines) == [
        f"step distill {i}" for i in range(8)
    ]


def test_a_line_cut_short_is_skipped_and_the_rest_is_read(tmp_path):
    path = tmp_path / "environment.jsonl"
    record_environment(path, "run generation 0")
    with path.open("a") as f:
        f.write('{"work": "run generation 1", "cpu": "AM')  # a full disk ended this write
    record_environment(path, "step probe 1")
    assert [r["work"] for r in read_environments(path)] == ["run generation 0", "step probe 1"]
    assert read_environments(tmp_path / "absent.jsonl") == []


def test_the_report_table_counts_processes_per_environment():
    base = {
        "cpu": "AMD EPYC",
        "cpus": 2,
        "python": "3.11.7",
        "packages": {"torch": "2.13.0+cpu", "transformers": "5.23.0"},
        "folkways_commit": "0123456789abcdef",
        "folkways_modified": False,
    }
    intel = {**base, "cpu": "Intel Xeon", "folkways_modified": True}
    table = environments_markdown(distinct_environments([base, intel, base]))
    rows = [line for line in table.splitlines() if line[:3] in ("| 1", "| 2")]
    assert rows[0].startswith("| 2 | AMD EPYC | 2 | 3.11.7 | 2.13.0+cpu | 5.23.0 | - |")
    assert rows[0].endswith("| 0123456789ab |")
    assert rows[1].startswith("| 1 | Intel Xeon |") and rows[1].endswith("(modified) |")
    assert "done in 2 environments" in table
    assert "environments" not in environments_markdown(distinct_environments([base, base]))
    assert environments_markdown([]) == ""
