"""What starts a distillation step's processes on a Slurm node: torchrun or accelerate
(``slurm.launcher``), run as modules of the venv's python, with each job's own
rendezvous host and port. Used by submitted jobs (:class:`trainer.slurm_pipeline.StepJob`)
and rendered scripts (:mod:`trainer.slurm_render`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from trainer.slurm_config import Launcher, SlurmConfig

# The launchers' modules, run by the interpreter every other step runs (sys.executable,
# the venv's python): a node's PATH need not hold the venv's `torchrun` or `accelerate`
# scripts, which are these modules' console entry points (torch's and accelerate's
# entry_points.txt).
TORCHRUN_MODULE = "torch.distributed.run"
ACCELERATE_LAUNCH_MODULE = "accelerate.commands.launch"


# The rendezvous port of a job: its own, derived from its job id (an array task has its
# own id), so two jobs whose first node coincides do not both bind the launchers' default
# 29500. 15000 + the id's last 4 digits, as PyTorch Lightning's SLURMEnvironment derives
# MASTER_PORT: 15000-24999 lies below Linux's ephemeral range (32768-60999, where the OS
# places outgoing connections and port-0 binds) and away from 29500. Two running jobs
# share a port only if their ids differ by a multiple of 10000 and their first node is
# the same. The rendered scripts export it (slurm/step.sbatch); submitted jobs set it
# in StepJob.
MASTER_PORT_BASE, MASTER_PORT_SPAN = 15000, 10000
MASTER_PORT_SHELL = f"$(({MASTER_PORT_BASE} + SLURM_JOB_ID % {MASTER_PORT_SPAN}))"


def master_port(job_id: str | int) -> int:
    """The rendezvous port of Slurm job ``job_id`` (what ``MASTER_PORT_SHELL`` gives)."""
    return MASTER_PORT_BASE + int(job_id) % MASTER_PORT_SPAN


def launcher_prefix(cfg: SlurmConfig) -> list[str]:
    """What starts the distillation step's processes on one node (multi-process runs
    replace ``python`` in :func:`step_argv` with this). ``$VAR`` words are read on each
    node: ``$SLURM_NODEID``, ``$SLURM_JOB_ID``, ``$MASTER_ADDR`` (the first node) and
    ``$MASTER_PORT`` (the job's port, :func:`master_port`)."""
    res = cfg.distill
    procs = res.gpus or res.cpus
    if cfg.launcher is Launcher.TORCHRUN:
        prefix = [sys.executable, "-m", TORCHRUN_MODULE, f"--nproc_per_node={procs}"]
        if res.nodes == 1:
            # A rendezvous on a free local port that torchrun's agent binds itself:
            # without it every torchrun binds 29500, and two array tasks placed on one
            # node would collide.
            prefix.append("--standalone")
        else:
            # torchrun's c10d rendezvous: every node's agent meets at the endpoint under
            # one id, the job's (an array task has its own), so two tasks never mix; the
            # endpoint's port is the job's own, so they do not bind one port either.
            prefix += [
                f"--nnodes={res.nodes}",
                "--node_rank=$SLURM_NODEID",
                "--rdzv_backend=c10d",
                "--rdzv_endpoint=$MASTER_ADDR:$MASTER_PORT",
                "--rdzv_id=$SLURM_JOB_ID",
            ]
        return prefix
    if cfg.launcher is Launcher.ACCELERATE:
        prefix = [sys.executable, "-m", ACCELERATE_LAUNCH_MODULE]
        prefix += ["--config_file", str(cfg.accelerate_config)]
        prefix += [f"--num_processes={procs * res.nodes}"]
        if res.nodes > 1:
            prefix += [
                f"--num_machines={res.nodes}",
                "--machine_rank=$SLURM_NODEID",
                "--main_process_ip=$MASTER_ADDR",
            ]
        # One node too: accelerate's configs (rdzv_backend: static) otherwise bind 29500
        # on every node. (Its `--main_process_port 0` picks a free port by binding and
        # closing it before torchrun binds it again: two tasks starting at once can
        # still draw the same one.)
        prefix.append("--main_process_port=$MASTER_PORT")
        return prefix
    return []


def first_node(nodelist: str | None) -> str:
    """The first host of a Slurm node list (the rendezvous host); 127.0.0.1 without one."""
    if nodelist and shutil.which("scontrol"):
        shown = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True
        ).stdout.split()
        if shown:
            return shown[0]
    return "127.0.0.1"
