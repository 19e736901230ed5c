"""The Slurm pipeline on a real scheduler: a one-node cluster started for these tests
(tests/slurm_cluster.py), jobs submitted through `folkways slurm submit` (submitit),
compared with a local `folkways run` of the same config (the ``reference`` fixture).

Skipped, with the reason, only where Slurm is missing and cannot be installed (no root
or no apt-get); CI machines have both, so CI runs these.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import QUICKSTART, model_libraries_imported_by, tiny_overrides
from tests.slurm_cluster import Cluster, install
from trainer.cli import main
from trainer.run_dir import RunLayout
from trainer.slurm_launchers import master_port
from trainer.slurm_pipeline import read_submissions

AGENTS = [f"agent_{i:02d}" for i in range(4)]
# One CPU per job: the 2-CPU node runs two jobs (e.g. two distillation tasks) at once.
SLURM = ["slurm.rollout.cpus=1", "slurm.distill.cpus=1", "slurm.probe.cpus=1"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = install()
    if reason:
        pytest.skip(f"no Slurm scheduler for the Slurm tests: {reason}")
    c = Cluster(tmp_path_factory.mktemp("slurm"))
    c.start()
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(c.conf)
    try:
        yield c
    finally:
        subprocess.run(["scancel", "--user=root"], capture_output=True)
        c.stop()
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous


def _queue(run_dir: Path) -> list[str]:
    ids = [j["job_id"] for s in read_submissions(run_dir) for j in s["jobs"]]
    done = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%i", "--jobs=" + ",".join(ids)],
        capture_output=True,
        text=True,
    )
    return done.stdout.split()


def _wait_for_queue_to_empty(run_dir: Path, timeout: float = 900) -> None:
    end = time.monotonic() + timeout
    while _queue(run_dir):
        if time.monotonic() > end:
            logs = "\n".join(
                f"--- {p.name}\n{p.read_text()[-1500:]}"
                for p in sorted((run_dir / "slurm" / "logs").rglob("*.err"))
            )
            pytest.fail(f"the pipeline did not finish in {timeout} s; job logs:\n{logs}")
        time.sleep(2)


def _assert_equals_local_run(run_dir: Path, reference_dir: Path) -> None:
    ours, theirs = RunLayout(run_dir), RunLayout(reference_dir)
    for g in (0, 1):
        assert ours.is_complete(g), f"generation {g} is not complete"
        for name in ("transcripts.jsonl", "probe_before.json", "probes.json", "summary.json"):
            assert (ours.generation(g) / name).read_text() == (
                theirs.generation(g) / name
            ).read_text(), f"generation {g} {name} differs from the local run"
        for agent in AGENTS:
            a = load_file(ours.adapter(g, agent) / "adapter_model.safetensors")
            b = load_file(theirs.adapter(g, agent) / "adapter_model.safetensors")
            assert a.keys() == b.keys()
            # The same code on the same machine: the jobs' adapters are the local run's, bit
            # for bit (a tolerance would hide a step trained twice or from other rows).
            different = [k for k in a if not torch.equal(a[k], b[k])]
            assert not different, f"generation {g} {agent}: {different[:3]} differ"
    # Nothing lost or duplicated: the same lineage entries and metric records.
    assert ours.lineage.read_text() == theirs.lineage.read_text()
    assert ours.metrics.read_text() == theirs.metrics.read_text()


def test_pipeline_on_slurm_equals_local_run(cluster, reference, tmp_path, capsys):
    overrides = [*tiny_overrides(tmp_path), *SLURM, "slurm.agents_per_task=2"]
    assert main(["slurm", "submit", str(QUICKSTART), *overrides, "--json"]) == 0
    submitted = json.loads(capsys.readouterr().out)
    run_dir = Path(submitted["run_dir"])
    steps = [(j["generation"], j["step"], j["tasks"]) for j in submitted["jobs"]]
    assert steps == [
        (0, "rollout", []),
        (0, "distill", [0, 1]),
        (0, "probe", []),
        (1, "rollout", []),
        (1, "distill", [0, 1]),
        (1, "probe", []),
    ]
    _wait_for_queue_to_empty(run_dir)
    _assert_equals_local_run(run_dir, reference.run_dir)

    assert main(["slurm", "status", str(run_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [s["state"] for s in status] == ["done"] * 6
    assert main(["slurm", "submit", str(run_dir)]) == 0  # complete: nothing to submit
    assert len(read_submissions(run_dir)) == 1


def test_a_killed_distillation_task_is_resumed_with_nothing_lost(
    cluster, reference, tmp_path, capsys, monkeypatch
):
    # Generation 1's agent_03 task kills itself (SIGKILL, as a node failure would) after
    # its first optimizer step, before its adapter is saved; the other tasks are unharmed.
    # (In generation 0 the tiny model never matches, so every adapter is carried over.)
    monkeypatch.setenv("FOLKWAYS_FAULTS", "kill@distill: generation_001/adapters/agent_03 step 1")
    overrides = [*tiny_overrides(tmp_path), *SLURM]
    assert main(["slurm", "submit", str(QUICKSTART), *overrides, "--json"]) == 0
    run_dir = Path(json.loads(capsys.readouterr().out)["run_dir"])
    _wait_for_queue_to_empty(run_dir)  # the jobs after the failed task leave the queue
    layout = RunLayout(run_dir)
    assert layout.is_complete(0) and not layout.is_complete(1)
    assert main(["slurm", "status", str(run_dir), "--json"]) == 0
    status = {(s["generation"], s["step"]): s["state"] for s in json.loads(capsys.readouterr().out)}
    assert status[(1, "rollout")] == "done"
    assert status[(1, "distill")] == "partial (3/4 agents), not queued"
    assert status[(1, "probe")] == "not done, not queued"
    trained = layout.adapter(1, "agent_00") / "adapter_model.safetensors"
    kept = trained.stat().st_mtime_ns

    monkeypatch.delenv("FOLKWAYS_FAULTS")
    assert main(["slurm", "submit", str(run_dir), "--json"]) == 0
    resubmitted = json.loads(capsys.readouterr().out)["jobs"]
    assert [(j["generation"], j["step"], j["tasks"]) for j in resubmitted] == [
        (1, "distill", [3]),  # only the lost task; the rollout and other agents are kept
        (1, "probe", []),
    ]
    _wait_for_queue_to_empty(run_dir)
    _assert_equals_local_run(run_dir, reference.run_dir)
    assert trained.stat().st_mtime_ns == kept


def test_rendered_scripts_are_valid_sbatch(cluster, tmp_path, capsys):
    overrides = [*tiny_overrides(tmp_path), *SLURM, "slurm.agents_per_task=3"]
    assert main(["slurm", "render", str(QUICKSTART), *overrides]) == 0
    printed = capsys.readouterr().out
    scripts = sorted((tmp_path / "t" / "slurm" / "scripts").glob("*.sbatch"))
    assert [s.name for s in scripts] == [
        "g000-distill.sbatch",
        "g000-probe.sbatch",
        "g000-rollout.sbatch",
        "g001-distill.sbatch",
        "g001-probe.sbatch",
        "g001-rollout.sbatch",
    ]
    assert "--dependency=afterok:$rollout_0" in printed
    assert "#SBATCH --array=0,1%64" in (scripts[0]).read_text()
    for script in scripts:
        checked = subprocess.run(
            ["sbatch", "--test-only", str(script)], capture_output=True, text=True
        )
        assert checked.returncode == 0, f"{script.name}: {checked.stderr}"
        assert "to start at" in checked.stderr  # sbatch --test-only's verdict
        assert f"{sys.executable} -m trainer.cli step" in script.read_text()


def test_render_and_status_start_without_the_model_libraries(tmp_path):
    """Login nodes are slow to import torch: `slurm render` and `slurm status` load no
    model (the default all-linear targets need none to be checked). No scheduler needed."""
    overrides = [*tiny_overrides(tmp_path), *SLURM]
    assert model_libraries_imported_by(["slurm", "render", str(QUICKSTART), *overrides]) == []
    scripts = sorted((tmp_path / "t" / "slurm" / "scripts").glob("*.sbatch"))
    assert len(scripts) == 6
    assert model_libraries_imported_by(["slurm", "status", str(tmp_path / "t")]) == []


def _job_log(run_dir: Path, job_id: str, suffix: str) -> str:
    """The job's submitit log (``out``: submitit's own lines; ``err``: the step's)."""
    path = run_dir / "slurm" / "logs" / job_id / f"{job_id}_0_log.{suffix}"
    return path.read_text() if path.exists() else ""


