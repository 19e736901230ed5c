"""Questionnaire trait scores as metric records (issue 9).

The scores come from :func:`societies.measures.questionnaire.administer`; this module
only names them: per agent ``trait_<trait>`` (mean keyed item score, 1..5 on the IPIP
scale) and ``trait_option_mass``, per population ``trait_<trait>_mean`` and
``trait_<trait>_std`` (population standard deviation: how far the agents differ).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from societies.measures.questionnaire import TraitProfile
from trainer.tracking import MetricRecord

TRAITS_PHASE = "traits"


def trait_records(
    generation: int, profiles: Mapping[str, TraitProfile], phase: str = TRAITS_PHASE
) -> list[MetricRecord]:
    """Per-agent and population trait records of one generation's profiles."""
    records = []
    for agent, profile in sorted(profiles.items()):
        for trait, value in profile.traits.items():
            records.append(MetricRecord(generation, f"trait_{trait}", value, phase, agent))
        records.append(
            MetricRecord(generation, "trait_option_mass", profile.option_mass, phase, agent)
        )
    traits = sorted({t for p in profiles.values() for t in p.traits})
    for trait in traits:
        values = [p.traits[trait] for p in profiles.values() if trait in p.traits]
        mean = math.fsum(values) / len(values)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
        records.append(MetricRecord(generation, f"trait_{trait}_mean", mean, phase))
        records.append(MetricRecord(generation, f"trait_{trait}_std", std, phase))
    return records
