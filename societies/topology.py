"""Who meets whom: interaction graphs and the pairs they yield each round."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import numpy as np


class Topology(str, Enum):
    COMPLETE = "complete"


def sample_pairs(
    topology: Topology, agents: Sequence[str], num_pairs: int, rng: np.random.Generator
) -> list[tuple[str, str]]:
    """``num_pairs`` disjoint pairs for one round.

    On the complete graph every agent can meet every other (Ashery et al. 2025: a random
    pair each interaction); disjoint pairs let a round's interactions run in one batch.
    """
    topology = Topology(topology)
    if not 1 <= num_pairs <= len(agents) // 2:
        raise ValueError(
            f"num_pairs={num_pairs}; expected 1..{len(agents) // 2} for {len(agents)} agents"
        )
    if topology is Topology.COMPLETE:
        order = rng.permutation(len(agents))
        return [(agents[order[2 * i]], agents[order[2 * i + 1]]) for i in range(num_pairs)]
    raise NotImplementedError(topology)  # pragma: no cover - the enum is closed
