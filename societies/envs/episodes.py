"""What the game environments share: which episode a reset starts, and action checks."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def next_episode(
    root_seed: int | None, generation: int, seed: int | None, options: Mapping[str, Any] | None
) -> tuple[int, int]:
    """``(root_seed, generation)`` of the episode a ``reset`` starts.

    ``reset(seed=s)`` plays generation 0 of root seed ``s`` (the LLM society's seed
    streams); an unseeded reset plays the next generation of the same root seed (the
    first draws a random root seed); ``options={"generation": g}`` picks generation g.
    Other option keys are ignored (PettingZoo's conformance test passes its own).
    """
    chosen = (options or {}).get("generation")
    if seed is not None:
        root_seed, generation = int(seed), 0
    elif root_seed is None:
        root_seed, generation = secrets.randbits(63), 0
    else:
        generation += 1
    if chosen is not None:
        if not isinstance(chosen, int) or chosen < 0:
            raise ValueError(f"options['generation']={chosen!r}; expected an int >= 0")
        generation = chosen
    return root_seed, generation


def action_index(
    actions: Mapping[str, Any], agent: str, labels: Sequence[str], missing: str
) -> int:
    """``agent``'s action: an integer index into ``labels``; ``missing`` says why it is
    required when absent."""
    if agent not in actions:
        raise KeyError(f"no action for {agent!r}, {missing}")
    value = actions[agent]
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not (0 <= value < len(labels))
    ):
        raise ValueError(
            f"action {value!r} of {agent!r}; expected an integer index 0..{len(labels) - 1} "
            f"into {list(labels)}"
        )
    return int(value)
