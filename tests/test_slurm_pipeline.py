"""`folkways slurm submit` without a running scheduler: what a job runs, and what a
failed submission says and leaves. Fast; `tests/test_slurm.py` runs real pipelines."""

from __future__ import annotations

import json
import sys

from trainer.slurm_pipeline import Stage, StepJob

ARGV_PRINTER = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]


def test_a_submitted_launcher_reads_the_rendezvous_words_on_its_node(tmp_path, monkeypatch, capfd):
    # A one-node job without MASTER_ADDR: the launcher meets on 127.0.0.1; $SLURM_JOB_ID
    # and $SLURM_NODEID come from the job's environment; an unknown $WORD stays as is.
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("SLURM_JOB_NODELIST", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    monkeypatch.setenv("SLURM_NODEID", "1")
    monkeypatch.delenv("FOLKWAYS_NOT_SET", raising=False)
    launcher = [
        *ARGV_PRINTER,
        "--rdzv_endpoint=$MASTER_ADDR:29500",
        "--rdzv_id=$SLURM_JOB_ID",
        "--node_rank=$SLURM_NODEID",
        "--kept=$FOLKWAYS_NOT_SET",
    ]
    job = StepJob(str(tmp_path), Stage(3, "distill", (0, 1), 2), launcher)
    assert job(1) == {"step": "distill", "generation": 3, "task": 1}
    assert json.loads(capfd.readouterr().out) == [
        "--rdzv_endpoint=127.0.0.1:29500",
        "--rdzv_id=12",
        "--node_rank=1",
        "--kept=$FOLKWAYS_NOT_SET",
        *["-m", "trainer.cli", "step", "distill", str(tmp_path), "--generation", "3"],
        *["--no-progress", "--task", "1", "--agents-per-task", "2"],
    ]
    monkeypatch.setenv("MASTER_ADDR", "node7")  # set by the job: kept
    job(1)
    assert json.loads(capfd.readouterr().out)[0] == "--rdzv_endpoint=node7:29500"
