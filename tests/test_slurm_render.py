"""`folkways slurm render` without a scheduler: what it writes, where, and what it says.

Fast (no Slurm needed); `tests/test_slurm.py` checks the rendered scripts with a real
``sbatch --test-only``.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import QUICKSTART, tiny_overrides
from trainer.cli import main
from trainer.run_dir import RunLayout


def _render(tmp_path, *extra: str) -> int:
    return main(["slurm", "render", str(QUICKSTART), *tiny_overrides(tmp_path), *extra])


def test_out_an_existing_file_is_one_line_error_before_anything_is_written(
    tiny_model_path, tmp_path, capsys
):
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    for out, named in ((afile, f"--out {afile} is an existing file"), (afile / "sub", str(afile))):
        assert _render(tmp_path, "--out", str(out)) == 2
        err = capsys.readouterr().err
        assert err.startswith("folkways: error: --out ") and named in err
        assert "expected a folder" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "t").exists()  # no run directory (config.yaml, graph.json)
    assert afile.read_text() == "mine\n"


def test_out_a_new_folder_holds_the_scripts_and_submit_sh(tiny_model_path, tmp_path, capsys):
    out = tmp_path / "new" / "scripts"
    assert _render(tmp_path, "--out", str(out)) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == f"# wrote 6 scripts to {out}; run them in order with {out}/submit.sh"
    assert len(sorted(out.glob("*.sbatch"))) == 6
    assert (out / "submit.sh").read_text().count("sbatch --parsable") == 6
    assert not (tmp_path / "t" / "slurm" / "scripts").exists()


def _complete(run_dir: Path, *generations: int) -> None:
    """Mark generations complete (render reads only the markers)."""
    layout = RunLayout(run_dir)
    for g in generations:
        layout.complete(g).parent.mkdir(parents=True, exist_ok=True)
        layout.complete(g).write_text("")


def test_a_complete_run_renders_nothing_and_says_so(tiny_model_path, tmp_path, capsys):
    assert _render(tmp_path) == 0  # writes the run directory
    run_dir = tmp_path / "t"
    _complete(run_dir, 0, 1)
    capsys.readouterr()
    out = tmp_path / "out"
    for extra in ([], ["--out", str(out)]):
        assert main(["slurm", "render", str(run_dir), *extra]) == 0
        printed = capsys.readouterr().out
        assert printed == f"# {run_dir} is complete; nothing to render (no scripts written)\n"
    assert not out.exists()  # no empty submit.sh to run
    # `submit` says the same, and submits nothing (no scheduler is asked).
    assert main(["slurm", "submit", str(run_dir), "--json"]) == 0
    assert f"{run_dir} is complete; nothing to submit" in capsys.readouterr().err


def test_a_partly_complete_run_renders_what_remains(tiny_model_path, tmp_path, capsys):
    assert _render(tmp_path) == 0
    run_dir = tmp_path / "t"
    _complete(run_dir, 0)
    capsys.readouterr()
    out = tmp_path / "rest"
    assert main(["slurm", "render", str(run_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == f"# wrote 3 scripts to {out}; run them in order with {out}/submit.sh"
    assert [line.split("=")[0] for line in printed[:-1]] == ["rollout_1", "distill_1", "probe_1"]
    assert "--dependency" not in printed[0] and "afterok:$distill_1" in printed[2]
    assert sorted(p.name for p in out.iterdir()) == [
        "g001-distill.sbatch",
        "g001-probe.sbatch",
        "g001-rollout.sbatch",
        "submit.sh",
    ]
