"""Bad input, everywhere: each entry of ``CASES`` is one row of the README's "Bad input" table.

The cases are built in tests/bad_input_cases_config.py (config files, model caches,
adapters), tests/bad_input_cases_run_dir.py (run directories and the arguments
naming what is in them) and tests/bad_input_cases_commands.py (step, baseline,
compare, sweep, slurm render), on the context of tests/bad_input_harness.py.

Every case builds one bad input under ``tmp_path`` (copies of the shared tiny
``reference`` run, never the run itself), runs the CLI in-process and checks that:

- the exit code is 2 and nothing is printed on stdout;
- stderr is one line, ``folkways: error: ...``, naming what is wrong (key, path,
  agent, line number) and what would be accepted, with no traceback (a resumed
  ``folkways run`` may first log which generations it keeps: those lines only);
- nothing on disk was created, changed or deleted: every file under ``tmp_path``
  (the run directory, its parent, output folders, model caches given to the
  command; the working directory too) has the same bytes, and no file or folder
  appeared or vanished.

Model-cache cases use a cache folder under ``tmp_path``: the real
``~/.cache/folkways`` is only read, and its listing is checked unchanged too.
The transcript reader's own cases (what a kill leaves is cut, any other damage is an
error) are in tests/test_transcripts.py.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tests.bad_input_cases_commands import COMMAND_CASES
from tests.bad_input_cases_config import CONFIG_CASES
from tests.bad_input_cases_run_dir import RUN_DIR_CASES
from tests.bad_input_harness import Ctx
from trainer import cli

CASES = {**CONFIG_CASES, **RUN_DIR_CASES, **COMMAND_CASES}


RESUME_LOG = re.compile(
    r"^(resuming .*: generations \[[\d, ]*\] are complete and kept"
    r"|generation \d+/\d+: interaction phase"
    r"|generation \d+: distillation \(.*\))$"  # a recorded rollout goes straight on
)


def snapshot(root: Path) -> tuple[dict[str, str], set[str]]:
    """Every file's sha256 and every folder under ``root``, by relative path."""
    files, dirs = {}, set()
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_dir():
            dirs.add(rel)
        else:
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files, dirs


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    case, reference, tiny_model_path, tmp_path, monkeypatch, capsys
):
    from societies.model_store import default_cache_dir

    monkeypatch.chdir(tmp_path)  # a relative path the command writes to would land here
    ctx = Ctx(tmp_path, Path(reference.run_dir), Path(tiny_model_path), monkeypatch)
    bad = case(ctx)
    before = snapshot(tmp_path)
    user_cache = sorted(p.name for p in default_cache_dir().iterdir())
    capsys.readouterr()

    code = cli.main(bad.argv)

    out, err = capsys.readouterr()
    assert code == 2, f"exit code {code}; stderr: {err}"
    assert out == ""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    if bad.resumes:  # the resume's own log lines come first
        assert all(RESUME_LOG.match(line) for line in lines[:-1]), err
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith("folkways: error: "), err
    for fragment in bad.expect:
        assert fragment in lines[0], f"{fragment!r} not in: {lines[0]}"
    assert snapshot(tmp_path) == before, "the command changed files on disk"
    assert sorted(p.name for p in default_cache_dir().iterdir()) == user_cache


def test_the_readme_table_has_one_row_per_case():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## Bad input") : readme.index("## Config")]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", section, flags=re.MULTILINE)
    assert rows == list(CASES)


def test_release_replaces_a_previous_release_but_nothing_else(reference, tmp_path, capsys):
    """The other side of ``release-out-not-empty``: re-releasing into a release is allowed."""
    out = tmp_path / "release"
    argv = ["release", str(reference.run_dir), "--agent", "agent_01", "--out", str(out)]
    assert cli.main(argv) == 0
    first = snapshot(out)
    assert cli.main([*argv[:-3], "agent_02", "--out", str(out)]) == 0
    assert snapshot(out) != first and "agent `agent_02`" in (out / "README.md").read_text()
