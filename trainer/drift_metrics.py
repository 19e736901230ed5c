"""Drift of the agents' priors as metric records (phase "drift"; issue 9).

The measures are :mod:`societies.measures.drift`; this module only names them and turns
them into :class:`MetricRecord` s. All values are in bits except ``*_on_majority``.
"""

from __future__ import annotations

from collections.abc import Mapping

from societies.measures.drift import DRIFT_SMOOTHING, drift
from societies.records import AgentPrior
from trainer.tracking import MetricRecord

DRIFT_PHASE = "drift"


def drift_records(
    generation: int,
    priors_now: Mapping[str, AgentPrior],
    priors_gen0: Mapping[str, AgentPrior],
    majority_option: str | None,
    *,
    prefix: str = "prior",
    smoothing: float = DRIFT_SMOOTHING,
) -> list[MetricRecord]:
    """Per-agent and population drift of ``priors_now`` from ``priors_gen0``.

    Args:
        generation: the generation the records belong to.
        priors_now: agent -> prior this generation (e.g. the after-distillation probe).
        priors_gen0: agent -> prior at the reference (generation 0's before probe).
        majority_option: the community's majority option; None skips the ``on_majority``
            records.
        prefix: leads every name, so several probes (the game's prior, a custom probe)
            can be tracked side by side.
        smoothing: KL smoothing eps (:mod:`societies.measures.drift`).

    Returns:
        per agent ``{prefix}_kl_from_gen0_bits``, ``_js_from_gen0_bits`` (agents with a
        gen-0 prior), ``_kl_from_mean_bits``, ``_js_from_mean_bits``; per population
        ``{prefix}_diversity_js_bits`` (2+ agents), ``_mean_entropy_bits``,
        ``_mean_on_majority``, ``_mean_js_from_gen0_bits``, ``_js_mean_from_gen0_mean_bits``.
    """
    result = drift(
        {a: p.probs for a, p in priors_now.items()},
        {a: p.probs for a, p in priors_gen0.items()},
        majority_option,
        smoothing,
    )
    records: list[MetricRecord] = []

    def add(name: str, value: float | None, agent: str | None = None) -> None:
        if value is not None:
            records.append(MetricRecord(generation, f"{prefix}_{name}", value, DRIFT_PHASE, agent))

    for a in result.agents:
        add("kl_from_gen0_bits", a.kl_from_start, a.agent)
        add("js_from_gen0_bits", a.js_from_start, a.agent)
        add("kl_from_mean_bits", a.kl_from_mean, a.agent)
        add("js_from_mean_bits", a.js_from_mean, a.agent)
    add("diversity_js_bits", result.diversity_js)
    add("mean_entropy_bits", result.mean_entropy_bits)
    add("mean_on_majority", result.mean_on_majority)
    add("mean_js_from_gen0_bits", result.mean_js_from_start)
    add("js_mean_from_gen0_mean_bits", result.mean_js_of_means)
    return records
