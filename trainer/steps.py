"""``folkways step rollout|distill|probe RUN_DIR --generation G``: one generation's steps
as separate processes sharing the run directory (issue #10, for Slurm pipelines).

- ``rollout``: the starting adapters' probe and every round (needs generation G-1
  complete; generation 0 first writes the seeded initial adapters);
- ``distill``: the distillation of some or all agents (``--agents``, or task ``I`` of
  groups of ``--agents-per-task``: one Slurm array task each); needs the rollout;
- ``probe``: evolution, the probe of the new adapters, metrics, summary, lineage, W&B,
  then COMPLETE; needs every agent's distilled adapter.

Each step is idempotent, as ``folkways run`` is (DESIGN.md, decision 6): work whose
outputs are complete is skipped, a partial one is redone from the seeds, so a requeued
or re-submitted job continues and the run directory ends the same as a local run's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from trainer.provenance import record_environment

STEPS = ("rollout", "distill", "probe")


class StepOrderError(ValueError):
    """A step was asked for before the steps it needs were done."""


@dataclass(frozen=True)
class StepResult:
    step: str
    generation: int
    status: str  # "done" or "already complete"
    agents: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def agent_groups(agents: Sequence[str], per_task: int) -> list[list[str]]:
    """``agents`` in contiguous groups of ``per_task`` (the last may be smaller)."""
    if isinstance(per_task, bool) or not isinstance(per_task, int) or per_task < 1:
        raise ValueError(f"agents per task = {per_task!r}; accepted: an integer >= 1")
    return [list(agents[i : i + per_task]) for i in range(0, len(agents), per_task)]


def chosen_agents(
    llm_agents: Sequence[str],
    agents: Sequence[str] | None = None,
    task: int | None = None,
    per_task: int = 1,
) -> list[str]:
    """The agents one distillation step trains: named ones, or group ``task`` of
    :func:`agent_groups`, or (neither given) all of them."""
    if agents and task is not None:
        raise ValueError("give --agents or --task, not both")
    if agents:
        unknown = [a for a in agents if a not in llm_agents]
        if unknown:
            raise ValueError(
                f"--agents {unknown}: not LLM agents of this run; accepted: {list(llm_agents)}"
            )
        return list(agents)
    if task is not None:
        groups = agent_groups(llm_agents, per_task)
        if not 0 <= task < len(groups):
            raise ValueError(
                f"--task {task}: {len(llm_agents)} agents in groups of {per_task} make "
                f"{len(groups)} tasks; accepted: 0..{len(groups) - 1}"
            )
        return groups[task]
    return list(llm_agents)


def run_step(
    run_dir: str | Path,
    step: str,
    generation: int,
    *,
    agents: Sequence[str] | None = None,
    task: int | None = None,
    per_task: int = 1,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> StepResult:
    """Run one step of one generation of the run in ``run_dir`` (made by ``folkways run``,
    ``folkways slurm submit`` or ``render``).

    Raises:
        ValueError: an unknown step, generation or agent.
        StepOrderError: the steps this one needs are not done.
    """
    from trainer.distill_sft import is_main_process
    from trainer.generation_loop import Experiment
    from trainer.tracking import rebuild_run_metrics

    if step not in STEPS:
        raise ValueError(f"step {step!r}; accepted: {', '.join(STEPS)}")
    kwargs = {"progress": progress} if log is None else {"progress": progress, "log": log}
    exp = Experiment.from_run_dir(run_dir, **kwargs)
    layout, total = exp.layout, exp.config.run.generations
    g = generation
    if isinstance(g, bool) or not isinstance(g, int) or not 0 <= g < total:
        raise ValueError(f"--generation {g!r}; accepted: 0..{total - 1} (run.generations)")
    main_process = is_main_process()  # under torchrun / accelerate launch: rank 0
    # Distillation tasks of one generation run at once in one run directory: preparing
    # (which deletes temporaries a killed write left) would delete another task's live
    # ones. The rollout step before them prepared it; the probe step after them, which
    # runs alone, clears what a killed task left.
    if main_process and step != "distill":
        exp.prepare()
    if layout.is_complete(g):
        exp.log(f"generation {g} of {layout.root} is complete; step {step} has nothing to do")
        return StepResult(step, g, "already complete", [])
    if g > 0 and not layout.is_complete(g - 1):
        raise StepOrderError(
            f"generation {g - 1} of {layout.root} is not complete; step {step} of generation "
            f"{g} needs it (run `folkways step probe {layout.root} --generation {g - 1}`)"
        )
    exp.set_threads()
    work = f"step {step} {g}"  # recorded when the step's work is done
    if step == "rollout":
        exp.ensure_initial_adapters()
        exp.rollout_step(g)
        if main_process:
            record_environment(layout.environment, work)
        return StepResult(step, g, "done", list(exp.llm_agents))
    if not exp.rollout_recorded(g):
        raise StepOrderError(
            f"the rollout of generation {g} of {layout.root} is not recorded; step {step} "
            f"needs it (run `folkways step rollout {layout.root} --generation {g}`)"
        )
    rollout = exp.rollout_step(g)  # read back, nothing recomputed
    if step == "distill":
        mine = chosen_agents(exp.llm_agents, agents, task, per_task)
        # Under a launcher every process trains the same agents together; rank 0 writes.
        exp.distill_step(g, rollout.decisions, mine, track=main_process)
        if main_process:
            record_environment(layout.environment, work)
        return StepResult(step, g, "done", mine)
    missing = exp.distilled_missing(g)
    if missing:
        raise StepOrderError(
            f"generation {g} of {layout.root}: agents {missing} have no distilled adapter; "
            f"step probe needs all (run `folkways step distill {layout.root} --generation {g}`)"
        )
    data, outcomes = exp.distill_step(g, rollout.decisions, track=False)  # read back
    exp.finish_step(g, rollout, data, outcomes)
    rebuild_run_metrics(layout)
    if main_process:
        record_environment(layout.environment, work)
    return StepResult(step, g, "done", list(exp.llm_agents))


def add_step_parser(subparsers) -> None:
    """Register ``folkways step``."""
    parser = subparsers.add_parser(
        "step",
        help="one step of one generation (rollout, distill or probe), for pipelines",
    )
    parser.add_argument("step", choices=STEPS)
    parser.add_argument("run_dir", help="a run directory (folkways run / slurm submit)")
    parser.add_argument("--generation", type=int, required=True)
    parser.add_argument(
        "--agents", default=None, help="distill: comma-separated agents (default: all)"
    )
    parser.add_argument(
        "--task", type=int, default=None, help="distill: group I of --agents-per-task agents"
    )
    parser.add_argument(
        "--agents-per-task", type=int, default=None, help="distill, with --task (default 1)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=_cmd_step)


def step_agent_options(
    step: str, agents: str | None, task: int | None, per_task: int | None
) -> tuple[list[str] | None, int]:
    """``--agents`` as a list (``None``: not given) and ``--agents-per-task``, checked.

    A pipeline that builds ``--agents "$NAMES"`` from an empty variable must fail, not
    train every agent; options another step ignores are refused, not dropped.
    """
    given = [
        name
        for name, value in (("--agents", agents), ("--task", task), ("--agents-per-task", per_task))
        if value is not None
    ]
    if step != "distill" and given:
        raise ValueError(f"{', '.join(given)}: only `folkways step distill` takes them")
    if per_task is not None and task is None:
        raise ValueError(
            f"--agents-per-task {per_task} without --task: give --task I to train group I"
        )
    names = None
    if agents is not None:
        names = [a.strip() for a in agents.split(",") if a.strip()]
        if not names:
            raise ValueError(
                f"--agents {agents!r} names no agent; accepted: comma-separated agent names "
                "(leave --agents out to train every agent)"
            )
    return names, 1 if per_task is None else per_task


def _cmd_step(args) -> int:
    import json

    agents, per_task = step_agent_options(args.step, args.agents, args.task, args.agents_per_task)
    result = run_step(
        args.run_dir,
        args.step,
        args.generation,
        agents=agents,
        task=args.task,
        per_task=per_task,
        progress=not args.no_progress,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"step {result.step} of generation {result.generation}: {result.status}")
    return 0


def prepare_run(config_path: str | Path | None, overrides: Sequence[str] = ()) -> Path:
    """Create (or check) the run directory of ``config_path`` + ``overrides`` without
    loading a model: ``config.yaml`` and ``graph.json``. Returns the run directory."""
    from trainer.config import load_experiment
    from trainer.generation_loop import Experiment

    exp = Experiment(load_experiment(config_path, list(overrides)), progress=False)
    exp.prepare()
    return exp.layout.root
