"""Collective metrics computed from transcripts (never from in-memory state)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from societies.records import Decision


def interactions(decisions: Iterable[Decision]) -> list[Decision]:
    """One decision per interaction (the first seat), ordered by (round, pair)."""
    seen: dict[tuple[int, int, int], Decision] = {}
    for d in decisions:
        seen.setdefault((d.generation, d.round, d.pair), d)
    return [seen[k] for k in sorted(seen)]


def success_rate(decisions: Iterable[Decision]) -> float:
    """Fraction of interactions in which both agents named the same item."""
    played = interactions(decisions)
    if not played:
        return float("nan")
    return sum(d.success for d in played) / len(played)


def success_rate_by_round(decisions: Iterable[Decision]) -> dict[int, float]:
    by_round: dict[int, list[Decision]] = {}
    for d in decisions:
        by_round.setdefault(d.round, []).append(d)
    return {r: success_rate(ds) for r, ds in sorted(by_round.items())}


def convergence_round(decisions: Iterable[Decision], streak: int) -> int | None:
    """The round in which ``streak`` consecutive successful interactions were first reached.

    Ashery et al. (2025) call a population converged after 3N successes in a row; pass
    ``streak=3 * N``. Interactions are taken in (round, pair) order. None if never.
    """
    if streak < 1:
        raise ValueError(f"streak={streak}; expected >= 1")
    run = 0
    for d in interactions(decisions):
        run = run + 1 if d.success else 0
        if run >= streak:
            return d.round
    return None


def majority(decisions: Iterable[Decision]) -> tuple[str | None, float]:
    """The most chosen action and its share of all choices (ties: alphabetical first)."""
    counts = Counter(d.action for d in decisions)
    total = sum(counts.values())
    if not total:
        return None, float("nan")
    name, count = min(counts.items(), key=lambda item: (-item[1], item[0]))
    return name, count / total


def entropy_bits(probs: Mapping[str, float] | Sequence[float]) -> float:
    """Shannon entropy in bits of a distribution (zero terms contribute 0)."""
    values = probs.values() if isinstance(probs, Mapping) else probs
    # fsum is exactly rounded, so the result does not depend on the order of the terms.
    return -math.fsum(p * math.log2(p) for p in values if p > 0)
