"""Processes forked from the fork server (trainer.forked_runs) behave as fresh ones:
their own command line, environment and working directory, and real exit codes."""

from __future__ import annotations

import os

from societies.faults import FAULTS_ENV, TRACE_ENV
from tests.conftest import QUICKSTART, tiny_overrides
from trainer.forked_runs import run_forked


def test_a_forked_run_reads_its_own_arguments_environment_and_directory(tmp_path, monkeypatch):
    log = tmp_path / "log.txt"
    monkeypatch.chdir(tmp_path)
    # bad input: exit code 2 and the CLI's one-line error, naming the path relative to cwd
    assert run_forked(["run", "nowhere.yaml"], dict(os.environ), log) == 2
    (error,) = [line for line in log.read_text().splitlines() if line.startswith("folkways:")]
    assert "nowhere.yaml" in error
    run = ["run", str(QUICKSTART), *tiny_overrides(str(tmp_path / "runs"))]
    for kill_at in (3, 1):  # each child counts fault points from zero: nothing leaks
        trace = tmp_path / f"trace_{kill_at}.txt"
        env = {**os.environ, FAULTS_ENV: f"kill@{kill_at}", TRACE_ENV: str(trace)}
        assert run_forked(run, env, log) == -9  # a real SIGKILL, seen as a subprocess would
        assert len(trace.read_text().splitlines()) == kill_at
    assert FAULTS_ENV not in os.environ  # nor into this process


def test_a_child_that_cannot_start_exits_1_and_the_server_serves_on(tmp_path):
    """A log in a folder that does not exist: the child fails before the CLI runs; its
    exception ends it (never the server), and the next command runs as usual."""
    env = dict(os.environ)
    assert run_forked(["--help"], env, tmp_path / "missing" / "log.txt") == 1
    assert run_forked(["--help"], env, tmp_path / "log.txt") == 0
    assert "usage: folkways" in (tmp_path / "log.txt").read_text()
