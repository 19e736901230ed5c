"""A generation's headline numbers and the end-of-run table."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

SUMMARY_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class GenerationSummary:
    """What a researcher reads first about one generation.

    Attributes:
        success_rate_last: success rate over the last ``window`` rounds.
        majority_name / majority_share: most chosen name in those rounds and its share.
        convergence_round: first round with 3N successes in a row (None: not reached).
        prior_on_majority_before / _after: mean empty-memory prior mass on the majority
            name, for the adapters the generation started with and after distillation.
        prior_entropy_before / _after: mean prior entropy in bits.
        distilled / carried_over: how many agents were trained / kept their adapter.
    """

    generation: int
    rounds: int
    window: int
    success_rate: float
    success_rate_last: float
    majority_name: str | None
    majority_share: float
    convergence_round: int | None
    prior_on_majority_before: float
    prior_on_majority_after: float
    prior_entropy_before: float
    prior_entropy_after: float
    option_mass_mean: float
    distilled: int
    carried_over: int
    schema_version: int = SUMMARY_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationSummary:
        return cls(**data)


def format_table(summaries: list[GenerationSummary]) -> str:
    """A plain-text table, one row per generation."""
    header = (
        "gen",
        "success (last rounds)",
        "majority (share)",
        "converged",
        "prior on majority: before -> after",
        "prior entropy (bits)",
    )
    rows = []
    for s in summaries:
        rows.append(
            (
                str(s.generation),
                f"{_pct(s.success_rate_last)} (last {s.window} of {s.rounds})",
                f"{s.majority_name} ({_pct(s.majority_share)})",
                "-" if s.convergence_round is None else f"round {s.convergence_round}",
                f"{s.prior_on_majority_before:.3f} -> {s.prior_on_majority_after:.3f}",
                f"{s.prior_entropy_before:.2f} -> {s.prior_entropy_after:.2f}",
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.0f}%"
