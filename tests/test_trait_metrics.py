"""Trait profiles as metric records: names, phase, population mean and spread."""

from __future__ import annotations

import pytest

from societies.measures.questionnaire import TraitProfile
from trainer.trait_metrics import trait_records


def profile(agent: str, extraversion: float, mass: float) -> TraitProfile:
    return TraitProfile(
        agent, "ipip_big_five_50", {"extraversion": extraversion}, {"1": extraversion}, mass, 5
    )


def test_trait_records_per_agent_and_population():
    records = trait_records(2, {"b": profile("b", 4.0, 0.5), "a": profile("a", 2.0, 0.25)})
    values = {(r.name, r.agent): r.value for r in records}
    assert values == {
        ("trait_extraversion", "a"): 2.0,
        ("trait_option_mass", "a"): 0.25,
        ("trait_extraversion", "b"): 4.0,
        ("trait_option_mass", "b"): 0.5,
        ("trait_extraversion_mean", None): 3.0,
        ("trait_extraversion_std", None): pytest.approx(1.0),
    }
    assert {(r.generation, r.phase) for r in records} == {(2, "traits")}
    assert [r.agent for r in records[:2]] == ["a", "a"]  # agents in sorted order
