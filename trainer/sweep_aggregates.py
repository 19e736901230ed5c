"""What a sweep's runs say together: consensus, collective bias and the tipping point.

Pure functions of :class:`RunOutcome` records (read from run directories by
``trainer.sweep_outcomes``), one row per grid point × generation:

* **consensus** — the share of seeds whose population converged (the naming game's
  ``convergence_round``: 3N successes in a row, Ashery et al. 2025) and the distribution
  of the convergence round over the converged seeds;
* **collective bias** — how the winning option (the option chosen most in the
  generation's last ``metrics.window`` rounds, alone at the top) is distributed over seeds,
  tested against uniform over each seed's W options, side by side with the individual
  empty-memory prior of generation 0 (the mean over agents and seeds of each option's
  probability): a bias of the collective absent in the individual shows as winners far
  from uniform while the prior is near uniform. A seed whose top share is tied between
  options has no winner: it is counted apart (``ties``), never given to the
  alphabetically first option (as schema-2 ``summary.json``'s ``majority_option`` is;
  schema 3 records the tie as ``majority_tied``). A game
  whose agents reply in free text (debate) has no options competing to win: its bias is
  "not applicable", with the reason (debate's ``majority_option`` is the label
  ``correct`` whatever the accuracy);
* **tipping point** — in a committed-minority sweep over a fraction key, the share of
  seeds whose population ended on the committed option (the sole winner; a tie is no
  flip, whichever options tie), per fraction, and the fitted
  critical fraction (``trainer.sweep_stats.fit_tipping``), per generation and per value
  of the other grid keys.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trainer.sweep_stats import ChiSquareTest, TippingFit, fit_tipping, quartiles, winner_test

AGGREGATE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class GenerationOutcome:
    """One run's generation: its winner and the game's own numbers (summary.json).

    ``window_choices`` counts each option chosen in the summary's window (the last
    ``window`` rounds, from ``transcripts.jsonl``); None when not read, and then the
    summary's ``majority_option`` is taken as the winner, or its ``majority_tied`` as
    the tie (a schema-2 summary records no tie: its ties went A-Z).
    ``free_text``: the agents replied in free text (debate), not by choosing among
    options, so no option won.
    """

    generation: int
    majority_option: str | None
    game_metrics: dict[str, Any] = field(default_factory=dict)
    window_choices: dict[str, int] | None = None
    free_text: bool = False
    majority_tied: tuple[str, ...] = ()

    def winner(self) -> tuple[str | None, tuple[str, ...]]:
        """``(option, ())``: one option was chosen most; ``(None, tied)``: several tied at
        the top (sorted); ``(None, ())``: no choices were made (or free-text replies)."""
        if self.free_text:
            return None, ()
        if self.window_choices is None:
            return (None, self.majority_tied) if self.majority_tied else (self.majority_option, ())
        if not self.window_choices:
            return None, ()
        most = max(self.window_choices.values())
        top = tuple(sorted(o for o, n in self.window_choices.items() if n == most))
        return (top[0], ()) if len(top) == 1 else (None, top)


@dataclass(frozen=True)
class RunOutcome:
    """What the aggregates read of one run of a sweep.

    Attributes:
        run: the run's name (its folder in the experiment directory).
        point: the run's grid values, ``{key: value}``.
        seed: its ``run.seed``.
        options: the game's options in this run (W of them; letter names are drawn
            from the seed, so they may differ between seeds).
        prior: generation 0's empty-memory prior before any distillation, mean over the
            LLM agents, ``{option: probability}``; empty when every seat is scripted.
        generations: the complete generations, in order.
        committed_option: the option a committed minority held (None: no intervention).
    """

    run: str
    point: dict[str, Any]
    seed: int
    options: tuple[str, ...]
    prior: dict[str, float]
    generations: tuple[GenerationOutcome, ...]
    committed_option: str | None = None


@dataclass(frozen=True)
class Consensus:
    """Did the seeds converge, and when (rounds counted from 0 within the generation)."""

    seeds: int
    converged: int
    converged_share: float
    convergence_rounds: list[int | None]  # per seed, None: never converged
    quartiles: tuple[float, float, float] | None  # (q1, median, q3) over converged seeds
    success_rate_last_mean: float | None


@dataclass(frozen=True)
class CollectiveBias:
    """The winners of one generation across seeds, against uniform and the prior.

    ``winner_share``, ``individual_prior`` and ``uniform`` are shares over the seeds
    with a winner (each sums to 1): what won, what the generation-0 agents preferred
    alone, and what winning at random among each seed's options would give. Seeds
    without one are counted apart: ``no_winner`` (no choices made) and ``ties`` (the
    options tied at the top, one entry per tied seed); neither enters the tests.
    ``not_applicable``: why the game has no collective bias (its agents do not choose
    among options), every other field empty; None when it has one.
    """

    winners: dict[str, int]
    no_winner: int
    winner_share: dict[str, float]
    individual_prior: dict[str, float]
    uniform: dict[str, float]
    vs_uniform: ChiSquareTest | None
    vs_individual_prior: ChiSquareTest | None
    ties: list[tuple[str, ...]] = field(default_factory=list)
    not_applicable: str | None = None


# Debate (the one free-text game) records majority_option="correct" whatever its accuracy.
FREE_TEXT_BIAS = (
    "the agents reply in free text (e.g. debate answers), not by choosing among options: "
    "no option competes to win, so there is no collective bias; summary.json's "
    "majority_option {option!r} is a label, not a winner (debate: read accuracy_majority)"
)


def no_bias(reason: str) -> CollectiveBias:
    """The collective bias of a game without competing options: none, and why."""
    return CollectiveBias({}, 0, {}, {}, {}, None, None, [], reason)


@dataclass(frozen=True)
class PointGeneration:
    """One row of the aggregate: a grid point's seeds at one generation."""

    point: dict[str, Any]
    generation: int
    runs: list[str]
    seeds: list[int]
    consensus: Consensus | None  # None: the game reports no convergence round
    bias: CollectiveBias
    flipped_share: float | None = None  # tipping sweeps: seeds on the committed option


