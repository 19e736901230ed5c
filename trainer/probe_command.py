"""``folkways probe``: re-measure the priors of a run's saved adapters.

Useful after a run, e.g. with more option orders than the run itself used, or on
a generation whose probes should be checked. Reads the run's resolved config, so
the game (names, prompt) is exactly the one the agents played.
"""

from __future__ import annotations

from pathlib import Path

from societies import seeding
from societies.metrics import entropy_bits
from societies.probes import prior_probe, probe_orders
from societies.records import AgentPrior
from societies.seeding import Stream
from trainer.generation_loop import Experiment
from trainer.messages import listing
from trainer.run_dir import adapter_is_saved


def _adapters(experiment: Experiment, run_dir: Path, generation: int | None):
    """The generation probed and its adapter folders (-1: the initial ones)."""
    completed = experiment.layout.completed_generations()
    if generation is None:
        generation = completed[-1] if completed else -1
    adapters = experiment.start_adapters(generation + 1)  # -1 -> the initial adapters
    missing = [a for a, path in adapters.items() if not adapter_is_saved(path)]
    if missing:
        available = ", ".join(map(str, [-1, *completed]))
        raise FileNotFoundError(
            f"generation {generation} of {run_dir} has no saved adapters for "
            f"{listing(missing)}; generations with adapters: {available}"
        )
    return generation, adapters


def probe_run(
    run_dir: Path, generation: int | None = None, orders: int | None = None
) -> tuple[int, dict[str, AgentPrior]]:
    """Priors of the adapters after ``generation`` (default: the last complete one; -1: initial).

    Returns the generation probed and each agent's prior.
    """
    experiment = Experiment.from_run_dir(run_dir, progress=False)
    generation, adapters = _adapters(experiment, run_dir, generation)
    count = experiment.config.probe_orders if orders is None else orders  # 0 is an error
    if not 1 <= count <= len(experiment.game.options):
        raise ValueError(f"--orders={count}; accepted: 1..{len(experiment.game.options)}")
    order_list = probe_orders(
        experiment.game.options, count, seeding.rng(experiment.config.run.seed, Stream.PROBE)
    )
    population = experiment.population(adapters)
    return generation, prior_probe(population, experiment.game, experiment.agents, order_list)


def format_priors(generation: int, priors: dict[str, AgentPrior], top: int = 3) -> str:
    lines = [
        f"priors after generation {generation}"
        if generation >= 0
        else "priors of the initial adapters"
    ]
    for agent, prior in priors.items():
        best = sorted(prior.probs.items(), key=lambda kv: -kv[1])[:top]
        shown = "  ".join(f"{name} {p:.3f}" for name, p in best)
        lines.append(
            f"{agent}: {shown}   entropy {entropy_bits(prior.probs):.2f} bits, option mass {prior.option_mass:.3g}"
        )
    return "\n".join(lines)


def trait_run(run_dir: Path, generation: int | None = None, orders: str = "reversed"):
    """The IPIP Big-Five profile of every LLM agent's adapter after ``generation``
    (-1: the initial adapters, i.e. the base model), asked as ``probe.questionnaire``
    asks it (:func:`societies.measures.questionnaire.administer`)."""
    from societies.measures.questionnaire import administer

    experiment = Experiment.from_run_dir(run_dir, progress=False)
    generation, adapters = _adapters(experiment, run_dir, generation)
    population = experiment.population(adapters)
    return generation, administer(population, experiment.llm_agents, orders=orders)


def format_traits(generation: int, profiles) -> str:
    traits = sorted({t for p in profiles.values() for t in p.traits})
    head = "after generation " + str(generation) if generation >= 0 else "initial adapters"
    lines = [f"Big-Five scores (1-5), {head}", "agent | " + " | ".join(traits)]
    for agent, p in profiles.items():
        lines.append(agent + " | " + " | ".join(f"{p.traits[t]:.2f}" for t in traits))
    means = [sum(p.traits[t] for p in profiles.values()) / len(profiles) for t in traits]
    lines.append("mean | " + " | ".join(f"{m:.2f}" for m in means))
    return "\n".join(lines)
