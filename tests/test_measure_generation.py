"""A generation's summary from hand-made records: every number checked by hand."""

from __future__ import annotations

import pytest

from societies.games.naming_game import NamingGame, NamingGameRules
from societies.records import AgentPrior
from tests.test_metrics import pair
from trainer.distill_sft import DistillOutcome
from trainer.measure_generation import measure_generation


def test_summary_and_records_by_hand():
    # 3 rounds of 2 pairs among agents x, y, u, v; the last 2 rounds are the window.
    decisions = (
        pair(0, 0, "A", "B")
        + pair(0, 1, "C", "C", "u", "v")
        + pair(1, 0, "B", "B")
        + pair(1, 1, "B", "A", "u", "v")
        + pair(2, 0, "B", "B")
        + pair(2, 1, "B", "B", "u", "v")
    )
    before = {
        "x": AgentPrior("x", {"A": 0.5, "B": 0.25, "C": 0.25}, 0.1, 3),
        "y": AgentPrior("y", {"A": 0.25, "B": 0.5, "C": 0.25}, 0.1, 3),
    }
    after = {
        "x": AgentPrior("x", {"A": 0.0, "B": 1.0, "C": 0.0}, 0.2, 3),
        "y": AgentPrior("y", {"A": 0.25, "B": 0.75, "C": 0.0}, 0.2, 3),
    }
    outcomes = [
        DistillOutcome("x", "sft", 4, losses=[2.0, 1.0]),
        DistillOutcome("y", "carried_over", 0),
    ]
    summary, records = measure_generation(
        0,
        NamingGame(NamingGameRules(("A", "B", "C"))),
        decisions,
        before,
        after,
        outcomes,
        rounds=3,
        window=2,
        population_size=1,
    )
    # window = rounds 1-2: actions B,B,B,A,B,B,B,B -> B has 7 of 8
    assert (summary.majority_option, summary.majority_share) == ("B", pytest.approx(7 / 8))
    game = summary.game_metrics
    assert game["majority_name"] == "B" and summary.game == "naming_game"
    assert game["success_rate_last"] == pytest.approx(3 / 4)
    assert game["success_rate"] == pytest.approx(4 / 6)
    # longest success streak: C=C, B=B (then B!=A) and B=B, B=B -> 2 < 3 x population_size
    assert game["convergence_round"] is None
    assert summary.prior_on_majority_before == pytest.approx((0.25 + 0.5) / 2)
    assert summary.prior_on_majority_after == pytest.approx((1.0 + 0.75) / 2)
    assert summary.prior_entropy_before == pytest.approx(1.5)
    assert summary.prior_entropy_after == pytest.approx((0.0 + 0.8112781244591328) / 2)
    assert (summary.distilled, summary.carried_over) == (1, 1)
    by_key = {(r.name, r.phase, r.agent, r.round): r.value for r in records}
    assert by_key[("success_rate", "rollout", None, 0)] == 0.5
    assert by_key[("prior_on_majority", "probe_after", "y", None)] == 0.75
    assert by_key[("distill_loss_last", "distill", "x", None)] == 1.0
    assert ("distill_loss_first", "distill", "y", None) not in by_key
