"""From a generation's records to its metrics and summary (pure: no model, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from societies.games.protocol import Game
from societies.metrics import entropy_bits
from societies.records import AgentPrior, Decision
from trainer.distill_sft import DistillOutcome
from trainer.summary import GenerationSummary
from trainer.tracking import MetricRecord


def measure_generation(
    g: int,
    game: Game,
    decisions: list[Decision],
    before: dict[str, AgentPrior],
    after: dict[str, AgentPrior],
    outcomes: list[DistillOutcome],
    *,
    rounds: int,
    window: int,
    population_size: int,
) -> tuple[GenerationSummary, list[MetricRecord]]:
    """The metric records and headline summary of generation ``g``.

    The game measures its rounds and the generation (``Game.round_metrics``,
    ``Game.generation_metrics``); the prior probe is measured against the game's
    majority option in the last ``window`` rounds. Without one (options tied at the top,
    or no choices) there is nothing to measure the priors against: the summary's
    ``prior_on_majority_*`` are NaN and no ``prior_on_majority`` record is written.
    """
    measured = game.generation_metrics(
        decisions, rounds=rounds, window=window, population_size=population_size
    )
    name = measured.majority_option
    values = {**measured.values, **game.probe_metrics(before, after)}
    records: list[MetricRecord] = []
    by_round: dict[int, list[Decision]] = {}
    for d in decisions:
        by_round.setdefault(d.round, []).append(d)
    for r, ds in sorted(by_round.items()):
        for key, value in game.round_metrics(ds).items():
            records.append(MetricRecord(g, key, value, "rollout", round=r))
    llm = [d for d in decisions if not d.scripted]
    option_mass = _mean(d.option_mass for d in llm)
    # metrics.jsonl is strict JSON (no NaN): a measure without a value (convergence_round
    # None: never converged; option mass with every seat scripted) gets no record. The
    # summary's game_metrics keeps it as null.
    for key, value in values.items():
        if isinstance(value, (int, float)) and _has_value(value):
            records.append(MetricRecord(g, key, float(value), "rollout"))
    if _has_value(option_mass):
        records.append(MetricRecord(g, "option_mass_mean", option_mass, "rollout"))
    for phase, priors in (("probe_before", before), ("probe_after", after)):
        for agent, prior in priors.items():
            records.append(
                MetricRecord(g, "prior_entropy_bits", entropy_bits(prior.probs), phase, agent=agent)
            )
            if name is not None:
                records.append(
                    MetricRecord(
                        g, "prior_on_majority", prior.probs.get(name, 0.0), phase, agent=agent
                    )
                )
            records.append(
                MetricRecord(g, "prior_option_mass", prior.option_mass, phase, agent=agent)
            )
    for o in outcomes:
        records.append(MetricRecord(g, "distill_examples", o.examples, "distill", agent=o.agent))
        if o.losses:
            records.append(
                MetricRecord(g, "distill_loss_first", o.losses[0], "distill", agent=o.agent)
            )
            records.append(
                MetricRecord(g, "distill_loss_last", o.losses[-1], "distill", agent=o.agent)
            )
    summary = GenerationSummary(
        generation=g,
        game=game.name,
        rounds=rounds,
        window=window,
        majority_option=name,
        majority_share=measured.majority_share,
        majority_tied=list(measured.majority_tied),
        prior_on_majority_before=_prior_on(name, before),
        prior_on_majority_after=_prior_on(name, after),
        prior_entropy_before=_mean(entropy_bits(p.probs) for p in before.values()),
        prior_entropy_after=_mean(entropy_bits(p.probs) for p in after.values()),
        option_mass_mean=option_mass,
        distilled=sum(o.operation in ("sft", "dpo") for o in outcomes),
        carried_over=sum(o.operation == "carried_over" for o in outcomes),
        scripted=len({d.agent for d in decisions if d.scripted}),
        game_metrics=values,
    )
    return summary, records


def _prior_on(option: str | None, priors: dict[str, AgentPrior]) -> float:
    """Mean prior mass on ``option``; NaN without an option (a tie) or without priors."""
    if option is None:
        return float("nan")
    return _mean(p.probs.get(option, 0.0) for p in priors.values())


def _has_value(x: float) -> bool:
    return not math.isnan(x)


def _mean(values: Sequence[float] | object) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")
