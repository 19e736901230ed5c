"""Fault points (societies.faults): armed only by the environment, fire where they say."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys

import pytest

from societies import faults
from societies.atomic import atomic_write_text, remove_stale_temporaries
from trainer.fault_injection import PHASES, check_kill_anywhere, phase_of, spread_kill_points


@pytest.fixture
def arm(monkeypatch):
    def _arm(spec: str | None, trace=None):
        if spec is None:
            monkeypatch.delenv(faults.FAULTS_ENV, raising=False)
        else:
            monkeypatch.setenv(faults.FAULTS_ENV, spec)
        if trace is not None:
            monkeypatch.setenv(faults.TRACE_ENV, str(trace))
        faults.reset()

    yield _arm
    monkeypatch.delenv(faults.FAULTS_ENV, raising=False)
    monkeypatch.delenv(faults.TRACE_ENV, raising=False)
    faults.reset()


def test_unarmed_points_do_nothing(arm, tmp_path):
    arm(None)
    assert not faults.armed()
    atomic_write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").read_text() == "x"


def test_enospc_from_a_named_point_on_fails_writes_only_and_names_the_file(arm, tmp_path):
    trace = tmp_path / "trace.txt"
    arm(f"enospc@write:{tmp_path.name}/b.txt", trace)
    atomic_write_text(tmp_path / "a.txt", "a")  # before the point: written
    faults.point("not a write")
    with pytest.raises(OSError) as caught:
        atomic_write_text(tmp_path / "b.txt", "b")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "b.txt")
    with pytest.raises(OSError):  # and every later write
        atomic_write_text(tmp_path / "c.txt", "c")
    faults.point("still not a write")  # non-write points pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "trace.txt"]  # no temp file
    assert trace.read_text().splitlines() == [
        f"write:{tmp_path.name}/a.txt",
        f"rename:{tmp_path.name}/a.txt",
        "not a write",
        f"write:{tmp_path.name}/b.txt",
        f"write:{tmp_path.name}/c.txt",
        "still not a write",
    ]


@pytest.mark.parametrize("spec", ["kill", "kill@", "kill@0", "explode@3"])
def test_a_malformed_spec_is_an_error_naming_what_is_accepted(arm, spec):
    arm(spec)
    with pytest.raises(faults.FaultSpecError, match="ACTION one of kill, enospc, pause"):
        faults.point("x")


PAUSED_CHILD = """
import signal, sys
from societies import faults
returned = []
signal.signal(signal.SIGUSR1, lambda *_: returned.append(1))  # returns: keeps waiting
signal.signal(signal.SIGUSR2, lambda *_: sys.exit(3 + len(returned)))  # ends the wait
for name in ("before", "here", "after"):
    faults.point(name)
    print("passed", name, flush=True)
