"""From a generation's records to its metrics and summary (pure: no model, no I/O)."""

from __future__ import annotations

from societies.metrics import (
    convergence_round,
    entropy_bits,
    majority,
    success_rate,
    success_rate_by_round,
)
from societies.records import AgentPrior, Decision
from trainer.distill_sft import DistillOutcome
from trainer.summary import GenerationSummary
from trainer.tracking import MetricRecord


def measure_generation(
    g: int,
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

    The majority name is the most chosen name in the last ``window`` rounds; convergence
    is 3N successful interactions in a row (Ashery et al. 2025).
    """
    window_start = rounds - window
    last = [d for d in decisions if d.round >= window_start]
    name, share = majority(last)
    records: list[MetricRecord] = []
    for r, rate in success_rate_by_round(decisions).items():
        records.append(MetricRecord(g, "success_rate", rate, "rollout", round=r))
    conv = convergence_round(decisions, streak=3 * population_size)
    records += [
        MetricRecord(g, "success_rate_last", success_rate(last), "rollout"),
        MetricRecord(g, "majority_share", share, "rollout"),
        MetricRecord(g, "convergence_round", float("nan") if conv is None else conv, "rollout"),
        MetricRecord(g, "option_mass_mean", _mean(d.option_mass for d in decisions), "rollout"),
    ]
    for phase, priors in (("probe_before", before), ("probe_after", after)):
        for agent, prior in priors.items():
            records.append(
                MetricRecord(g, "prior_entropy_bits", entropy_bits(prior.probs), phase, agent=agent)
            )
            records.append(
                MetricRecord(g, "prior_on_majority", prior.probs.get(name, 0.0), phase, agent=agent)
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
        rounds=rounds,
        window=window,
        success_rate=success_rate(decisions),
        success_rate_last=success_rate(last),
        majority_name=name,
        majority_share=share,
        convergence_round=conv,
        prior_on_majority_before=_mean(p.probs.get(name, 0.0) for p in before.values()),
        prior_on_majority_after=_mean(p.probs.get(name, 0.0) for p in after.values()),
        prior_entropy_before=_mean(entropy_bits(p.probs) for p in before.values()),
        prior_entropy_after=_mean(entropy_bits(p.probs) for p in after.values()),
        option_mass_mean=_mean(d.option_mass for d in decisions),
        distilled=sum(o.operation == "sft" for o in outcomes),
        carried_over=sum(o.operation == "carried_over" for o in outcomes),
    )
    return summary, records


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")
