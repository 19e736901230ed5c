"""Kill-anywhere resume, proven by fault injection (trainer.fault_injection).

Every kill here is a real SIGKILL of a real ``folkways run`` process (forked from a
server with the libraries imported, trainer.forked_runs; the full-disk test starts
fresh interpreters), delivered at a named fault point (societies.faults); every check
compares the killed-and-resumed run directory with an uninterrupted one: transcripts,
probes, summaries, metrics and lineage byte for byte, adapters exactly (same machine,
same kernels).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import QUICKSTART, tiny_overrides
from trainer.fault_injection import (
    PHASES,
    check_kill_anywhere,
    compare_run_dirs,
    phase_of,
    run_folkways,
)
from trainer.run_dir import RunLayout

EVERY_PHASE = {
    "initial adapters",
    "probe",
    "rollout",
    "distillation",
    "summary",
    "metrics",
    "lineage",
    "tracking",
    "complete marker",
}


def _overrides(**extra) -> list[str]:
    return [o for o in tiny_overrides("unused", **extra) if not o.startswith("run.output_dir=")]


@pytest.mark.parametrize(
    "backend, extra",
    [
        ("trl", {"tracking.wandb": "offline", "tracking.project": "folkways-test"}),
        ("batched", {}),
    ],
)
def test_ten_kills_anywhere_end_as_the_uninterrupted_run(tmp_path, monkeypatch, backend, extra):
    monkeypatch.setenv("WANDB_SILENT", "true")
    report = check_kill_anywhere(
        QUICKSTART,
        _overrides(**{"distill.backend": backend}, **extra),
        tmp_path,
        kills=10,
        seed=0,
        progress=lambda _: None,
    )
    assert report.differences == [], "\n".join(report.differences)
    assert len(report.kills) == 10 and report.processes == 11
    assert EVERY_PHASE - {"initial adapters"} <= set(report.phases), report.phases
    # every point a real run passes has a listed phase, so any phase can be a focus
    points = (tmp_path / "trace_uninterrupted.txt").read_text().splitlines()
    assert {phase_of(p) for p in points} <= set(PHASES), {phase_of(p) for p in points}
    assert report.files_compared >= 40
    if extra:  # every generation reached W&B, whichever process logged it
        logs = b"".join(p.read_bytes() for p in (tmp_path / "killed").rglob("run-*.wandb"))
        for needle in (b"generation-0", b"generation-1", b"success_rate_last", b"t-agent_03"):
            assert needle in logs, needle


def test_torn_write_and_stale_temporaries_are_repaired(reference, tmp_path):
    """Kills that leave a torn transcript line and temporaries in the run directory (a
    file; TRL's scratch folder, never in $TMPDIR): all are mended."""
    overrides = _overrides() + [f"run.output_dir={tmp_path}"]
    layout = RunLayout(tmp_path / "t")
    log = tmp_path / "log.txt"
    process_tmp = tmp_path / "process_tmp"  # the killed processes' $TMPDIR
    process_tmp.mkdir()

    def killed_at(point: str) -> None:
        env = {"FOLKWAYS_FAULTS": f"kill@{point}", "TMPDIR": str(process_tmp)}
        result = run_folkways(QUICKSTART, overrides, env, log)
        assert result == -9, log.read_text()

    killed_at("rename:generation_000/probe_before.json")
    assert [p.name[:22] for p in layout.generation(0).iterdir()] == ["probe_before.json.tmp-"]
    killed_at("torn write:generation_000/transcripts.jsonl round 2")
    torn = layout.transcripts(0).read_bytes()
    # rounds 0 and 1 (2 pairs, 4 decisions each) whole, then half of round 2's lines
    assert not torn.endswith(b"\n") and 2 * 4 < torn.count(b"\n") < 3 * 4
    killed_at("distill: generation_001/adapters/agent_01 step 1")
    # killed inside SFTTrainer.train: its output_dir stays, as a temporary sibling of
    # (the temporary folder of) the adapter it trains
    adapters = layout.adapter(1, "agent_01").parent
    scratch = {p.name[:13] for p in adapters.iterdir() if ".tmp-" in p.name}
    assert scratch == {"agent_01.tmp-"}, sorted(adapters.iterdir())
    assert [p.name for p in process_tmp.iterdir() if p.name.startswith("folkways-")] == []
    assert run_folkways(QUICKSTART, overrides, {}, log) == 0, log.read_text()
    differences, compared = compare_run_dirs(reference.run_dir, layout.root)
    assert differences == [] and compared >= 40


def _failed_then_resumed(env: dict[str, str], tmp_path: Path, reference) -> str:
    """Both processes are fresh interpreters, as a user starts them (the others here are
    forked from a server with the libraries imported: trainer.forked_runs)."""
    overrides = _overrides() + [f"run.output_dir={tmp_path}"]
    log = tmp_path / "log.txt"
    failed = run_folkways(QUICKSTART, overrides, env, log, fresh_interpreter=True)
    text = log.read_text()
    assert failed == 75, text
    errors = [line for line in text.splitlines() if line.startswith("folkways: error:")]
    assert len(errors) == 1 and "Traceback" not in text, text
    assert not list((tmp_path / "t").rglob("*.tmp-*"))  # the failed write left nothing
    resumed = run_folkways(QUICKSTART, overrides, {}, log, fresh_interpreter=True)
    assert resumed == 0, log.read_text()
    differences, _ = compare_run_dirs(reference.run_dir, tmp_path / "t")
    assert differences == [], differences
    return errors[0]


def test_a_full_disk_fails_clearly_and_the_run_resumes(reference, tmp_path):
    """ENOSPC injected at the write helpers, from generation 0's summary on."""
    error = _failed_then_resumed(
        {"FOLKWAYS_FAULTS": "enospc@write:generation_000/summary.json"}, tmp_path, reference
    )
    assert "no space left on device" in error and "generation_000/summary.json" in error
    assert "re-run the same command to resume" in error


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 4 MB tmpfs (needs root and mount rights; skipped where the kernel refuses)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_real_full_file_system_fails_clearly_and_the_run_resumes(reference, small_tmpfs):
    # The tiny run needs ~1.1 MB; leave ~0.5 MB free so it fails in the middle.
    filler = small_tmpfs / "filler"
    free = os.statvfs(small_tmpfs).f_bavail * os.statvfs(small_tmpfs).f_frsize
    filler.write_bytes(b"\0" * (free - 512 * 1024))
    overrides = _overrides() + [f"run.output_dir={small_tmpfs}"]
    log = small_tmpfs.parent / "log.txt"
    failed = run_folkways(QUICKSTART, overrides, {}, log)
    text = log.read_text()
    assert failed == 75, text
    (error,) = [line for line in text.splitlines() if line.startswith("folkways: error:")]
    assert "no space left on device" in error and "Traceback" not in text
    filler.unlink()  # space is back
    assert run_folkways(QUICKSTART, overrides, {}, log) == 0, log.read_text()
    differences, _ = compare_run_dirs(reference.run_dir, small_tmpfs / "t")
    assert differences == [], differences
