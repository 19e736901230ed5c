"""`folkways slurm submit` without a running scheduler: what a job runs, and what a
failed submission says and leaves. Fast; `tests/test_slurm.py` runs real pipelines."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import QUICKSTART, tiny_overrides
from trainer.cli import main
from trainer.slurm_pipeline import Stage, StepJob, read_submissions

ARGV_PRINTER = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]


def test_a_submitted_launcher_reads_the_rendezvous_words_on_its_node(tmp_path, monkeypatch, capfd):
    # A one-node job without MASTER_ADDR: the launcher meets on 127.0.0.1; $SLURM_JOB_ID
    # and $SLURM_NODEID come from the job's environment, $MASTER_PORT from its job id;
    # an unknown $WORD stays as is.
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("SLURM_JOB_NODELIST", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    monkeypatch.setenv("SLURM_NODEID", "1")
    monkeypatch.delenv("FOLKWAYS_NOT_SET", raising=False)
    monkeypatch.setenv("MASTER_PORT", "29500")  # exported where `submit` ran: not used
    launcher = [
        *ARGV_PRINTER,
        "--rdzv_endpoint=$MASTER_ADDR:$MASTER_PORT",
        "--rdzv_id=$SLURM_JOB_ID",
        "--node_rank=$SLURM_NODEID",
        "--kept=$FOLKWAYS_NOT_SET",
    ]
    job = StepJob(str(tmp_path), Stage(3, "distill", (0, 1), 2), launcher)
    assert job(1) == {"step": "distill", "generation": 3, "task": 1}
    assert json.loads(capfd.readouterr().out) == [
        "--rdzv_endpoint=127.0.0.1:15012",
        "--rdzv_id=12",
        "--node_rank=1",
        "--kept=$FOLKWAYS_NOT_SET",
        *["-m", "trainer.cli", "step", "distill", str(tmp_path), "--generation", "3"],
        *["--no-progress", "--task", "1", "--agents-per-task", "2"],
    ]
    monkeypatch.setenv("MASTER_ADDR", "node7")  # outside a job (no node list): kept
    monkeypatch.setenv("SLURM_JOB_ID", "13")  # the next array task: the next port
    job(1)
    assert json.loads(capfd.readouterr().out)[:2] == ["--rdzv_endpoint=node7:15013", "--rdzv_id=13"]
    # In a job, MASTER_ADDR exported where `slurm submit` ran names another machine: the
    # job's first node is used (scontrol expands the node list).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text('#!/bin/bash\n[ "$1 $2" = "show hostnames" ] && printf "n3\\nn4\\n"\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "n[3-4]")
    monkeypatch.setenv("MASTER_ADDR", "login1")
    job(1)
    assert json.loads(capfd.readouterr().out)[0] == "--rdzv_endpoint=n3:15013"


# ----- a failed submission -------------------------------------------------------------
FAKE_SBATCH = """#!/bin/bash
# sbatch for the tests: job 101, 102, ...; from the FAKE_SBATCH_FAIL_AT-th call on it
# fails with FAKE_SBATCH_ERROR, as sbatch does.
n=$(( $(cat "$FAKE_SLURM/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$FAKE_SLURM/count"
if [ -n "${FAKE_SBATCH_FAIL_AT:-}" ] && [ "$n" -ge "$FAKE_SBATCH_FAIL_AT" ]; then
  echo "$FAKE_SBATCH_ERROR" >&2
  exit 1
fi
echo "Submitted batch job $((100 + n))"
"""
FAKE_TOOLS = {
    "sbatch": FAKE_SBATCH,
    "scontrol": '#!/bin/bash\necho "Slurmctld(primary) at fake is UP"\n',
    "scancel": '#!/bin/bash\necho "$@" >> "$FAKE_SLURM/scancel"\n',
    "squeue": "#!/bin/bash\n",  # nothing queued
}
REFUSED = "sbatch: error: Batch job submission failed: Invalid partition name specified"
UNREACHABLE = (
    "sbatch: error: Batch job submission failed: Unable to contact slurm controller "
    "(connect failure)"
)


def _install_fake_slurm(root: Path, monkeypatch) -> Path:
    """sbatch, scontrol, scancel and squeue stand-ins in root/bin, first on PATH."""
    (root / "bin").mkdir(parents=True)
    for name, text in FAKE_TOOLS.items():
        (root / "bin" / name).write_text(text)
        (root / "bin" / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(root))
    return root


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    return _install_fake_slurm(tmp_path / "fake-slurm", monkeypatch)


def _submit(tmp_path, *extra: str) -> int:
    return main(["slurm", "submit", str(QUICKSTART), *tiny_overrides(tmp_path / "runs"), *extra])


def _submitit_leftovers(run_dir: Path) -> list[str]:
    """Pickles and sbatch scripts submitit wrote but never moved into a job's folder (a
    submitted job's script leaves a symlink to its moved copy)."""
    logs = run_dir / "slurm" / "logs"
    left = [p.name for p in logs.glob("*") if p.is_file() and not p.is_symlink()]
    return sorted(left) if logs.is_dir() else []


@pytest.mark.skipif(not shutil.which("scontrol"), reason="needs Slurm's scontrol (apt)")
def test_no_controller_is_one_line_error_and_leaves_nothing(
    tiny_model_path, tmp_path, monkeypatch, capsys
):
    """A cluster configuration whose controller is down (a port nothing listens on):
    `scontrol ping` fails at once, before anything is written; the same commands work
    once a controller answers."""
    from tests.test_sweep import tiny_sweep_overrides

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connection refused
    host = socket.gethostname().split(".")[0]
    conf = tmp_path / "slurm.conf"
    conf.write_text(
        f"ClusterName=down\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={port}\n"
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN\n"
        "PartitionName=debug Nodes=ALL Default=YES State=UP\n"
    )
    monkeypatch.setenv("SLURM_CONF", str(conf))
    sweep = ["sweep", str(QUICKSTART), *tiny_sweep_overrides(tmp_path / "sweeps"), "--slurm"]
    sweep += ["--grid", "game.num_names=2", "--seeds", "1", "--json"]
    for argv in (None, sweep):
        assert (_submit(tmp_path) if argv is None else main(argv)) == 2
        err = capsys.readouterr().err
        assert err.startswith(
            "folkways: error: no Slurm controller answers, so sbatch cannot submit: "
            f"`scontrol ping` says: Slurmctld(primary) at {host} is DOWN; check the cluster "
            f"configuration (SLURM_CONF={conf}) and that `sinfo` lists"
        ), err
        assert len(err.strip().splitlines()) == 1 and "RESTORE" not in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "sweeps").exists()

    # A controller answers (the stand-ins): the same command submits the pipeline.
    monkeypatch.delenv("SLURM_CONF")
    _install_fake_slurm(tmp_path / "fake-slurm", monkeypatch)
    assert _submit(tmp_path, "--json") == 0
    jobs = json.loads(capsys.readouterr().out)["jobs"]
    assert [(j["generation"], j["step"], j["job_id"]) for j in jobs] == [
        (0, "rollout", "101"),
        (0, "distill", "102"),
        (0, "probe", "103"),
        (1, "rollout", "104"),
        (1, "distill", "105"),
        (1, "probe", "106"),
    ]
    run_dir = tmp_path / "runs" / "t"
    assert len(read_submissions(run_dir)) == 1 and _submitit_leftovers(run_dir) == []

    # Slurm's own squeue against the controller that is down (it retries for ~10 s): the
    # queue of the recorded jobs is unknown, in Slurm's words; never "not queued".
    (tmp_path / "fake-slurm" / "bin" / "squeue").unlink()
    monkeypatch.setenv("SLURM_CONF", str(conf))
    assert main(["slurm", "status", str(run_dir), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["state"], r["queue_error"]) for r in rows} == {
        (
            "not done, queue unknown",
            "slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
        )
    }
    # A SLURM_CONF naming no file: Slurm's clients would retry for 60 s; it fails at once.
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "missing.conf"))
    started = time.monotonic()
    assert main(["slurm", "status", str(run_dir)]) == 2
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert err.startswith(f"folkways: error: SLURM_CONF={tmp_path / 'missing.conf'}, which")


