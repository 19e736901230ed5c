"""folkways compare --out: a re-run of the same command continues in place; any other
folder that is not empty is refused before anything runs."""

from __future__ import annotations

import json

from tests.conftest import QUICKSTART
from tests.test_compare import TINY


def test_a_folder_holding_other_files_is_refused_and_left_as_it_was(tmp_path, capsys):
    from trainer.cli import main

    out = tmp_path / "cmp"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["compare", str(QUICKSTART), "--methods", "iql", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} is not empty and not a folkways compare output (it holds notes.txt)" in err
    assert "re-run in place" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_another_comparisons_folder_is_refused_naming_what_differs(tmp_path, capsys):
    from trainer.cli import main

    out = tmp_path / "cmp"
    argv = ["compare", str(QUICKSTART), "--methods", "iql", "--out", str(out), "--json"]
    assert main([*argv, "--seeds", "1"]) == 0
    record = json.loads((out / "compare_args.json").read_text())
    assert (record["seeds"], record["methods"], record["llm_rl_rounds"]) == ([0], ["iql"], None)
    table = (out / "compare.md").read_text()
    capsys.readouterr()
    assert main([*argv, "--seeds", "2"]) == 2
    err = capsys.readouterr().err
    assert "holds another command's output (seeds=[0] in its compare_args.json, [0, 1]" in err
    assert (out / "compare.md").read_text() == table  # nothing was rewritten
    assert main([*argv, "--seeds", "1", "metrics.window=5"]) == 2
    assert "overrides=[] in its compare_args.json, ['metrics.window=5']" in capsys.readouterr().err
    # the same command re-runs in place, to the same table (the iql seeds determine it)
    assert main([*argv, "--seeds", "1"]) == 0
    assert (out / "compare.md").read_text() == table


def test_a_rerun_keeps_complete_llm_rl_seeds(tiny_model_path, tmp_path, capsys):
    from trainer.cli import main

    out = tmp_path / "cmp"
    argv = ["compare", str(QUICKSTART), *TINY, "--methods", "llm_rl", "--llm-rl-rounds", "2"]
    argv += ["--out", str(out), "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    result = out / "llm_rl" / "seed_0" / "result.json"
    written = result.stat().st_mtime_ns
    transcript = out / "llm_rl" / "seed_0" / "generation_000" / "transcripts.jsonl"
    played = transcript.read_bytes()
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == first
    assert result.stat().st_mtime_ns == written  # not played again
    assert transcript.read_bytes() == played
