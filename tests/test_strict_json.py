"""Files a run writes are strict JSON: a measure without a value is never ``NaN``."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from societies.games.naming_game import NamingGame, NamingGameRules
from societies.records import AgentPrior
from tests.test_metrics import pair
from trainer.measure_generation import measure_generation
from trainer.run_dir import RunLayout
from trainer.summary import GenerationSummary, format_table
from trainer.tracking import MetricRecord, read_metrics


def strict_loads(text: str):
    """``json.loads`` that refuses NaN and Infinity, as JSON (RFC 8259) does."""

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def _measure(decisions):
    prior = {"x": AgentPrior("x", {"A": 0.5, "B": 0.5, "C": 0.0}, 0.1, 3)}
    return measure_generation(
        0,
        NamingGame(NamingGameRules(("A", "B", "C"))),
        decisions,
        prior,
        prior,
        [],
        rounds=2,
        window=2,
        population_size=1,
    )


def test_a_measure_without_a_value_has_no_nan_record():
    # 2 rounds: A=A, then B!=A: no streak of 3 successes, so convergence_round is None
    summary, records = _measure(pair(0, 0, "A", "A") + pair(1, 0, "B", "A"))
    assert summary.game_metrics["convergence_round"] is None
    names = [r.name for r in records if r.phase == "rollout" and r.round is None]
    assert "convergence_round" not in names
    by_name = {r.name: r.value for r in records if r.phase == "rollout" and r.round is None}
    assert by_name["success_rate"] == 0.5 and by_name["option_mass_mean"] == pytest.approx(0.1)
    lines = [json.dumps(r.to_dict()) for r in records]
    assert [MetricRecord.from_dict(strict_loads(line)) for line in lines] == records

    # every seat scripted: no option mass was measured
    scripted = [dataclasses.replace(d, policy="always_A") for d in pair(0, 0, "A", "A")]
    summary, records = _measure(scripted)
    assert "option_mass_mean" not in {r.name for r in records}
    assert all(not (isinstance(r.value, float) and r.value != r.value) for r in records)


def test_a_runs_rollout_records_and_summary_are_strict_json(reference):
    layout = RunLayout(reference.run_dir)
    for path in (layout.generation_metrics(0), layout.metrics):
        rollout = [line for line in path.read_text().splitlines() if '"phase": "rollout"' in line]
        parsed = [strict_loads(line) for line in rollout]
        assert parsed and len(parsed) == sum(r.phase == "rollout" for r in read_metrics(path))
    summary = strict_loads(layout.summary(0).read_text())
    values = {
        r.name: r.value
        for r in read_metrics(layout.generation_metrics(0))
        if r.phase == "rollout" and r.round is None
    }
    assert values["success_rate_last"] == summary["game_metrics"]["success_rate_last"]
    assert values["option_mass_mean"] == summary["option_mass_mean"]
    if summary["game_metrics"]["convergence_round"] is None:
        assert "convergence_round" not in values
    else:
        assert values["convergence_round"] == summary["game_metrics"]["convergence_round"]


def test_a_runs_metrics_files_are_strict_json(reference):
    layout = RunLayout(reference.run_dir)
    for path in (layout.generation_metrics(0), layout.metrics):
        [strict_loads(line) for line in path.read_text().splitlines()]


def test_a_summary_without_llm_numbers_round_trips_through_strict_json():
    """A baseline seed's summary (no LLM: no option mass, no priors) wrote NaN."""
    nan = math.nan
    summary = GenerationSummary(
        0, "minimal_naming_game", 11, 10, "w0", 0.75, nan, nan, nan, nan, nan, 0, 0, 6
    )
    data = strict_loads(json.dumps(summary.to_dict()))
    assert data["option_mass_mean"] is None and data["majority_share"] == 0.75
    back = GenerationSummary.from_dict(data)
    assert math.isnan(back.option_mass_mean) and math.isnan(back.prior_entropy_after)
    assert back.majority_share == 0.75 and back.scripted == 6
    # Files written before strict JSON hold NaN: they read the same.
    old = GenerationSummary.from_dict(
        json.loads(json.dumps(summary.to_dict()).replace("null", "NaN"))
    )
    assert math.isnan(old.prior_on_majority_before)
    assert "n/a -> n/a" in format_table([back])
