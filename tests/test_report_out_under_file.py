"""An ``--out`` inside an existing file is one ``folkways: error:`` line (exit 2) from
report, report of several runs, replay and compare, checked before anything is written."""

from __future__ import annotations

import pytest

from tests.conftest import QUICKSTART
from trainer.cli import main


def listing(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("command", ["report", "report2", "replay", "compare"])
def test_an_out_inside_a_file_is_one_error_line(reference, tmp_path, capsys, command):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    out = notes / "sub"
    run = str(reference.run_dir)
    argv = {
        "report": ["report", run, "--out", str(out)],
        "report2": ["report", run, run, "--out", str(out)],
        "replay": ["replay", run, "--generation", "0", "--out", str(out), "--no-progress"],
        "compare": ["compare", str(QUICKSTART), "--methods", "iql", "--out", str(out)],
    }[command]
    if command == "report2":  # two runs of distinct names
        import shutil

        shutil.copytree(reference.run_dir, tmp_path / "other")
        argv[2] = str(tmp_path / "other")
    before = listing(tmp_path), listing(reference.run_dir.parent)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"folkways: error: --out {out} is inside {notes}, which is a file; "
        + (err.split("which is a file; ", 1)[1])
    )
    assert err.count("\n") == 1 and "Traceback" not in err
    assert notes.read_text() == "mine\n"
    assert (listing(tmp_path), listing(reference.run_dir.parent)) == before


def test_compare_out_naming_a_file_is_one_error_line(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    argv = ["compare", str(QUICKSTART), "--methods", "iql", "--out", str(notes)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"folkways: error: --out {notes} is a file; expected a new folder")
    assert err.count("\n") == 1
    assert listing(tmp_path) == ["notes.txt"] and notes.read_text() == "mine\n"
