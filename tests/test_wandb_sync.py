"""``folkways wandb sync``: which offline runs are uploaded, each once, J at once.

The offline runs are real (wandb 0.31, offline); the upload command is a stand-in
script that records its arguments and succeeds (writing wandb's own ``.wandb.synced``
marker, as ``wandb sync`` does) or fails. This machine has no W&B server: the upload
itself is not tested here.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap

import pytest

from tests.conftest import wandb_offline_environment
from trainer.cli import main
from trainer.wandb_sync import MARKER, find_offline_runs, is_finished, sync_offline_runs
from trainer.wandb_tracking import WandbTracker

# Records "start end folder" per call; fails (exit 3) for a folder named in fail.txt,
# hangs for one named in hang.txt (an unreachable server) and exits 0 without marking
# anything (as `wandb sync` does when not logged in) for one named in silent.txt; else
# marks every .wandb file synced, as wandb-core does.
FAKE_SYNC = textwrap.dedent(
    """
    import json, pathlib, sys, time
    here = pathlib.Path(__file__).parent
    run = pathlib.Path(sys.argv[-1])
    start = time.time()
    time.sleep(0.8)
    with (here / "calls.jsonl").open("a") as f:
        f.write(json.dumps([start, time.time(), sys.argv[1:]]) + "\\n")
    def listed(name):
        path = here / name
        return path.exists() and run.name in path.read_text().split()
    if listed("fail.txt"):
        print("upload error: 503 from the server", file=sys.stderr)
        sys.exit(3)
    if listed("hang.txt"):
        print("retrying: connection refused", file=sys.stderr, flush=True)
        time.sleep(60)
    if not listed("silent.txt"):
        for log in run.glob("*.wandb"):
            log.with_name(log.name + ".synced").touch()
    """
)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A sweep's experiment directory: two run directories with a finished offline run
    each, and a third run whose offline log was cut before its end (a killed step)."""
    root = tmp_path_factory.mktemp("experiment")
    home = root.parent / f"{root.name}-wandb-home"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in wandb_offline_environment(home).items():
            mp.setenv(name, value)
        mp.delenv("WANDB_API_KEY", raising=False)
        for seed in (0, 1):
            name = f"seed-{seed}"
            tracker = WandbTracker("offline", "p", name, root / "exp" / name, {"run": {"seed": 0}})
            tracker.run.log({"generation": 0, "x": 1.0})
            tracker.finish()
    (finished,) = (root / "exp" / "seed-1" / "wandb").glob("offline-run-*")
    killed = root / "exp" / "seed-2" / "wandb" / "offline-run-20990101_000000-killed00"
    shutil.copytree(finished, killed)
    (log,) = killed.glob("run-*.wandb")
    log.write_bytes(log.read_bytes()[:300])  # torn mid-record, no exit record
    return root / "exp"


