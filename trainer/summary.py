"""A generation's headline numbers and the end-of-run table."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from societies.metrics import check_tie

# 2: game-agnostic fields plus the game's own metrics under game_metrics (games protocol).
# 3: majority_tied; a tie at the top has no majority_option (2 broke it alphabetically).
SUMMARY_SCHEMA_VERSION = 3
# Versions read_summary accepts: a schema-2 file reads with majority_tied empty and its
# majority_option as written (possibly the alphabetical first of a tie).
READABLE_SUMMARY_VERSIONS = (2, 3)

# The columns each game adds to the end-of-run table: (header, game_metrics key, format).
# The naming game's convergence is Ashery et al.'s (2025): the round that completes 3N
# successful interactions in a row (societies.metrics.convergence_round). `folkways
# compare` and the baselines judge consensus instead (trainer.run_outcome); the header
# names the rule so the two are not read as one.
GAME_COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "naming_game": [
        ("success (last rounds)", "success_rate_last", "pct"),
        ("converged (3N streak)", "convergence_round", "round"),
    ],
    # baseline run directories (trainer/baseline_run_dir.py)
    "minimal_naming_game": [
        ("success (last rounds)", "success_rate_last", "pct"),
        ("peak words", "peak_words", "num"),
    ],
    "donor_game": [
        ("donated (mean share)", "mean_donation_fraction", "pct"),
        ("final resources (mean)", "mean_final_resources", "num"),
        ("Gini", "gini_final_resources", "num"),
    ],
}


@dataclass(frozen=True)
class GenerationSummary:
    """What a researcher reads first about one generation.

    Attributes:
        game: the game's name; ``game_metrics`` holds its own numbers (naming game:
            success rates, convergence round; donor game: donations, final resources).
        majority_option / majority_share: the option chosen most in the last ``window``
            rounds and its share of the choices there.
        majority_tied: the options tied at the top of the window instead (sorted; empty
            when one option leads). A tie has no majority option: ``majority_option`` is
            None, ``majority_share`` the share each tied option holds.
        prior_on_majority_before / _after: mean empty-history prior mass on the majority
            option, for the adapters the generation started with and after distillation
            (LLM agents only; NaN when every seat is scripted or there is no majority
            option).
        prior_entropy_before / _after: mean prior entropy in bits.
        option_mass_mean: mean model probability mass on the options (LLM decisions).
        distilled / carried_over: how many agents were trained / kept their adapter.
        scripted: how many seats scripted policies held.
    """

    generation: int
    game: str
    rounds: int
    window: int
    majority_option: str | None
    majority_share: float
    prior_on_majority_before: float
    prior_on_majority_after: float
    prior_entropy_before: float
    prior_entropy_after: float
    option_mass_mean: float
    distilled: int
    carried_over: int
    scripted: int = 0
    game_metrics: dict[str, Any] = field(default_factory=dict)
    majority_tied: list[str] = field(default_factory=list)
    schema_version: int = SUMMARY_SCHEMA_VERSION

    def __post_init__(self) -> None:
        check_tie(self.majority_option, self.majority_tied, f"generation {self.generation}")

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON: a headline number without a value (NaN here) is ``None``."""
        return {k: None if _is_nan(v) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationSummary:
        """Reads ``null`` (and NaN, which files before strict JSON hold) as NaN; a
        schema-2 summary (no ``majority_tied``) reads with no tie."""
        floats = {f.name for f in fields(cls) if f.type == "float"}
        return cls(**{k: math.nan if k in floats and v is None else v for k, v in data.items()})

    def majority_cell(self) -> str:
        """``"A (60%)"``, or ``"tie A=B (45%)"`` when options tied at the top (the share
        each holds)."""
        label = majority_label(self.majority_option, self.majority_tied)
        return f"{label} ({_pct(self.majority_share)})"


def majority_label(option: str | None, tied: list[str] | tuple[str, ...] = ()) -> str:
    """The majority option as tables print it: ``"A"``, ``"tie A=B"`` (options tied at
    the top), or ``"-"`` (no choices)."""
    if tied:
        return "tie " + "=".join(tied)
    return "-" if option is None else option


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def format_table(summaries: list[GenerationSummary]) -> str:
    """A plain-text table, one row per generation, with the game's own columns."""
    extra = GAME_COLUMNS.get(summaries[0].game, []) if summaries else []
    header = (
        "gen",
        *(h for h, _, _ in extra[:1]),
        "majority (share)",
        *(h for h, _, _ in extra[1:]),
        "prior on majority: before -> after",
        "prior entropy (bits)",
    )
    rows = []
    for s in summaries:
        cells = [_cell(s, key, kind) for _, key, kind in extra]
        if cells and extra[0][2] == "pct" and extra[0][1] == "success_rate_last":
            cells[0] += f" (last {s.window} of {s.rounds})"
        rows.append(
            (
                str(s.generation),
                *cells[:1],
                s.majority_cell(),
                *cells[1:],
                f"{_num3(s.prior_on_majority_before)} -> {_num3(s.prior_on_majority_after)}",
                f"{s.prior_entropy_before:.2f} -> {s.prior_entropy_after:.2f}",
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


def completion_line(s: GenerationSummary) -> str:
    """The loop's log line for a complete generation: its majority and the prior on it,
    or the options tied at the top (no majority, so no prior on one)."""
    window = f"of the last {s.window} rounds"
    if s.majority_tied:
        return (
            f"generation {s.generation} complete: {majority_label(None, s.majority_tied)} "
            f"({_pct(s.majority_share)} each {window}): no majority, so no prior on it"
        )
    return (
        f"generation {s.generation} complete: majority {majority_label(s.majority_option)} "
        f"({_pct(s.majority_share)} {window}), prior on it "
        f"{_num3(s.prior_on_majority_before)} -> {_num3(s.prior_on_majority_after)}"
    )


def _cell(s: GenerationSummary, key: str, kind: str) -> str:
    value = s.game_metrics.get(key)
    if kind == "pct":
        return _pct(value)
    if kind == "round":
        return "-" if value is None else f"round {value}"
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}"


def _num3(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.0f}%"