@dataclass(frozen=True)
class TippingCurve:
    """The tipping point at one generation, for one value of the other grid keys."""

    key: str
    fixed: dict[str, Any]
    generation: int
    fit: TippingFit


@dataclass(frozen=True)
class SweepAggregate:
    grid_keys: list[str]
    rows: list[PointGeneration]
    tipping_key: str | None = None
    tipping: list[TippingCurve] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)  # runs left out, and why
    schema_version: int = AGGREGATE_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


def json_safe(value: Any) -> Any:
    """JSON-safe: tuples as lists, non-finite floats as None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def point_label(point: dict[str, Any]) -> str:
    """``key=value, ...`` in grid order (``(all)`` for a sweep over seeds only)."""
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in point.items()) or "(all)"


def consensus(generations: Sequence[GenerationOutcome]) -> Consensus | None:
    """Convergence across seeds; None when the game reports no ``convergence_round``."""
    if not any("convergence_round" in g.game_metrics for g in generations):
        return None
    rounds = [g.game_metrics.get("convergence_round") for g in generations]
    done = [r for r in rounds if r is not None]
    success = [
        g.game_metrics["success_rate_last"]
        for g in generations
        if isinstance(g.game_metrics.get("success_rate_last"), (int, float))
    ]
    return Consensus(
        seeds=len(rounds),
        converged=len(done),
        converged_share=len(done) / len(rounds),
        convergence_rounds=rounds,
        quartiles=quartiles(done),
        success_rate_last_mean=float(np.mean(success)) if success else None,
    )


def collective_bias(
    winners: Sequence[str | None],
    options: Sequence[Sequence[str]],
    priors: Sequence[dict[str, float]],
    *,
    tied: Sequence[Sequence[str]] | None = None,
    draws: int = 10_000,
    seed: int = 0,
) -> CollectiveBias:
    """Winners (one per seed) against uniform over each seed's options and its prior.

    Args:
        winners: each seed's winning option (None: a tie, or no choices were made).
        options: each seed's options.
        priors: each seed's mean generation-0 prior (empty: no LLM agents).
        tied: each seed's options tied at the top (empty: none tied); None: no ties.
        draws, seed: Monte Carlo draws of the tests and their seed.
    """
    tied = [tuple(t) for t in tied] if tied is not None else [()] * len(winners)
    if len(tied) != len(winners) or any(
        w is not None and t for w, t in zip(winners, tied, strict=True)
    ):
        raise ValueError("tied: one entry per seed, empty for a seed with a winner")
    ties = [t for t in tied if t]
    kept = [i for i, w in enumerate(winners) if w is not None]
    counts: dict[str, int] = {}
    for i in kept:
        counts[winners[i]] = counts.get(winners[i], 0) + 1
    # a winner outside its seed's options (a free-text game's answer) has no uniform null
    uniforms = [
        {o: 1 / len(options[i]) for o in options[i]} for i in kept if winners[i] in options[i]
    ]
    with_prior = [i for i in kept if winners[i] in priors[i]]
    names = sorted({o for i in kept for o in options[i]} | set(counts))
    n = len(kept)

    def mean_share(dists: list[dict[str, float]]) -> dict[str, float]:
        return {o: sum(d.get(o, 0.0) for d in dists) / len(dists) for o in names} if dists else {}

    return CollectiveBias(
        winners=dict(sorted(counts.items())),
        no_winner=len(winners) - n - len(ties),
        winner_share={o: counts.get(o, 0) / n for o in names} if n else {},
        individual_prior=mean_share([priors[i] for i in with_prior]),
        uniform=mean_share(uniforms),
        vs_uniform=(
            winner_test([winners[i] for i in kept], uniforms, draws=draws, seed=seed)
            if len(uniforms) == n
            else None
        ),
        vs_individual_prior=winner_test(
            [winners[i] for i in with_prior],
            [priors[i] for i in with_prior],
            draws=draws,
            seed=seed,
        ),
        ties=ties,
    )


def flipped(run: RunOutcome, generation: GenerationOutcome) -> bool:
    """Whether the generation's population ended on the run's committed option: it alone
    was chosen most (a tie at the top is no flip, whichever options tie)."""
    winner, _ = generation.winner()
    return run.committed_option is not None and winner == run.committed_option


def aggregate(
    runs: Sequence[RunOutcome],
    grid_keys: Sequence[str],
    *,
    tipping_key: str | None = None,
    draws: int = 10_000,
    seed: int = 0,
) -> SweepAggregate:
    """Rows per grid point × generation, and tipping curves when ``tipping_key`` is set.

    In a tipping sweep a run without a committed option counts as "not flipped" when its
    fraction is 0 (no committed agents: nothing to flip to), and is left out, listed in
    ``excluded``, otherwise (its intervention record is missing).

    Raises:
        ValueError: ``tipping_key`` is not a grid key, or one of its values is not a number.
    """
    grid_keys = list(grid_keys)
    excluded: list[dict[str, str]] = []
    if tipping_key is not None:
        if tipping_key not in grid_keys:
            raise ValueError(
                f"--tipping-key {tipping_key!r} is not a grid key; accepted: "
                + (", ".join(grid_keys) or "none (give it as --grid KEY=f1,f2,...)")
            )
        for run in runs:
            _fraction(run, tipping_key)  # every value a number, or an error now
    points: dict[str, list[RunOutcome]] = {}
    for run in runs:
        points.setdefault(json.dumps(run.point, sort_keys=True), []).append(run)
    rows = []
    for group in points.values():
        group = sorted(group, key=lambda r: r.seed)
        generations = sorted({g.generation for r in group for g in r.generations})
        for gen in generations:
            present = [(r, g) for r in group for g in r.generations if g.generation == gen]
            free = [g for _, g in present if g.free_text]
            share = None
            if tipping_key is not None:
                scored = [flipped(r, g) for r, g in present if _scored(r, tipping_key)]
                share = sum(scored) / len(scored) if scored else None
            rows.append(
                PointGeneration(
                    point=group[0].point,
                    generation=gen,
                    runs=[r.run for r, _ in present],
                    seeds=[r.seed for r, _ in present],
                    consensus=consensus([g for _, g in present]),
                    bias=no_bias(FREE_TEXT_BIAS.format(option=free[0].majority_option))
                    if free
                    else collective_bias(
                        [g.winner()[0] for _, g in present],
                        [r.options for r, _ in present],
                        [r.prior for r, _ in present],
                        tied=[g.winner()[1] for _, g in present],
                        draws=draws,
                        seed=seed,
                    ),
                    flipped_share=share,
                )
            )
    curves = []
    if tipping_key is not None:
        excluded = [
            {
                "run": r.run,
                "reason": f"no committed option recorded at {tipping_key}="
                f"{_fraction(r, tipping_key)} (generation_NNN/interventions.jsonl)",
            }
            for r in runs
            if not _scored(r, tipping_key)
        ]
        curves = tipping_curves([r for r in runs if _scored(r, tipping_key)], tipping_key)
    return SweepAggregate(grid_keys, rows, tipping_key, curves, excluded)


def _fraction(run: RunOutcome, key: str) -> float:
    value = run.point.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"--tipping-key {key}: run {run.run} has {key}={value!r}; expected a number "
            "(the committed fraction)"
        )
    return float(value)


def _scored(run: RunOutcome, key: str) -> bool:
    return run.committed_option is not None or _fraction(run, key) == 0


def tipping_curves(runs: Sequence[RunOutcome], key: str) -> list[TippingCurve]:
    """One fit per generation and value of the grid keys other than ``key``."""
    groups: dict[tuple[str, int], tuple[dict, list[float], list[bool]]] = {}
    for run in runs:
        fixed = {k: v for k, v in run.point.items() if k != key}
        for g in run.generations:
            entry = groups.setdefault(
                (json.dumps(fixed, sort_keys=True), g.generation), (fixed, [], [])
            )
            entry[1].append(_fraction(run, key))
            entry[2].append(flipped(run, g))
    return [
        TippingCurve(key, fixed, generation, fit_tipping(fractions, outcomes))
        for (_, generation), (fixed, fractions, outcomes) in groups.items()
    ]
