"""Collective metrics computed from transcripts (never from in-memory state)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

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


def check_tie(option: str | None, tied: Sequence[str], where: str) -> None:
    """A tie is 2+ distinct options in sorted order, with no majority option beside it.

    Raises:
        ValueError: naming ``where`` (the record) and both values.
    """
    if tied and (option is not None or len(tied) < 2 or list(tied) != sorted(set(tied))):
        raise ValueError(
            f"{where}: majority option {option!r}, tied {list(tied)!r}; expected no tie, or "
            "2+ distinct options in sorted order with no majority option"
        )


@dataclass(frozen=True)
class Majority:
    """The option chosen most and its share of all choices.

    ``tied``: the options sharing the top count (sorted) when two or more do; then
    there is no majority option (``option`` is None) and ``share`` is the share each
    tied option holds. Never broken by name: an A-B tie is no win for A. No choices at
    all: ``option`` None, ``share`` NaN, ``tied`` empty.
    """

    option: str | None
    share: float
    tied: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_tie(self.option, self.tied, "Majority")

    @classmethod
    def of_counts(cls, counts: Mapping[str, int]) -> Majority:
        """The majority of ``{option: times chosen}``."""
        total = sum(counts.values())
        if not total:
            return cls(None, float("nan"))
        most = max(counts.values())
        top = sorted(o for o, n in counts.items() if n == most)
        if len(top) > 1:
            return cls(None, most / total, tuple(top))
        return cls(top[0], most / total)


def majority(decisions: Iterable[Decision]) -> Majority:
    """The most chosen action of ``decisions`` (a tie at the top is recorded, not broken)."""
    return Majority.of_counts(Counter(d.action for d in decisions))


def entropy_bits(probs: Mapping[str, float] | Sequence[float]) -> float:
    """Shannon entropy in bits of a distribution (zero terms contribute 0)."""
    values = probs.values() if isinstance(probs, Mapping) else probs
    # fsum is exactly rounded, so the result does not depend on the order of the terms.
    return -math.fsum(p * math.log2(p) for p in values if p > 0)
