"""``folkways sweep ... --slurm``: the sweep's incomplete runs as one Slurm job array
(issue #11).

Each array task is one run of the plan, run in the task's process exactly as ``folkways
sweep`` runs it locally (``run_experiment`` with the config and overrides
:mod:`trainer.sweep_plan` builds; its log lines into ``<out>/logs/<run>.log``), so a
run directory made on Slurm is the one a local sweep makes. Submission goes through
submitit: its ``checkpoint`` hook requeues a task on preemption or at its time limit (up
to ``slurm.max_requeues`` times) and the run resumes from its directory.

Every task asks for the runs' ``slurm.rollout`` resources (a task plays, distills and
probes every generation; the rollout is the step that needs the model's device and the
longest time); at most ``slurm.max_parallel_tasks`` tasks run at once; ``account``,
``qos`` and ``setup`` apply as for ``folkways slurm submit``. Submissions are recorded
in ``<out>/slurm_jobs.json`` (task i ran ``runs[i]``), submitit's logs go to
``<out>/slurm/logs/<array id>_<task>/``.

Re-running the same ``folkways sweep`` command (with or without ``--slurm``) after the
array has finished skips the complete runs and writes the aggregates; with ``--slurm``
it submits whatever is still incomplete (failed tasks) as a new array. Both refuse
while tasks of a recorded array are queued or running, so no run has two writers.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from societies.atomic import atomic_write_json
from trainer.slurm_pipeline import _resources, queued_jobs
from trainer.slurm_sbatch import check_controller, slurm_executor
from trainer.sweep import _run_one, check_started_runs, is_complete
from trainer.sweep_plan import SweepPlan

JOBS_FILE = "slurm_jobs.json"


@dataclass(frozen=True)
class SweepSubmission:
    """One job array of a sweep: task i runs ``runs[i]``."""

    array_id: str
    runs: list[str]
    submitted_at: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SweepRunTask:
    """The callable every array task runs: one run of the sweep, resumed if started.
    ``checkpoint`` makes it requeueable (the run resumes from its directory)."""

    config: str

    def __call__(self, name: str, overrides: list[str], log_path: str) -> dict:
        from trainer.library_logs import quiet_libraries

        quiet_libraries()
        seconds = _run_one(self.config, overrides, Path(log_path))
        return {"run": name, "seconds": round(seconds, 1)}

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def read_sweep_submissions(out: Path) -> list[dict]:
    path = Path(out) / JOBS_FILE
    return json.loads(path.read_text()) if path.exists() else []


def check_no_queued_tasks(out: Path) -> None:
    """Refuse while tasks of the sweep's recorded arrays are queued or running (their runs
    would get a second writer). Off the cluster (no ``squeue``) nothing can be queued
    from here, so a copied experiment directory is aggregated as usual.

    Raises:
        ValueError: tasks are still queued or running, or ``squeue`` failed (the
            controller down): the queue is unknown, so nothing is taken as finished.
    """
    ids = [s["array_id"] for s in read_sweep_submissions(out)]
    if not ids or not shutil.which("squeue"):
        return
    active = queued_jobs(ids)
    if active:
        shown = ", ".join(f"{j} ({s})" for j, (s, _) in sorted(active.items())[:5])
        raise ValueError(
            f"{len(active)} task(s) of the sweep's job array(s) in {out} are still queued or "
            f"running: {shown}; wait for them (squeue -j {','.join(ids)}) or scancel them, "
            "then run the same command again"
        )


def submit_sweep(
    plan: SweepPlan,
    *,
    log: Callable[[str], None] = lambda _: None,
    executor_factory: Callable[[Path, int], object] | None = None,
) -> SweepSubmission | None:
    """Submit the plan's incomplete runs as one job array; record it in slurm_jobs.json.

    Returns None (nothing submitted) when every run is complete.

    Raises:
        ConfigError: a run was started with another config (nothing submitted).
        ValueError: tasks of an earlier array are still queued; the runs to submit
            have different ``slurm:`` sections (one array asks for one resource set).
    """
    check_no_queued_tasks(plan.out)
    check_started_runs(plan)
    todo = [r for r in plan.runs if not is_complete(plan.configs[r.name])]
    cfg = plan.configs[todo[0].name].slurm if todo else None
    other = next((r for r in todo if plan.configs[r.name].slurm != cfg), None)
    if other is not None:
        raise ValueError(
            f"runs {todo[0].name} and {other.name} have different slurm: sections; one job "
            "array asks for one set of resources: give slurm.* keys as shared overrides, "
            "not in --grid"
        )
    if todo and executor_factory is None:
        check_controller()  # before sweep.json: an unreachable cluster leaves nothing
    plan.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(plan.out / "sweep.json", plan.manifest())
    if cfg is None:
        return None  # every run is complete
    if executor_factory is None:

        def executor_factory(folder: Path, max_requeues: int):
            return slurm_executor(folder, max_requeues, f"the job array of sweep {plan.out}")

    executor = executor_factory(plan.out / "slurm" / "logs" / "%j", cfg.max_requeues)
    executor.update_parameters(**_resources(cfg.rollout, cfg, f"fw-sweep-{plan.out.name}"))
    # The config as an absolute path, whatever directory a task starts in (no run
    # directory records the path). Relative run.output_dir values stay as the plan wrote
    # them: sbatch starts jobs in the directory they were submitted from.
    task = SweepRunTask(str(Path(plan.config).resolve()))
    logs = plan.out / "logs"
    jobs = executor.map_array(
        task,
        [r.name for r in todo],
        [r.overrides for r in todo],
        [str(logs / f"{r.name}.log") for r in todo],
    )
    submission = SweepSubmission(str(jobs[0].job_id).split("_")[0], [r.name for r in todo])
    log(f"submitted job array {submission.array_id}: {len(todo)} run(s)")
    history = read_sweep_submissions(plan.out)
    atomic_write_json(plan.out / JOBS_FILE, [*history, submission.to_dict()])
    return submission
