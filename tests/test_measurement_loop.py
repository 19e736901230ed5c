"""Drift, Big-Five traits and custom probes in the loop: what lands in metrics.jsonl and
probes.json, checked against the probe distributions the run wrote."""

from __future__ import annotations

import json

import pytest

from societies.measures.drift import js_divergence
from tests.conftest import run_tiny


@pytest.fixture(scope="module")
def measured(tiny_model_path, tmp_path_factory):
    extra = {
        "probe.questionnaire": "true",
        "probe.questionnaire_orders": "reversed",
        "probe.custom": '[{name: fair, prompt: "Is sharing fair? {options}", options: ["yes", "no"]}]',
    }
    return run_tiny(tmp_path_factory.mktemp("measured"), **extra).run_dir


def records(run_dir, **match):
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def test_prior_drift_is_the_js_of_the_written_probes(measured):
    gen0 = json.loads((measured / "generation_000/probes.json").read_text())["before"]
    for g in (0, 1):
        after = json.loads((measured / f"generation_{g:03d}/probes.json").read_text())["after"]
        for agent, prior in after.items():
            (rec,) = records(measured, generation=g, name="prior_js_from_gen0_bits", agent=agent)
            expected = js_divergence(prior["probs"], gen0[agent]["probs"])
            assert rec["value"] == pytest.approx(expected, abs=1e-12)
            assert 0.0 <= rec["value"] <= 1.0
        (diversity,) = records(measured, generation=g, name="prior_diversity_js_bits")
        assert 0.0 <= diversity["value"] <= 1.0


def test_traits_are_measured_before_generation_0_and_after_each_generation(measured):
    probes0 = json.loads((measured / "generation_000/probes.json").read_text())
    assert set(probes0["traits_before"]) == set(probes0["traits_after"]) == set(probes0["after"])
    traits = probes0["traits_after"]["agent_00"]["traits"]
    assert set(traits) == {
        "extraversion",
        "agreeableness",
        "conscientiousness",
        "emotional_stability",
        "intellect_imagination",
    }
    for g, phases in ((0, ("traits_before", "traits_after")), (1, ("traits_after",))):
        for phase in phases:
            rows = records(measured, generation=g, phase=phase, name="trait_extraversion")
            assert len(rows) == 4 and all(1.0 <= r["value"] <= 5.0 for r in rows)
            (mean,) = records(measured, generation=g, phase=phase, name="trait_extraversion_mean")
            assert mean["value"] == pytest.approx(sum(r["value"] for r in rows) / 4)
    assert not records(measured, generation=1, phase="traits_before")


def test_a_custom_probe_is_asked_and_its_drift_recorded(measured):
    probes1 = json.loads((measured / "generation_001/probes.json").read_text())
    baseline = json.loads((measured / "generation_000/probes.json").read_text())["custom_before"]
    for agent, by_probe in probes1["custom_after"].items():
        probs = by_probe["fair"]["probs"]
        assert set(probs) == {"yes", "no"} and sum(probs.values()) == pytest.approx(1.0)
        (rec,) = records(measured, generation=1, name="custom_fair_js_from_gen0_bits", agent=agent)
        assert rec["value"] == pytest.approx(
            js_divergence(probs, baseline[agent]["fair"]["probs"]), abs=1e-12
        )
