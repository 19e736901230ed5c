"""`folkways slurm render` without a scheduler: what it writes, where, and what it says.

Fast (no Slurm needed); `tests/test_slurm.py` checks the rendered scripts with a real
``sbatch --test-only``.
"""

from __future__ import annotations

from tests.conftest import QUICKSTART, tiny_overrides
from trainer.cli import main


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
