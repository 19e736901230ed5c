"""``folkways slurm submit|cancel``: a run as a chain of Slurm jobs (status:
:mod:`trainer.slurm_status`).

Per generation (issue #10):

    rollout job  ->  array of distillation tasks (one per group of
                     ``slurm.agents_per_task`` agents)  ->  probe job  ->  next generation

chained with ``--dependency=afterok`` (an array id waits for all its tasks) and
``--kill-on-invalid-dep=yes``, so a failed task takes the jobs after it out of the queue
instead of leaving them pending for ever. Every job runs one :mod:`trainer.steps` step,
which is idempotent; submission goes through submitit, whose ``checkpoint`` hook
requeues a job on preemption or at its time limit (up to ``slurm.max_requeues`` times),
and the requeued job continues from the run directory.

``submit`` on a run directory that already holds work submits only what remains (the
first incomplete generation's missing steps and agents, then the rest): that is also
how a pipeline is resumed after a cancelled or failed job. It refuses while jobs of
the run are still queued or running, so work is never submitted twice. Submissions are
recorded in ``<run_dir>/slurm/jobs.json``; logs go to ``<run_dir>/slurm/logs``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from societies.atomic import atomic_write_text
from trainer.config import AdapterScope
from trainer.slurm_config import Launcher, SlurmConfig, SlurmResources
from trainer.slurm_launchers import first_node, launcher_prefix, master_port
from trainer.slurm_sbatch import (
    INVALID_JOB_ID,
    QueueUnknown,
    SbatchError,
    check_controller,
    check_slurm_conf,
    slurm_executor,
)
from trainer.steps import agent_groups, run_step


@dataclass(frozen=True)
class Stage:
    """One job (or job array) of the pipeline."""

    generation: int
    step: str  # rollout | distill | probe
    tasks: tuple[int, ...] = ()  # distill: the agent groups its array tasks train
    per_task: int = 1

    @property
    def name(self) -> str:
        return f"g{self.generation:03d}-{self.step}"


@dataclass(frozen=True)
class SubmittedJob:
    generation: int
    step: str
    job_id: str  # an array's id for distill
    tasks: list[int] = field(default_factory=list)


def distill_groups(exp) -> tuple[int, list[list[str]]]:
    """``(agents per task, groups)``: one task for a community adapter, else groups of
    ``slurm.agents_per_task``."""
    agents = list(exp.llm_agents)
    if not agents:
        return 1, []
    if exp.config.distill.scope is AdapterScope.COMMUNITY:
        return len(agents), [agents]
    per_task = exp.config.slurm.agents_per_task
    return per_task, agent_groups(agents, per_task)


def remaining_stages(exp) -> list[Stage]:
    """The stages still to run, in order: nothing for complete generations; for the first
    incomplete one only its missing steps and agent groups; everything after it."""
    layout, total = exp.layout, exp.config.run.generations
    per_task, groups = distill_groups(exp)
    stages: list[Stage] = []
    first = True
    for g in range(total):
        if layout.is_complete(g):
            continue
        recorded = first and exp.rollout_recorded(g)
        if not recorded:
            stages.append(Stage(g, "rollout"))
        missing = set(exp.distilled_missing(g)) if recorded else set(exp.llm_agents)
        tasks = tuple(i for i, group in enumerate(groups) if missing & set(group))
        if tasks:
            stages.append(Stage(g, "distill", tasks, per_task))
        stages.append(Stage(g, "probe"))
        first = False
    return stages


# ----- what a job runs ------------------------------------------------------------------
def step_argv(run_dir: str, stage: Stage, task: str | None = None) -> list[str]:
    """``python -m trainer.cli step ...`` for one stage (``task``: a value or a shell
    variable for the array task's group)."""
    argv = [sys.executable, "-m", "trainer.cli", "step", stage.step, str(run_dir)]
    argv += ["--generation", str(stage.generation), "--no-progress"]
    if stage.step == "distill" and task is not None:
        argv += ["--task", task, "--agents-per-task", str(stage.per_task)]
    return argv


@dataclass
class StepJob:
    """The callable a submitit job runs: one step of one generation (a distill array task
    gets its group index). ``checkpoint`` makes it requeueable: the step resumes."""

    run_dir: str
    stage: Stage
    launcher: list[str] = field(default_factory=list)

    def __call__(self, task: int | None = None) -> dict:
        if self.launcher and self.stage.step == "distill":
            argv = step_argv(self.run_dir, self.stage, None if task is None else str(task))
            env = dict(os.environ)
            # In a job, the rendezvous host is the job's first node: a MASTER_ADDR in the
            # environment came from the shell `slurm submit` ran in (sbatch exports it)
            # and names some other machine. Outside a job, one given is kept.
            if "SLURM_JOB_NODELIST" in env or "MASTER_ADDR" not in env:
                env["MASTER_ADDR"] = first_node(env.get("SLURM_JOB_NODELIST"))
            # Always the job's own port: a MASTER_PORT exported where `slurm submit` ran
            # reaches every job (sbatch exports the environment) and would be shared.
            env["MASTER_PORT"] = str(master_port(env.get("SLURM_JOB_ID", "0")))
            # $MASTER_ADDR, $MASTER_PORT, $SLURM_NODEID, $SLURM_JOB_ID: read from this
            # node's environment (env, not os.environ: the two above may have just been set).
            words = [re.sub(r"\$(\w+)", lambda m: env.get(m[1], m[0]), a) for a in self.launcher]
            subprocess.run([*words, "-m", *argv[2:]], env=env, check=True)
            return {"step": "distill", "generation": self.stage.generation, "task": task}
        return run_step(
            self.run_dir,
            self.stage.step,
            self.stage.generation,
            task=task,
            per_task=self.stage.per_task,
        ).to_dict()

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


# ----- submission -----------------------------------------------------------------------
def _resources(res: SlurmResources, cfg: SlurmConfig, name: str) -> dict:
    params: dict = {
        "job_name": name,
        "cpus_per_task": res.cpus,
        "time": res.time_min,
        "nodes": res.nodes,
        "ntasks_per_node": 1,
        "array_parallelism": cfg.max_parallel_tasks,
        "additional_parameters": {"requeue": True, "kill_on_invalid_dep": "yes"},
    }
    if res.partition:
        params["partition"] = res.partition
    if res.gpus:
        params["gpus_per_node"] = res.gpus
    if res.mem_gb:
        params["mem"] = f"{res.mem_gb}G"
    if cfg.account:
        params["account"] = cfg.account
    if cfg.qos:
        params["qos"] = cfg.qos
    if cfg.setup:
        params["setup"] = list(cfg.setup)
    return params


def jobs_file(run_dir: Path) -> Path:
    return Path(run_dir) / "slurm" / "jobs.json"


def read_submissions(run_dir: Path) -> list[dict]:
    path = jobs_file(run_dir)
    return json.loads(path.read_text()) if path.exists() else []


def recorded_job_ids(run_dir: Path) -> list[str]:
    return [j["job_id"] for s in read_submissions(run_dir) for j in s["jobs"]]


def queued_jobs(job_ids: Sequence[str], env: dict | None = None) -> dict[str, tuple[str, str]]:
    """``{job id (array tasks as 12_3): (state, reason)}`` of the jobs still in the queue.

    Raises:
        FileNotFoundError: no ``squeue`` on PATH; ``SLURM_CONF`` names no readable file.
        QueueUnknown: squeue failed (e.g. the controller is down): nothing is known, which
            is not the same as nothing queued.
    """
    if not job_ids:
        return {}
    if not shutil.which("squeue"):
        raise FileNotFoundError(
            "squeue is not on PATH: run `folkways slurm` on a machine of the Slurm cluster"
        )
    check_slurm_conf(env)
    done = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%i|%T|%r", "--jobs=" + ",".join(job_ids)],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        if INVALID_JOB_ID in done.stderr:
            # One id that the controller no longer knows (it forgets finished jobs after
            # MinJobAge): an answer, not a failure. Several ids are filtered silently.
            return {}
        raise QueueUnknown(done.stderr + done.stdout)
    queued = {}
    for line in done.stdout.splitlines():
        job, state, reason = line.strip().split("|", 2)
        queued[job] = (state, reason)
    return queued


def submit_pipeline(
    exp,
    *,
    log: Callable[[str], None] = lambda _: None,
    executor_factory: Callable[[Path], object] | None = None,
) -> list[SubmittedJob]:
    """Submit the run's remaining stages as chained jobs; record them in jobs.json.

    Raises:
        ValueError: jobs of this run are still queued or running.
        QueueUnknown: squeue failed, so whether they are is unknown (nothing submitted).
        SbatchError: no Slurm controller answers (checked before anything is written),
            or sbatch refused a job: the jobs submitted before it are cancelled, and the
            run directory is removed if this call made it and no job was submitted.
    """
    if executor_factory is None and remaining_stages(exp):
        check_controller()  # before the run directory is written
    made = not exp.layout.root.exists()
    exp.prepare()
    root = exp.layout.root.resolve()
    active = queued_jobs(recorded_job_ids(root))
    if active:
        shown = ", ".join(f"{j} ({s})" for j, (s, _) in sorted(active.items())[:5])
        raise ValueError(
            f"{len(active)} job(s) of {root} are still queued or running: {shown}; wait for "
            f"them, or `folkways slurm cancel {root}` first, then submit again to resume"
        )
    stages = remaining_stages(exp)
    if not stages:
        log(f"{root} is complete; nothing to submit")
        return []
    if executor_factory is None:

        def executor_factory(folder: Path):
            return slurm_executor(folder, exp.config.slurm.max_requeues)

    cfg = exp.config.slurm
    executor = executor_factory(root / "slurm" / "logs" / "%j")
    launcher = launcher_prefix(cfg) if cfg.launcher is not Launcher.NONE else []
    submitted: list[SubmittedJob] = []
    previous: str | None = None
    for stage in stages:
        params = _resources(getattr(cfg, stage.step), cfg, f"fw-{exp.config.run.name}-{stage.name}")
        if previous:
            params["additional_parameters"] = {
                **params["additional_parameters"],
                "dependency": f"afterok:{previous}",
            }
        executor.update_parameters(**params)
        executor.what = f"the {stage.name} job of {root}"
        job = StepJob(str(root), stage, launcher)
        try:
            if stage.step == "distill":
                jobs = executor.map_array(job, list(stage.tasks))
                job_id = str(jobs[0].job_id).split("_")[0]
            else:
                job_id = str(executor.submit(job).job_id)
        except SbatchError as err:
            raise _after_refusal(err, root, submitted, made) from None
        submitted.append(SubmittedJob(stage.generation, stage.step, job_id, list(stage.tasks)))
        log(
            f"submitted {stage.name}: job {job_id}"
            + (f" (tasks {list(stage.tasks)})" if stage.tasks else "")
        )
        previous = job_id
    _record(root, submitted)
    return submitted


def _record(root: Path, submitted: list[SubmittedJob]) -> None:
    history = read_submissions(root)
    history.append(
        {
            "submitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "jobs": [asdict(j) for j in submitted],
        }
    )
    atomic_write_text(jobs_file(root), json.dumps(history, indent=2) + "\n")


def _after_refusal(
    err: SbatchError, root: Path, submitted: list[SubmittedJob], made: bool
) -> SbatchError:
    """Undo a partly submitted pipeline: half a chain would run steps whose successors
    never come. The jobs already queued are cancelled (and recorded in jobs.json, so that
    one scancel failing still keeps the next submit from running them twice); a run
    directory this submission made, with nothing submitted, is removed."""
    if not submitted:
        if made:
            shutil.rmtree(root, ignore_errors=True)
        return err
    _record(root, submitted)
    ids = [j.job_id for j in submitted]
    done = subprocess.run(["scancel", *ids], capture_output=True, text=True)
    fate = "cancelled" if done.returncode == 0 else f"NOT cancelled ({_one_line(done.stderr)})"
    return SbatchError(
        f"{err}; the {len(ids)} job(s) of this run submitted before it ({' '.join(ids)}) "
        f"were {fate} and are recorded in {jobs_file(root)}"
    )


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "scancel said nothing"


def cancel_pipeline(run_dir: Path) -> list[str]:
    """``scancel`` every recorded job of the run still in the queue; their ids.

    Raises:
        QueueUnknown: squeue failed (nothing cancelled).
    """
    active = sorted(queued_jobs(recorded_job_ids(run_dir)))
    if active:
        subprocess.run(["scancel", *sorted({j.split("_")[0] for j in active})], check=True)
    return active