def test_sbatch_unreachable_at_the_first_job_quotes_sbatch_and_leaves_nothing(
    tiny_model_path, tmp_path, fake_slurm, monkeypatch, capsys
):
    # `scontrol ping` answered, then sbatch could not reach the controller.
    monkeypatch.setenv("FAKE_SBATCH_FAIL_AT", "1")
    monkeypatch.setenv("FAKE_SBATCH_ERROR", UNREACHABLE)
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=elsewhere\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    assert _submit(tmp_path) == 2
    err = capsys.readouterr().err
    run_dir = tmp_path / "runs" / "t"
    assert err == (
        f"folkways: error: sbatch could not reach a Slurm controller to submit the "
        f"g000-rollout job of {run_dir}: sbatch says: {UNREACHABLE}; check the cluster "
        f"configuration (SLURM_CONF={conf}) and that `sinfo` lists the cluster's partitions "
        "from this machine, then run the same command again\n"
    )
    assert not run_dir.exists()  # made by this command, nothing submitted: removed

    monkeypatch.delenv("FAKE_SBATCH_FAIL_AT")
    (fake_slurm / "count").unlink()
    assert _submit(tmp_path) == 0  # the corrected cluster: the same command works
    assert [j["job_id"] for j in read_submissions(run_dir)[0]["jobs"]][0] == "101"


