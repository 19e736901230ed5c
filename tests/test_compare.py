"""folkways compare: the society's convergence under the one definition, and a run of
every method on the tiny model."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.conftest import QUICKSTART
from tests.test_data_builders import naming
from trainer.compare import society_outcome

OPTIONS = ("A", "B", "C")


def decision(round_, agent, partner, probs, action):
    d = naming(round_, 0, agent, partner, action, action)
    return replace(d, options=OPTIONS, option_probs=probs)


def test_society_convergence_is_every_agents_latest_argmax_agreeing_to_the_end():
    leaning_a, leaning_b = (0.6, 0.3, 0.1), (0.2, 0.7, 0.1)
    decisions = [
        decision(0, "x", "y", leaning_a, "A"),
        decision(0, "y", "x", leaning_b, "B"),  # round 0: x wants A, y wants B
        decision(1, "x", "y", leaning_a, "A"),
        decision(1, "y", "x", leaning_a, "A"),  # round 1: both A
        decision(2, "x", "y", leaning_a, "A"),
        decision(2, "y", "x", leaning_a, "A"),
    ]
    at, winner, success, rounds = society_outcome(decisions, ["x", "y"], OPTIONS, window=2)
    assert (at, winner, rounds) == (1, "A", 3)
    assert success == pytest.approx(1.0)  # naming() pays a match when both said the same
    # an agent that has not played yet has no choice: no consensus until it plays
    three = society_outcome(decisions, ["x", "y", "z"], OPTIONS, window=2)
    assert three[:2] == (None, None)
    # consensus lost at the end: never converged
    lost = [*decisions, decision(3, "y", "x", leaning_b, "B")]
    assert society_outcome(lost, ["x", "y"], OPTIONS, window=2)[:2] == (None, None)


def test_compare_runs_every_method_and_writes_its_table(tiny_model_path, tmp_path, capsys):
    from trainer.cli import main

    overrides = [
        "model.name_or_path=tiny-random",
        "population.size=4",
        "game.num_names=3",
        "game.rounds=4",
        "game.pairs_per_round=2",
        "probe.orders=3",
        "distill.backend=batched",
        "distill.epochs=1",
        "distill.max_examples=4",
    ]
    args = ["compare", str(QUICKSTART), *overrides, "--seeds", "2", "--llm-rl-rounds", "6"]
    assert main([*args, "--out", str(tmp_path / "cmp"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [t["method"] for t in summary] == [
        "in_context",
        "distilled",
        "iql",
        "reinforce",
        "llm_rl",
    ]
    assert all(t["seeds"] == 2 for t in summary)
    data = json.loads((tmp_path / "cmp/compare.json").read_text())
    assert len(data["seeds"]) == 10
    for row in data["seeds"]:
        assert (row["winner"] is None) == (row["converged_round"] is None)
    assert (tmp_path / "cmp/compare.png").stat().st_size > 10_000
    assert "| iql | 2 |" in (tmp_path / "cmp/compare.md").read_text()
    assert main([*args[:2], "--methods", "iql,qlearning", "--out", str(tmp_path / "x")]) == 2