"""


def test_pause_waits_at_its_point_until_a_handler_ends_the_process(tmp_path):
    env = {**os.environ, faults.FAULTS_ENV: "pause@here"}
    child = subprocess.Popen(
        [sys.executable, "-c", PAUSED_CHILD],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stderr.readline() == "fault point here: paused\n"
        child.send_signal(signal.SIGUSR1)
        child.send_signal(signal.SIGUSR2)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    # Paused after "before", before "after"; the first signal's handler returned, so it
    # waited on for the second, whose exit status counts the first.
    assert (child.returncode, out, err) == (4, "passed before\n", "")


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "g").mkdir()
    keep = [tmp_path / "summary.json", tmp_path / "g" / "tmp-notes.txt"]
    stale = [tmp_path / "summary.json.tmp-abc123", tmp_path / "g" / "agent_01.tmp-x9"]
    for path in keep + stale[:1]:
        path.write_text("x")
    stale[1].mkdir()
    (stale[1] / "adapter_model.safetensors").write_text("partial")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


def test_kill_points_are_spread_over_phases_and_unique_names():
    trace = [
        "write:t/config.yaml",
        "probe: generation 0 before",
        "rollout: generation 0 round 0",
        "rollout: generation 0 round 1",
        "distill: generation_000/adapters/a step 1",
        "write:generation_000/summary.json",
        "write:t/lineage.json",
        "write:t/lineage.json",  # repeated name: not a target
    ]
    assert phase_of("write:t/lineage.json (up to generation 2)") == "lineage"
    assert phase_of("torn write:generation_001/transcripts.jsonl round 3") == "rollout"
    assert phase_of("rename:generation_001/adapters/agent_02/") == "distillation"
    assert phase_of("write:distill_plans/4b5d1e33a54b.json") == "distillation"
    assert phase_of("rename:generation_000/distilled/agent_01/") == "distillation"
    assert phase_of("evolution: generation 0") == "evolution"
    assert phase_of("write:q/initial_adapters/agent_02/") == "initial adapters"
    positions = spread_kill_points(trace, 5, random.Random(0))
    assert positions == sorted(positions) and len(set(positions)) == 5
    phases = {phase_of(trace[p]) for p in positions}
    assert phases == {"config", "probe", "rollout", "distillation", "summary"}
    assert 6 not in positions and 7 not in positions


def test_few_kills_go_to_the_focus_phases_then_to_random_others():
    """Fewer kills than phases: the focus phases first, the rest drawn by the seed (not
    the alphabetically first phases, which left the rollout of a 4-kill test unkilled)."""
    trace = [
        "write:t/config.yaml",
        "write:q/initial_adapters/a/",
        "probe: generation 0 before",
        "rollout: generation 0 round 0",
        "rollout: generation 0 round 1",
        "distill: generation_000/adapters/a step 1",
        "evolution: generation 0",
        "write:generation_000/summary.json",
        "write:generation_000/metrics.jsonl",
        "write:t/COMPLETE",
    ]
    for seed in range(20):
        positions = spread_kill_points(trace, 2, random.Random(seed), focus=("rollout",))
        assert "rollout" in {phase_of(trace[p]) for p in positions}
    drawn = {
        frozenset(phase_of(trace[p]) for p in spread_kill_points(trace, 2, random.Random(seed)))
        for seed in range(20)
    }
    assert len(drawn) > 3  # the seed picks the phases
    together = spread_kill_points(
        trace, 3, random.Random(0), focus=("evolution", "rollout", "distillation")
    )
    assert {phase_of(trace[p]) for p in together} == {"evolution", "rollout", "distillation"}
    with pytest.raises(ValueError, match=r"focus phases \['tracking'\] have no fault point"):
        spread_kill_points(trace, 2, random.Random(0), focus=("tracking",))


def test_a_full_disk_reported_by_another_library_becomes_enospc_naming_the_folder(tmp_path):
    """safetensors reports ENOSPC as SafetensorError('... (os error 28)'), not OSError."""
    from societies.atomic import atomic_directory

    class SafetensorError(Exception):
        pass

    final = tmp_path / "adapters" / "agent_01"
    with pytest.raises(OSError) as caught, atomic_directory(final):
        raise SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(final)
    assert list((tmp_path / "adapters").iterdir()) == []  # nothing half-written is left
    with pytest.raises(ValueError, match="unrelated"), atomic_directory(final):
        raise ValueError("unrelated")


def test_a_misspelt_focus_phase_is_named_before_any_run(tmp_path):
    with pytest.raises(ValueError, match=r"focus phases \['rolout'\] are not phases; accepted: "):
        check_kill_anywhere("no-config.yaml", [], tmp_path / "w", kills=2, focus=("rolout",))
    assert not (tmp_path / "w").exists()  # nothing was started


def test_every_phase_a_known_point_gets_is_a_listed_phase():
    points = [
        "probe: generation 0 agent_00",
        "rollout: generation 0 round 3",
        "torn write:generation_000/transcripts.jsonl round 2",
        "write:initial_adapters/agent_00/",
        "distill: generation_001/adapters/agent_02 step 3",
        "rename:generation_000/distilled/agent_00",
        "write:generation_000/distill_plans/b2f3ec6a6783.json",
        "evolution: generation 0",
        "tracking: generation 0",
        "write:generation_000/summary.json",
        "rename:generation_001/metrics.jsonl",
        "write:t/lineage.json (up to generation 2)",
        "write:t/config.yaml",
        "rename:t/graph.json",
        "write:generation_000/COMPLETE",
        "write:generation_000/interventions.jsonl",
        "write:generation_000/probe_before_extra.json",
    ]
    assert {phase_of(p) for p in points} == set(PHASES)
