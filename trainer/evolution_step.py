"""One generation's evolution: from the distilled adapters to those the next one starts from.

The plan (:func:`plan_evolution`) is a pure function of the agents' fitness, the
``evolution:`` config and the seeds, so a resumed run recomputes the same plan and only
writes the seats whose folders are missing (:func:`apply_plan`). Operations, in order
(after Vallinder & Hughes 2024, "Cultural evolution of cooperation among LLM agents",
where the top half by resources survive and the rest are replaced by the survivors'
descendants; here inheritance is of adapter weights):

1. ``immigrant``: the bottom ``evolution.immigrants`` share of the ranking get fresh
   adapters (seeded like the initial ones, by seat and generation);
2. ``survive``: the top ``evolution.survive`` share keep their distilled adapters;
3. ``inherit``: every other seat gets a copy of a survivor's (``evolution.parent_rule``),
   or with ``evolution.crossover`` the ``cat`` combination of that survivor and the next
   in the ranking (``crossover``; ``truncate`` when the child's rank exceeds
   ``evolution.max_rank``);
4. ``mutate``: Gaussian noise on the children's weights (and the survivors' with
   ``evolution.mutate_survivors``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from societies.atomic import atomic_directory
from societies.lora_folders import lora_scaling
from societies.seeding import Stream, stream_seed
from trainer.distill_sft import TRAINING_RECORD
from trainer.run_dir import adapter_is_saved
from trainer.selection import immigrant_seed, mutation_seed, select


@dataclass(frozen=True)
class SeatPlan:
    """What one seat's next adapter is made of.

    Attributes:
        operations: in order, from ``immigrant``, ``survive``, ``inherit``, ``crossover``,
            ``mutate`` (``truncate`` is added when it happens).
        parents: the agents whose distilled adapters it is made from, first parent first;
            empty for an immigrant.
        details: the arguments: fitness and rank, crossover weights, mutation scale and seed,
            immigrant seed.
    """

    operations: tuple[str, ...]
    parents: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)


def plan_evolution(
    fitness: Mapping[str, float], evolution, root_seed: int, generation: int
) -> dict[str, SeatPlan]:
    """Every seat's plan, in ``fitness``' order; ties in fitness broken by the
    ``Stream.SELECTION`` stream of ``generation``."""
    seed = stream_seed(root_seed, Stream.SELECTION, generation)
    chosen = select(fitness, evolution.survive, seed, evolution.parent_rule)
    ranking = list(chosen.ranking)
    n = len(ranking)
    immigrants = set(ranking[n - evolution.num_immigrants(n) :]) if evolution.immigrants else set()
    survivors = [a for a in chosen.survivors if a not in immigrants]
    mutating = evolution.mutation_scale > 0
    plans: dict[str, SeatPlan] = {}
    for agent in fitness:
        rank = ranking.index(agent)
        info: dict[str, Any] = {"fitness": float(fitness[agent]), "fitness_rank": rank}
        if agent in immigrants:
            info["init_seed"] = immigrant_seed(root_seed, generation, agent)
            plans[agent] = SeatPlan(("immigrant",), (), info)
            continue
        if agent in survivors:
            ops, parents = ["survive"], [agent]
            mutate_this = mutating and evolution.mutate_survivors
        else:
            parent = chosen.children[agent]
            ops, parents = ["inherit"], [parent]
            if evolution.crossover:
                second = survivors[(survivors.index(parent) + 1) % len(survivors)]
                ops.append("crossover")
                parents.append(second)
                info["crossover_weights"] = [float(w) for w in evolution.crossover_weights]
            mutate_this = mutating
        if mutate_this:
            ops.append("mutate")
            info["mutation_scale"] = float(evolution.mutation_scale)
            info["mutation_seed"] = mutation_seed(root_seed, generation, agent)
        plans[agent] = SeatPlan(tuple(ops), tuple(parents), info)
    return plans


def apply_plan(
    plans: Mapping[str, SeatPlan],
    *,
    distilled: Callable[[str], Path],
    out_dir: Callable[[str], Path],
    max_rank: int,
    make_fresh: Callable[[dict[str, tuple[int, Path]]], None],
) -> dict[str, SeatPlan]:
    """Write every seat's adapter folder whose folder is not already saved.

    ``distilled(agent)`` is an agent's distilled folder, ``out_dir(seat)`` where the
    seat's next adapter goes; ``make_fresh({seat: (init_seed, folder)})`` writes fresh
    adapters (it loads a model, so all immigrants go in one call).

    Returns:
        the plans as carried out: a crossover child whose rank was truncated has
        ``truncate`` after ``crossover`` and ``truncation_error`` in its details.
    """
    # The weight operators import torch; planning (above) and the loop's import do not.
    from trainer.evolve import mutate, read_adapter_state, truncate_rank, write_adapter_state

    done: dict[str, SeatPlan] = {}
    fresh = {}
    for seat, plan in plans.items():
        target = out_dir(seat)
        if plan.operations == ("immigrant",):
            if not adapter_is_saved(target):
                fresh[seat] = (plan.details["init_seed"], target)
            done[seat] = plan
            continue
        if "crossover" not in plan.operations and "mutate" not in plan.operations:
            if not adapter_is_saved(target):
                _copy_adapter(distilled(plan.parents[0]), target)
            done[seat] = plan
            continue
        state, config = read_adapter_state(distilled(plan.parents[0]))
        ops, details = list(plan.operations), dict(plan.details)
        if "crossover" in plan.operations:
            state, config = _cross(
                distilled(plan.parents[0]),
                distilled(plan.parents[1]),
                plan.details["crossover_weights"],
            )
            if int(config["r"]) > max_rank:
                state, error = truncate_rank(state, max_rank)
                config = _with_rank(config, max_rank)
                ops.insert(ops.index("crossover") + 1, "truncate")
                details["truncation_error"] = error
                details["truncated_to_rank"] = max_rank
        if "mutate" in plan.operations:
            state = mutate(state, plan.details["mutation_scale"], plan.details["mutation_seed"])
        if not adapter_is_saved(target):
            write_adapter_state(target, state, config)
        done[seat] = SeatPlan(tuple(ops), plan.parents, details)
    if fresh:
        make_fresh(fresh)
    return done


def _copy_adapter(source: Path, target: Path) -> None:
    """The adapter files of ``source`` (not its training record) into ``target``, whole."""
    with atomic_directory(target) as tmp:
        for item in source.iterdir():
            if item.is_file() and item.name != TRAINING_RECORD:
                shutil.copy2(item, tmp / item.name)


def _cross(dir_a: Path, dir_b: Path, weights) -> tuple[dict, dict]:
    """The ``cat`` child of two folders, in memory, with the config that keeps parent
    a's scaling (see :func:`trainer.evolve.write_crossover_folder`)."""
    from trainer.evolve import crossover, crossover_config, read_adapter_state

    state_a, config_a = read_adapter_state(dir_a)
    state_b, config_b = read_adapter_state(dir_b)
    config, scalings = crossover_config(config_a, config_b)
    child = crossover(state_a, state_b, float(weights[0]), float(weights[1]), **scalings)
    return child, config


def _with_rank(config: dict, rank: int) -> dict:
    """``config`` with LoRA rank ``rank`` and alpha rescaled so the scaling is unchanged."""
    from trainer.evolve import alpha_for_scaling

    return {
        **config,
        "r": rank,
        "lora_alpha": alpha_for_scaling(config, lora_scaling(config), rank),
    }
