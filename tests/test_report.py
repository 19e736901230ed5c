"""``folkways report`` turns a run directory into plots, a summary and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import model_libraries_imported_by
from trainer.report import make_report

ROOT = Path(__file__).parents[1]


def test_report_writes_a_figure_and_the_table(reference, tmp_path):
    report = make_report(reference.run_dir, tmp_path)
    png = tmp_path / "report.png"
    assert report.figures == [png, tmp_path / "measures.png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    text = (tmp_path / "summary.md").read_text()
    for s in reference.summaries:
        assert f"{s.prior_on_majority_before:.3f} -> {s.prior_on_majority_after:.3f}" in text


def test_report_json_matches_the_run(reference, tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer.cli",
            "report",
            str(reference.run_dir),
            "--out",
            str(tmp_path),
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["generations"] == [s.to_dict() for s in reference.summaries]


def test_report_imports_no_training_library(reference, tmp_path):
    """A report reads JSON and draws: it starts in seconds, with nothing of torch's."""
    argv = ["report", str(reference.run_dir), "--out", str(tmp_path)]
    assert model_libraries_imported_by(argv) == []


def test_report_on_a_non_run_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folkways run directory"):
        make_report(tmp_path)


def test_several_runs_are_compared_side_by_side(reference, tmp_path):
    import json
    import shutil

    from societies.measures.drift import js_divergence
    from trainer.cli import main
    from trainer.multi_report import compare_runs

    other = tmp_path / "other"
    shutil.copytree(reference.run_dir, other)
    comparison = compare_runs([reference.run_dir, other], tmp_path / "cmp")
    assert [(r.run, r.generation) for r in comparison.rows] == [
        (reference.run_dir.name, 0),
        (reference.run_dir.name, 1),
        ("other", 0),
        ("other", 1),
    ]
    probes = json.loads((other / "generation_001/probes.json").read_text())
    expected = [
        js_divergence(
            p["probs"],
            json.loads((other / "generation_000/probes.json").read_text())["before"][a]["probs"],
        )
        for a, p in probes["after"].items()
    ]
    assert comparison.rows[3].js_from_gen0_bits == pytest.approx(sum(expected) / len(expected))
    assert comparison.rows[0].prior_entropy_after == reference.summaries[0].prior_entropy_after
    assert (tmp_path / "cmp/comparison.png").stat().st_size > 10_000
    assert "| other | 1 |" in (tmp_path / "cmp/comparison.md").read_text()
    with pytest.raises(ValueError, match="share a name"):
        compare_runs([other, other], tmp_path / "cmp2")
    assert main(["report", str(reference.run_dir), str(other)]) == 2  # --out is required
