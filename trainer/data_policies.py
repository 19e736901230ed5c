"""Which generations' data a generation is distilled on.

Training each generation only on the previous generation's outputs is the setting of
model collapse: Shumailov et al. ("AI models collapse when trained on recursively
generated data", Nature 2024) find that replacing the data every generation makes the
error grow and the tails of the distribution vanish, and that keeping a tenth of the
original data slows this a lot; Gerstgrasser et al. ("Is Model Collapse Inevitable?
Breaking the Curse of Recursion by Accumulating Real and Synthetic Data", 2024) show that
accumulating every generation's data instead keeps the error bounded. The three policies
here are those three regimes, over the rows each generation's builder selected (turns,
TRL rows or preference pairs alike).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import TypeVar

import numpy as np

T = TypeVar("T")


class DataPolicy(str, Enum):
    REPLACE = "replace"  # this generation's data only
    ACCUMULATE = "accumulate"  # every generation's data so far
    ANCHOR = "anchor"  # this generation's data plus a fixed share of generation 0's


def policy_rows(
    policy: DataPolicy | str,
    rows_by_generation: Mapping[int, Sequence[T]],
    generation: int,
    anchor_share: float,
    rng_seed: int,
) -> list[T]:
    """The rows ``generation`` is distilled on under ``policy``, older generations first.

    - ``replace``: ``rows_by_generation[generation]``, in order.
    - ``accumulate``: the rows of generations ``0, 1, ..., generation`` concatenated in
      that order (each in its own order); every one of those generations must be a key
      (an empty sequence for a generation that selected nothing).
    - ``anchor``: ``k = min(round(anchor_share * len(current)), len(rows_by_generation[0]))``
      rows of generation 0 (Python's ``round``), drawn without replacement by
      ``numpy.random.default_rng(rng_seed).choice(len(gen0), size=k, replace=False)``,
      kept in generation 0's order, then the current generation's rows. At generation 0
      the anchor is the data itself, so ``anchor`` equals ``replace`` there. Pass a seed
      that differs per generation (``societies.seeding.stream_seed``) to draw a fresh
      anchor subset each generation, the same seed to keep one subset.

    Keys above ``generation`` are ignored (a generation never sees later data).

    Raises:
        ValueError: an unknown policy, ``generation`` < 0, ``anchor_share`` not a finite
            number >= 0, ``rng_seed`` < 0, or a generation the policy needs is missing.
    """
    policy = _policy(policy)
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise ValueError(f"generation={generation!r}; expected an integer >= 0")
    if not (math.isfinite(anchor_share) and anchor_share >= 0):
        raise ValueError(
            f"anchor_share={anchor_share!r}; expected a finite number >= 0 (generation-0 "
            "rows per current row)"
        )
    if isinstance(rng_seed, bool) or not isinstance(rng_seed, int) or rng_seed < 0:
        raise ValueError(f"rng_seed={rng_seed!r}; expected an integer >= 0")

    def rows(g: int) -> list[T]:
        if g not in rows_by_generation:
            raise ValueError(
                f"rows_by_generation has no generation {g} (keys {sorted(rows_by_generation)}); "
                f"policy {policy.value!r} at generation {generation} needs it"
            )
        return list(rows_by_generation[g])

    current = rows(generation)
    if policy is DataPolicy.REPLACE or (policy is DataPolicy.ANCHOR and generation == 0):
        return current
    if policy is DataPolicy.ACCUMULATE:
        return [row for g in range(generation + 1) for row in rows(g)]
    if policy is DataPolicy.ANCHOR:
        origin = rows(0)
        k = min(round(anchor_share * len(current)), len(origin))
        drawn = np.random.default_rng(rng_seed).choice(len(origin), size=k, replace=False)
        return [origin[i] for i in sorted(int(i) for i in drawn)] + current
    raise NotImplementedError(policy)  # pragma: no cover - the enum is closed


def _policy(value: DataPolicy | str) -> DataPolicy:
    try:
        return DataPolicy(value)
    except ValueError:
        accepted = [p.value for p in DataPolicy]
        raise ValueError(f"data policy={value!r}; expected one of {accepted}") from None