@pytest.fixture
def experiment(template, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(template, exp)
    (tmp_path / "sync.py").write_text(FAKE_SYNC)
    return exp


def offline_run(exp, run: str):
    (folder,) = (exp / run / "wandb").glob("offline-run-*")
    return folder.resolve()


def calls(tmp_path) -> list[list]:
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_second_sync_skips_synced_runs_and_retries_failed_ones(experiment, tmp_path):
    command = [sys.executable, str(tmp_path / "sync.py")]
    good, bad = offline_run(experiment, "seed-0"), offline_run(experiment, "seed-1")
    killed = offline_run(experiment, "seed-2")
    assert find_offline_runs([experiment]) == [good, bad, killed]
    assert is_finished(good) and not is_finished(killed)
    (tmp_path / "fail.txt").write_text(bad.name)
    lines: list[str] = []

    first = sync_offline_runs([experiment], jobs=2, command=command, log=lines.append)
    assert first.synced == [good] and list(first.failed) == [bad]
    assert first.unfinished == [killed]  # still being written, or killed: not uploaded
    assert "exited 3" in first.failed[bad] and "upload error: 503" in first.failed[bad]
    assert f"FAILED {bad}: " in "\n".join(lines)
    assert (good / MARKER).exists() and not (bad / MARKER).exists()
    marker = json.loads((good / MARKER).read_text())
    assert marker["command"] == command and list(marker["files"]) == [
        p.name for p in good.glob("*.wandb")
    ]
    made = calls(tmp_path)
    assert sorted(c[2][-1] for c in made) == sorted([str(good), str(bad)])
    (a_start, a_end, _), (b_start, b_end, _) = made
    assert a_start < b_end and b_start < a_end  # --jobs 2: the two uploads overlapped

    (tmp_path / "fail.txt").unlink()
    second = sync_offline_runs([experiment], jobs=2, command=command, log=lines.append)
    assert second.synced == [bad] and second.already_synced == [good] and not second.failed
    assert [c[2][-1] for c in calls(tmp_path)[2:]] == [str(bad)]  # only the failed one

    third = sync_offline_runs([experiment, good], command=command, log=lines.append)
    assert third.synced == [] and third.already_synced == [good, bad]  # each run once
    assert len(calls(tmp_path)) == 3

    forced = sync_offline_runs([killed], command=command, include_unfinished=True)
    assert forced.synced == [killed] and (killed / MARKER).exists()


def test_exit_0_without_wandbs_marker_is_not_a_sync(experiment, tmp_path):
    """`wandb sync` exits 0 when it uploaded nothing (e.g. "Not authenticated.")."""
    good = offline_run(experiment, "seed-0")
    (tmp_path / "silent.txt").write_text(good.name)
    result = sync_offline_runs(
        [good], command=[sys.executable, str(tmp_path / "sync.py")], log=lambda _: None
    )
    assert list(result.failed) == [good] and "did not mark run-" in result.failed[good]
    assert not (good / MARKER).exists()


def test_command_line_dry_run_json_and_bad_paths(experiment, tmp_path, capsys):
    command = f"{sys.executable} {tmp_path / 'sync.py'}"
    good, bad = offline_run(experiment, "seed-0"), offline_run(experiment, "seed-1")
    assert main(["wandb", "sync", str(experiment), "--dry-run", "--command", command]) == 0
    out = capsys.readouterr().out
    assert f"would sync {good}" in out and f"would sync {bad}" in out
    assert "skip " in out and "unfinished" in out and "would sync 2" in out
    assert calls(tmp_path) == [] and not list(experiment.rglob(MARKER))

    # a run directory, and its wandb folder: the same offline run, uploaded once
    argv = ["wandb", "sync", str(experiment / "seed-0"), str(experiment / "seed-0" / "wandb")]
    assert main([*argv, "--jobs", "2", "--json", "--command", command]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["synced"] == [str(good)] and printed["failed"] == {}
    assert len(calls(tmp_path)) == 1

    (tmp_path / "fail.txt").write_text(bad.name)
    assert main(["wandb", "sync", str(bad), "--command", command]) == 1
    assert "failed 1" in capsys.readouterr().out

    empty = tmp_path / "empty-run"
    (empty / "generation_000").mkdir(parents=True)
    for argv, named in (
        ([str(tmp_path / "missing")], "missing does not exist"),
        ([str(empty)], "empty-run holds no offline W&B run"),
        ([str(tmp_path / "sync.py")], "sync.py is a file"),
        ([str(experiment), "--jobs", "0"], "--jobs=0; expected an integer >= 1"),
    ):
        assert main(["wandb", "sync", *argv, "--command", command]) == 2
        assert named in capsys.readouterr().err
    no_log = experiment / "seed-0" / "wandb" / "offline-run-20990101_000000-nolog"
    no_log.mkdir()
    assert main(["wandb", "sync", str(experiment), "--command", command]) == 2
    assert f"{no_log.name} has no .wandb log" in capsys.readouterr().err
    assert len(calls(tmp_path)) == 2  # nothing uploaded when a path is bad


def test_an_upload_over_the_timeout_is_stopped_and_the_others_go_on(experiment, tmp_path):
    hung, good = offline_run(experiment, "seed-0"), offline_run(experiment, "seed-1")
    (tmp_path / "hang.txt").write_text(hung.name)
    lines: list[str] = []
    result = sync_offline_runs(
        [hung, good],
        command=[sys.executable, str(tmp_path / "sync.py")],
        include_unfinished=True,
        timeout=3.0,
        log=lines.append,
    )
    assert list(result.failed) == [hung] and result.synced == [good]
    assert "did not finish within --timeout 3 s" in result.failed[hung]
    assert "retrying: connection refused" in result.failed[hung]  # what wandb said so far
    assert f"syncing {hung} ..." in lines and not (hung / MARKER).exists()
    with pytest.raises(ValueError, match="--timeout=0; expected seconds > 0"):
        sync_offline_runs([good], timeout=0)


def test_an_empty_log_of_a_killed_step_is_unfinished(experiment):
    run = offline_run(experiment, "seed-0")
    for log in run.glob("*.wandb"):
        log.write_bytes(b"")  # killed before W&B wrote the log's header
    assert not is_finished(run)
    result = sync_offline_runs([run], dry_run=True, log=lambda _: None)
    assert result.unfinished == [run]
