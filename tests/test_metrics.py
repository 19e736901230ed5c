"""Metrics on hand-made transcripts: payoffs, success, convergence, majority, entropy."""

from __future__ import annotations

import math

import pytest

from societies.metrics import (
    convergence_round,
    entropy_bits,
    interactions,
    majority,
    success_rate,
    success_rate_by_round,
)
from societies.records import Decision, Message

NAMES = ("A", "B", "C")


def pair(round_, index, a_action, b_action, a="x", b="y"):
    """Both decisions of one interaction, with the naming game's payoffs."""

    def one(agent, partner, mine, theirs):
        return Decision(
            run="r",
            generation=0,
            round=round_,
            pair=index,
            agent=agent,
            partner=partner,
            game="naming_game",
            messages=(Message("user", "pick"),),
            options=NAMES,
            option_probs=(0.5, 0.25, 0.25),
            option_mass=0.1,
            action=mine,
            partner_action=theirs,
            payoff=100.0 if mine == theirs else -50.0,
        )

    return [one(a, b, a_action, b_action), one(b, a, b_action, a_action)]


def test_success_and_payoffs_from_transcripts():
    ds = pair(0, 0, "A", "A") + pair(0, 1, "A", "B", "u", "v") + pair(1, 0, "C", "C")
    assert [d.payoff for d in ds] == [100, 100, -50, -50, 100, 100]
    assert len(interactions(ds)) == 3
    assert success_rate(ds) == pytest.approx(2 / 3)
    assert success_rate_by_round(ds) == {0: 0.5, 1: 1.0}


def test_convergence_needs_an_unbroken_streak():
    ds = []
    # round 0: success, fail; rounds 1-3: two successes each
    ds += pair(0, 0, "A", "A") + pair(0, 1, "A", "B")
    for r in (1, 2, 3):
        ds += pair(r, 0, "B", "B") + pair(r, 1, "B", "B")
    assert convergence_round(ds, streak=6) == 3  # the streak restarts after round 0's failure
    assert convergence_round(ds, streak=7) is None
    assert convergence_round(ds, streak=1) == 0
    with pytest.raises(ValueError):
        convergence_round(ds, streak=0)


def test_majority_counts_every_decision():
    ds = pair(0, 0, "A", "B") + pair(0, 1, "B", "B") + pair(1, 0, "C", "B")
    assert majority(ds) == ("B", pytest.approx(4 / 6))
    assert majority([]) == (None, pytest.approx(float("nan"), nan_ok=True))


def test_entropy_analytic_values():
    assert entropy_bits([0.25] * 4) == pytest.approx(2.0)
    assert entropy_bits({"A": 1.0, "B": 0.0}) == 0.0
    assert entropy_bits([0.5, 0.25, 0.25]) == pytest.approx(1.5)
    assert entropy_bits([0.9, 0.1]) == pytest.approx(-(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1)))


def test_records_round_trip_and_validate():
    d = pair(2, 1, "A", "C")[0]
    assert Decision.from_dict(d.to_dict()) == d
    assert d.prob_of("A") == 0.5 and not d.success
    bad = d.to_dict() | {"schema_version": 99}
    with pytest.raises(ValueError, match="schema_version=99"):
        Decision.from_dict(bad)
    with pytest.raises(ValueError, match="not one of"):
        Decision(
            **(
                d.to_dict()
                | {
                    "messages": d.messages,
                    "options": NAMES,
                    "option_probs": (1, 0, 0),
                    "action": "Z",
                }
            )
        )
