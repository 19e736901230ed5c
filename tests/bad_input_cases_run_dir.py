"""Bad-input cases in run directories and in the arguments naming what is in them:
transcripts, schemas, agents, generations, options, output folders. Rows of the
README's "Bad input" table, in its order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from tests.bad_input_harness import Bad, Ctx, resume, truncate
from tests.conftest import QUICKSTART

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
            "reads schema_version 3",
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
    return Bad(
        ["probe", str(run), "--generation", "7"],
        ["generation 7", "agent_00, agent_01, agent_02, ... (4 in all)", "-1, 0, 1"],
    )


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
    out = ctx.a_file("report.txt")
    return Bad(["report", str(run), "--out", str(out)], [str(out), "is a file", "a folder"])


def release_out_is_a_file(ctx: Ctx) -> Bad:
    """``release --out`` names a file."""
    run = ctx.run_copy()
    out = ctx.a_file("release.txt")
    return Bad(
        ["release", str(run), "--agent", "agent_01", "--out", str(out)],
        [str(out), "is a file", "a new folder"],
    )


def release_out_not_empty(ctx: Ctx) -> Bad:
    """``release --out`` names a folder with other work in it (it used to be deleted)."""
    run = ctx.run_copy()
    out = ctx.my_work()
    return Bad(
        ["release", str(run), "--agent", "agent_01", "--out", str(out)],
        [str(out), "not empty", "a new folder"],
    )


RUN_DIR_CASES: dict[str, Callable[[Ctx], Bad]] = {
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