def test_sbatch_refusing_a_later_job_cancels_the_ones_before_it(
    tiny_model_path, tmp_path, fake_slurm, monkeypatch, capsys
):
    monkeypatch.setenv("FAKE_SBATCH_FAIL_AT", "3")  # the probe job of generation 0
    monkeypatch.setenv("FAKE_SBATCH_ERROR", REFUSED)
    assert _submit(tmp_path) == 2
    *logged, err = capsys.readouterr().err.strip().splitlines()
    assert logged == [
        "submitted g000-rollout: job 101",
        "submitted g000-distill: job 102 (tasks [0, 1, 2, 3])",
    ]
    run_dir = tmp_path / "runs" / "t"
    assert err.startswith(
        f"folkways: error: sbatch refused the g000-probe job of {run_dir}: sbatch says: "
        f"{REFUSED}; check the slurm: keys"
    ), err
    assert err.endswith(
        f"the 2 job(s) of this run submitted before it (101 102) were cancelled and are "
        f"recorded in {run_dir / 'slurm' / 'jobs.json'}"
    ), err
    assert (fake_slurm / "scancel").read_text() == "101 102\n"
    recorded = read_submissions(run_dir)
    assert [(j["step"], j["job_id"]) for j in recorded[0]["jobs"]] == [
        ("rollout", "101"),
        ("distill", "102"),
    ]
    # The refused job's pickle and sbatch script are gone; the submitted jobs' moved in.
    assert _submitit_leftovers(run_dir) == []
    assert (run_dir / "slurm" / "logs" / "101" / "101_submitted.pkl").is_file()


# ----- the queue unknown, SLURM_CONF missing -------------------------------------------
CONTROLLER_DOWN = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"


def _squeue_says(fake_slurm: Path, message: str) -> None:
    """The stand-in squeue fails with ``message``, as squeue does (exit 1)."""
    (fake_slurm / "bin" / "squeue").write_text(f'#!/bin/bash\necho "{message}" >&2\nexit 1\n')


def test_status_with_squeue_failing_says_the_queue_is_unknown_not_not_queued(
    tiny_model_path, tmp_path, fake_slurm, capsys
):
    assert _submit(tmp_path) == 0
    run_dir = tmp_path / "runs" / "t"
    capsys.readouterr()
    _squeue_says(fake_slurm, CONTROLLER_DOWN)
    assert main(["slurm", "status", str(run_dir), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["state"], r["queue_error"]) for r in rows] == [
        ("not done, queue unknown", CONTROLLER_DOWN)
    ] * 6
    assert [r["jobs"] for r in rows] == [["101"], ["102"], ["103"], ["104"], ["105"], ["106"]]
    assert main(["slurm", "status", str(run_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "not done, queue unknown" in lines[1] and "not queued" not in "".join(lines)
    assert lines[-1] == f"queue unknown: `squeue` failed and says: {CONTROLLER_DOWN}"

    # cancel and submit cannot tell what is queued: they refuse, and do nothing.
    said = "folkways: error: the Slurm queue is unknown: `squeue` failed and says: "
    said += f"{CONTROLLER_DOWN}; check the cluster configuration"
    for argv in (["slurm", "cancel", str(run_dir)], ["slurm", "submit", str(run_dir)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(said) and len(err.strip().splitlines()) == 1, err
    assert not (fake_slurm / "scancel").exists()
    assert len(read_submissions(run_dir)) == 1 and (fake_slurm / "count").read_text() == "6\n"

    # squeue asked about one job the controller has forgotten: an answer (not queued).
    _squeue_says(fake_slurm, "slurm_load_jobs error: Invalid job id specified")
    assert main(["slurm", "status", str(run_dir), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["state"], r["queue_error"]) for r in rows} == {("not done, not queued", "")}


def test_a_missing_slurm_conf_fails_at_once_naming_the_file(
    tiny_model_path, tmp_path, fake_slurm, monkeypatch, capsys
):
    """Slurm's clients retry reading a missing SLURM_CONF for ~60 s: it is checked before
    any of them runs (the stand-ins here would answer as if nothing were wrong)."""
    assert _submit(tmp_path) == 0  # a run with recorded jobs, for status and cancel
    run_dir = tmp_path / "runs" / "t"
    (fake_slurm / "count").unlink()
    capsys.readouterr()
    missing = tmp_path / "etc" / "slurm.conf"
    monkeypatch.setenv("SLURM_CONF", str(missing))
    expected = (
        f"folkways: error: SLURM_CONF={missing}, which does not exist: Slurm's clients would "
        "retry reading it for a minute and fail; set SLURM_CONF to the cluster's slurm.conf "
        "(or unset it to use /etc/slurm/slurm.conf), then run the same command again\n"
    )
    elsewhere = ["run.name=u"]  # a new run: submit's check comes before it is written
    for argv in (
        ["slurm", "submit", str(QUICKSTART), *tiny_overrides(tmp_path / "runs"), *elsewhere],
        ["slurm", "status", str(run_dir)],
        ["slurm", "cancel", str(run_dir)],
        ["slurm", "submit", str(run_dir)],
    ):
        assert main(argv) == 2, argv
        assert capsys.readouterr().err == expected
    assert not (tmp_path / "runs" / "u").exists()
    assert not (fake_slurm / "count").exists() and not (fake_slurm / "scancel").exists()
    missing.parent.mkdir()  # a folder where the file should be: named as such
    missing.mkdir()
    assert main(["slurm", "status", str(run_dir)]) == 2
    assert f"SLURM_CONF={missing}, which is a folder:" in capsys.readouterr().err
