"""The probes beyond the game's prior: Big-Five traits and custom probes (``probe:``).

Asked with the same batched per-row-adapter scoring as the prior probe, after every
generation's distillation and once on generation 0's starting adapters (the baseline
every drift is measured from). Stored in ``probes.json`` as ``traits_after`` and
``custom_after`` (generation 0 also ``traits_before`` and ``custom_before``); their
metrics go to ``metrics.jsonl``.
"""

from __future__ import annotations

from typing import Any

from societies import seeding
from societies.custom_probes import custom_probe
from societies.measures.questionnaire import TraitProfile, administer
from societies.records import AgentPrior
from societies.seeding import Stream
from trainer.drift_metrics import drift_records
from trainer.tracking import MetricRecord
from trainer.trait_metrics import trait_records


def wanted(probe_config) -> bool:
    return bool(probe_config.questionnaire or probe_config.custom)


def measure_extras(population, agents, probe_config, root_seed: int) -> dict[str, Any]:
    """``{"traits": {agent: profile}, "custom": {agent: {probe: prior}}}`` as JSON data
    (only the configured ones)."""
    extras: dict[str, Any] = {}
    if population is None or not agents:
        return extras
    if probe_config.questionnaire:
        profiles = administer(population, agents, orders=probe_config.questionnaire_orders)
        extras["traits"] = {a: p.to_dict() for a, p in profiles.items()}
    if probe_config.custom:
        orders = probe_config.orders or max(len(p.options) for p in probe_config.custom)
        answers = custom_probe(
            population,
            agents,
            probe_config.custom,
            orders,
            seeding.rng(root_seed, Stream.PROBE, "custom"),
        )
        extras["custom"] = {
            a: {name: prior.to_dict() for name, prior in by_probe.items()}
            for a, by_probe in answers.items()
        }
    return extras


def extra_records(
    generation: int, after: dict[str, Any], baseline: dict[str, Any]
) -> list[MetricRecord]:
    """Trait scores (phase ``traits_after``; generation 0 also ``traits_before``) and each
    custom probe's drift from generation 0's baseline (prefix ``custom_<name>``)."""
    records: list[MetricRecord] = []
    if "traits" in after:
        profiles = {a: TraitProfile.from_dict(p) for a, p in after["traits"].items()}
        records += trait_records(generation, profiles, phase="traits_after")
        if generation == 0 and "traits" in baseline:
            start = {a: TraitProfile.from_dict(p) for a, p in baseline["traits"].items()}
            records += trait_records(generation, start, phase="traits_before")
    if "custom" in after:
        names = sorted({name for by_probe in after["custom"].values() for name in by_probe})
        for name in names:
            now = {a: AgentPrior.from_dict(p[name]) for a, p in after["custom"].items()}
            start = {
                a: AgentPrior.from_dict(p[name])
                for a, p in baseline.get("custom", {}).items()
                if name in p
            }
            records += drift_records(generation, now, start, None, prefix=f"custom_{name}")
    return records
