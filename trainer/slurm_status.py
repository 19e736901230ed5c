"""``folkways slurm status``: each generation's steps, from the run directory (the
truth) and the queue state of the recorded jobs that would do them.

When ``squeue`` fails (the controller down, say) the queue is unknown: a step not done
says "queue unknown" and carries squeue's message, never "not queued", which would
invite a second submission of jobs that may still be queued."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from trainer.slurm_pipeline import queued_jobs, read_submissions
from trainer.slurm_sbatch import QueueUnknown


@dataclass(frozen=True)
class StepStatus:
    generation: int
    step: str
    state: str  # done | running | pending (reason) | partial (k/n) | not done
    jobs: list[str]
    queue_error: str = ""
    """squeue's message when the queue is unknown and the state depends on it; else ""."""

    def to_dict(self) -> dict:
        return asdict(self)


def pipeline_status(exp) -> list[StepStatus]:
    """Each generation's steps: done (from the run directory, which is the truth) or the
    queue state of the recorded jobs that would do them."""
    layout, root = exp.layout, exp.layout.root
    history = read_submissions(root)
    by_step: dict[tuple[int, str], list[str]] = {}
    for submission in history:
        for j in submission["jobs"]:
            by_step.setdefault((j["generation"], j["step"]), []).append(j["job_id"])
    unknown = ""
    try:
        queue = queued_jobs([j for ids in by_step.values() for j in ids]) if history else {}
    except QueueUnknown as err:
        queue, unknown = {}, err.said
    rows = []
    for g in range(exp.config.run.generations):
        complete = layout.is_complete(g)
        for step in ("rollout", "distill", "probe"):
            ids = by_step.get((g, step), [])
            mine = {j: s for j, s in queue.items() if j.split("_")[0] in ids}
            if step == "rollout":
                done = complete or exp.rollout_recorded(g)
                partial = ""
            elif step == "distill":
                missing = [] if complete else exp.distilled_missing(g)
                total = len(exp.llm_agents)
                done = not missing
                partial = (
                    f"{total - len(missing)}/{total} agents" if 0 < len(missing) < total else ""
                )
            else:
                done, partial = complete, ""
            queue_error = ""
            if done:
                state = "done"
            elif unknown:
                state = (f"partial ({partial})" if partial else "not done") + ", queue unknown"
                queue_error = unknown
            elif mine:
                states = sorted({s for s, _ in mine.values()})
                reasons = sorted({r for _, r in mine.values() if r and r != "None"})
                state = ", ".join(s.lower() for s in states) + (
                    f" ({', '.join(reasons)})" if reasons else ""
                )
            elif partial:
                state = f"partial ({partial}), not queued"
            else:
                state = "not done, not queued" if history else "not submitted"
            rows.append(StepStatus(g, step, state, ids, queue_error))
    return rows


def format_status(rows: Sequence[StepStatus]) -> str:
    lines = ["generation | step    | state                          | jobs"]
    for r in rows:
        lines.append(f"{r.generation:>10} | {r.step:<7} | {r.state:<30} | {' '.join(r.jobs)}")
    unknown = next((r.queue_error for r in rows if r.queue_error), "")
    if unknown:
        lines.append(f"queue unknown: `squeue` failed and says: {unknown}")
    return "\n".join(lines)