def _scontrol_job(job_id: str) -> dict[str, str]:
    shown = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True
    ).stdout
    return dict(w.split("=", 1) for w in shown.split() if "=" in w)


def test_a_preempted_job_is_requeued_and_resumes(cluster, reference, tmp_path, capsys, monkeypatch):
    # A one-generation pipeline; its rollout job gets submitit's preemption signal while
    # it runs. Without --batch/--full, `scancel --signal` signals the job's steps only
    # (scancel(1)): the srun step running python, where submitit's handler is, as with
    # the `#SBATCH --signal=USR2@90` it submits with; bash, the batch step, would die.
    # (One distillation task for the four agents: this test is about the rollout job.)
    # The job pauses after recording round 1 of 4 until the signal comes (a fault point):
    # signalled on a timer instead, the tiny model's rounds could all be recorded first
    # on a busy machine, leaving the requeued job nothing to play.
    paused_at = "rollout: generation 0 round 1"
    monkeypatch.setenv("FOLKWAYS_FAULTS", f"pause@{paused_at}")
    overrides = [*tiny_overrides(tmp_path, **{"run.generations": 1}), *SLURM]
    overrides.append("slurm.agents_per_task=4")
    assert main(["slurm", "submit", str(QUICKSTART), *overrides, "--json"]) == 0
    monkeypatch.delenv("FOLKWAYS_FAULTS")
    submitted = json.loads(capsys.readouterr().out)
    run_dir = Path(submitted["run_dir"])
    steps = [(j["generation"], j["step"], j["tasks"]) for j in submitted["jobs"]]
    assert steps == [(0, "rollout", []), (0, "distill", [0]), (0, "probe", [])]
    rollout = submitted["jobs"][0]
    job = rollout["job_id"]
    paused = f"fault point {paused_at}: paused"
    end = time.monotonic() + 300
    while paused not in _job_log(run_dir, job, "err"):
        assert _queue(run_dir), f"the pipeline left the queue:\n{_job_log(run_dir, job, 'err')}"
        assert time.monotonic() < end, (
            f"the rollout did not reach round 1:\n{_job_log(run_dir, job, 'err')}"
        )
        time.sleep(0.2)
    recorded = RunLayout(run_dir).transcripts(0).read_text().splitlines()
    assert sorted({json.loads(line)["round"] for line in recorded}) == [0, 1]
    signalled = subprocess.run(["scancel", "--signal=USR2", job], capture_output=True, text=True)
    assert signalled.returncode == 0, signalled.stderr
    _wait_for_queue_to_empty(run_dir)

    shown = _scontrol_job(job)
    assert (shown["JobState"], shown["Restarts"]) == ("COMPLETED", "1")
    lines = _job_log(run_dir, job, "out")
    caught = lines.index("Caught signal SIGUSR2")
    assert "this job is preempted" in lines[caught:]
    requeued = lines.index(f"Requeued job {job} (3 remaining timeouts)")  # a preemption
    assert caught < requeued < lines.index("Job completed successfully")
    assert lines.count("Job completed successfully") == 1  # the second attempt only
    assert lines.count(f"Starting with JobEnvironment(job_id={job},") == 2
    # The requeued job kept rounds 0-1 and played rounds 2-3 (it never passed round 1's
    # point again, so it did not pause).
    errors = _job_log(run_dir, job, "err")
    assert errors.count("generation 0/0: interaction phase") == 2
    assert errors.count(paused) == 1
    # The rest of the pipeline waited for the requeued job, then ran once.
    for later in submitted["jobs"][1:]:
        assert _scontrol_job(later["job_id"])["Restarts"] == "0"

    # Generation 0 of a one-generation run is generation 0 of the two-generation reference.
    ours, theirs = RunLayout(run_dir), RunLayout(reference.run_dir)
    assert ours.is_complete(0)
    for name in ("transcripts.jsonl", "probe_before.json", "probes.json", "summary.json"):
        assert (ours.generation(0) / name).read_text() == (
            theirs.generation(0) / name
        ).read_text(), f"generation 0 {name} differs from the local run"
    for agent in AGENTS:
        a = load_file(ours.adapter(0, agent) / "adapter_model.safetensors")
        b = load_file(theirs.adapter(0, agent) / "adapter_model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), agent


def _array_tasks(array_id: str) -> dict[str, str]:
    """``{task index: JobState}`` of a job array's tasks (scontrol keeps them MinJobAge)."""
    shown = subprocess.run(
        ["scontrol", "show", "job", array_id], capture_output=True, text=True, check=True
    ).stdout
    records = [dict(w.split("=", 1) for w in r.split() if "=" in w) for r in shown.split("\n\n")]
    return {r["ArrayTaskId"]: r["JobState"] for r in records if "ArrayTaskId" in r}


def test_a_sweep_on_slurm_is_one_job_array_and_equals_a_local_sweep(
    cluster, tiny_model_path, tmp_path, capsys
):
    from tests.test_sweep import tiny_sweep_overrides

    runs = ["game.num_names-2__seed-0", "game.num_names-2__seed-1"]
    grid = ["--grid", "game.num_names=2", "--seeds", "2", "--no-progress"]
    # The same experiment directory name in both places: it is every run's W&B group.
    on_slurm = [*tiny_sweep_overrides(tmp_path / "slurm"), "slurm.rollout.cpus=1", *grid]
    assert main(["sweep", str(QUICKSTART), *on_slurm, "--slurm", "--json"]) == 0
    submitted = json.loads(capsys.readouterr().out)
    out, array = Path(submitted["out"]), submitted["array_id"]
    assert out == tmp_path / "slurm" / "t-sweep" and submitted["runs"] == runs
    recorded = json.loads((out / "slurm_jobs.json").read_text())
    assert [(s["array_id"], s["runs"]) for s in recorded] == [(array, runs)]
    # While its tasks are queued or running, neither command starts a run a second time.
    for again in ([], ["--slurm"]):
        assert main(["sweep", str(QUICKSTART), *on_slurm, *again]) == 2
        assert "still queued or running" in capsys.readouterr().err
    end = time.monotonic() + 600
    while subprocess.run(["squeue", "-h", "-j", array], capture_output=True, text=True).stdout:
        assert time.monotonic() < end, "the sweep's job array did not finish in 600 s"
        time.sleep(2)
    assert _array_tasks(array) == {"0": "COMPLETED", "1": "COMPLETED"}  # a task per run

    # The same command once the array is done: nothing submitted, the aggregates written.
    assert main(["sweep", str(QUICKSTART), *on_slurm, "--slurm", "--json"]) == 0
    aggregated = json.loads(capsys.readouterr().out)
    assert aggregated["ran"] == [] and aggregated["skipped"] == runs
    assert len(json.loads((out / "slurm_jobs.json").read_text())) == 1
    written = json.loads((out / "aggregate.json").read_text())
    assert written == aggregated["aggregate"]
    assert [(r["point"], r["seeds"]) for r in written["rows"]] == [({"game.num_names": 2}, [0, 1])]

    # A local sweep of the same plan makes the same run directories.
    local = [*tiny_sweep_overrides(tmp_path / "local"), "slurm.rollout.cpus=1", *grid]
    assert main(["sweep", str(QUICKSTART), *local, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ran"] == runs
    for name in runs:
        ours, theirs = RunLayout(out / name), RunLayout(tmp_path / "local" / "t-sweep" / name)
        assert ours.is_complete(0)
        for file in ("transcripts.jsonl", "probe_before.json", "probes.json", "summary.json"):
            assert (ours.generation(0) / file).read_bytes() == (
                theirs.generation(0) / file
            ).read_bytes(), f"{name} {file} differs from the local sweep's"
        for agent in AGENTS:
            a = load_file(ours.adapter(0, agent) / "adapter_model.safetensors")
            b = load_file(theirs.adapter(0, agent) / "adapter_model.safetensors")
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), agent
        assert (out / "logs" / f"{name}.log").read_text().count("generation 0 complete") == 1
    local_aggregate = tmp_path / "local" / "t-sweep" / "aggregate.json"
    assert json.loads(local_aggregate.read_text()) == written


# Rank 0 of each job records its rendezvous port, then holds the rendezvous open until
# both jobs have recorded theirs: the two launches are alive at the same time.
PORT_HOLDER = """
import os, pathlib, sys, time
import torch.distributed as dist

dist.init_process_group("gloo")
folder = pathlib.Path(sys.argv[1])
if dist.get_rank() == 0:
    (folder / os.environ["SLURM_JOB_ID"]).write_text(os.environ["MASTER_PORT"])
    end = time.monotonic() + 120
    while len(list(folder.iterdir())) < 2:
        if time.monotonic() > end:
            sys.exit("the other launch did not start while this one held its port")
        time.sleep(0.2)
dist.barrier()
dist.destroy_process_group()
"""


def test_two_one_node_accelerate_launches_on_one_node_rendezvous_apart(
    cluster, tiny_model_path, tmp_path, capsys
):
    """Two array tasks of a rendered accelerate distillation script run at once on the
    one node: each launcher binds its job's own port (not both 29500) and both finish.
    The step itself is replaced by a script that only meets and waits (light on 2 CPUs)."""
    overrides = [*tiny_overrides(tmp_path), "slurm.launcher=accelerate", "slurm.distill.cpus=2"]
    overrides.append("slurm.accelerate_config=configs/accelerate/cpu_ddp.yaml")
    assert main(["slurm", "render", str(QUICKSTART), *overrides]) == 0
    capsys.readouterr()
    script = tmp_path / "t" / "slurm" / "scripts" / "g000-distill.sbatch"
    held, holder = tmp_path / "held", tmp_path / "hold_port.py"
    held.mkdir()
    holder.write_text(PORT_HOLDER)
    lines = script.read_text().splitlines()
    (i,) = [n for n, line in enumerate(lines) if line.endswith(" &")]
    assert "--main_process_port=$MASTER_PORT -m trainer.cli step distill" in lines[i]
    lines[i] = lines[i].split(" -m trainer.cli ")[0] + f" {holder} {held} &"
    script.write_text("\n".join(lines) + "\n")
    # Two tasks of one CPU each (the launch still starts 2 processes): both fit at once.
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--array=0,1", "--cpus-per-task=1", str(script)],
        capture_output=True,
        text=True,
        check=True,
    )
    array = submitted.stdout.strip().split(";")[0]
    end = time.monotonic() + 600
    while subprocess.run(["squeue", "-h", "-j", array], capture_output=True, text=True).stdout:
        assert time.monotonic() < end, "the two launches did not finish in 600 s"
        time.sleep(2)
    logs = "\n".join(p.read_text()[-2000:] for p in (tmp_path / "t" / "slurm" / "logs").glob("*"))
    assert _array_tasks(array) == {"0": "COMPLETED", "1": "COMPLETED"}, logs
    ports = {job.name: int(job.read_text()) for job in held.iterdir()}
    assert len(ports) == 2, logs
    assert ports == {job: master_port(job) for job in ports}  # one port per task's job id
    assert len(set(ports.values())) == 2 and 29500 not in ports.values()
