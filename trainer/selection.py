"""Selection between generations: who survives, whom each replaced seat descends from,
and the seeds of the adapters that refill the seats.

After Vallinder & Hughes (2024): the top fraction of agents by resources survive each
generation and the other seats are given to descendants of the survivors. The weight
operators that make the descendants' adapters are in :mod:`trainer.evolve`; this module
needs no torch, so the config tree can import it cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import numpy as np

from societies.seeding import Stream, stream_seed


class ParentRule(str, Enum):
    """How the replaced seats are shared out among the survivors."""

    ROUND_ROBIN = "round_robin"  # survivors in rank order, best first, cycling: equal shares
    UNIFORM = "uniform"  # each child's parent drawn uniformly from the survivors (drift)


@dataclass(frozen=True)
class Selection:
    """Who survives a generation and whom each replaced seat descends from.

    Attributes:
        ranking: every agent, best first; ties in a seeded random order.
        survivors: the first ``len(survivors)`` of ``ranking``; they keep their seats
            and adapters.
        children: seat of each replaced agent -> the survivor its new adapter comes from.
    """

    ranking: tuple[str, ...]
    survivors: tuple[str, ...]
    children: dict[str, str]


def survivor_count(n_agents: int, survive: float) -> int:
    """``max(1, round(survive · n))`` with halves rounded up (Python's ``round`` takes
    2.5 to 2 but 3.5 to 4, so "top half" of 5 and of 7 would round differently)."""
    return max(1, math.floor(survive * n_agents + 0.5))


def select(
    fitness: Mapping[str, float],
    survive: float,
    seed: int,
    parent_rule: ParentRule | str = ParentRule.ROUND_ROBIN,
) -> Selection:
    """Keep the top ``survive`` fraction by fitness; give every other seat a parent.

    Ties are broken by a seeded shuffle: agents are sorted by name (so the mapping's
    order does not matter), permuted by ``numpy.random.default_rng(seed)``, then sorted
    stably by fitness, highest first. The replaced seats, in that ranking order, get
    parents by ``parent_rule``: ``round_robin`` (default) cycles through the survivors
    best first, so with the top half surviving each survivor has exactly one child;
    ``uniform`` draws each parent from the same generator after the shuffle.

    Args:
        fitness: agent -> fitness (e.g. resources at the end of the generation).
        survive: fraction in (0, 1]; ``survivor_count`` agents survive (at least one).
        seed: the generator's seed; the loop derives one per generation from the run's
            root seed (``societies.seeding.stream_seed``).
    """
    if not fitness:
        raise ValueError("select needs at least one agent's fitness, got none")
    bad = {a: f for a, f in fitness.items() if not math.isfinite(f)}
    if bad:
        raise ValueError(f"fitness must be finite numbers; got {bad}")
    if not 0.0 < survive <= 1.0:
        raise ValueError(f"survive={survive!r}; must be a fraction in (0, 1]")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}; must be a non-negative integer")
    try:
        rule = ParentRule(parent_rule)
    except ValueError:
        raise ValueError(
            f"parent_rule={parent_rule!r}; accepted: {[r.value for r in ParentRule]}"
        ) from None

    rng = np.random.default_rng(int(seed))
    names = sorted(fitness)
    shuffled = [names[i] for i in rng.permutation(len(names))]
    ranking = tuple(sorted(shuffled, key=lambda a: -fitness[a]))  # stable: ties stay shuffled
    count = survivor_count(len(ranking), survive)
    survivors, replaced = ranking[:count], ranking[count:]
    if rule is ParentRule.ROUND_ROBIN:
        parents = [survivors[i % count] for i in range(len(replaced))]
    else:
        parents = [survivors[i] for i in rng.integers(count, size=len(replaced))]
    return Selection(ranking, survivors, dict(zip(replaced, parents, strict=True)))


# ----- seeds the loop uses --------------------------------------------------------------


def immigrant_seed(root_seed: int, generation: int, seat: str) -> int:
    """The ``init_seeds`` entry of a fresh adapter entering ``seat`` in ``generation``.

    Keyed by generation as well as seat: the initial adapters use
    ``stream_seed(root, ADAPTER_INIT, agent)``, and reusing that would make an immigrant
    a copy of its seat's initial adapter (same random A).
    """
    return stream_seed(root_seed, Stream.ADAPTER_INIT, seat, generation)


def mutation_seed(root_seed: int, generation: int, seat: str) -> int:
    """The :func:`trainer.evolve.mutate` seed for the child in ``seat`` in ``generation``."""
    return stream_seed(root_seed, Stream.MUTATION, seat, generation)
