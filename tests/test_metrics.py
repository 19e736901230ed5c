"""Metrics on hand-made transcripts: payoffs, success, convergence, majority, entropy."""

from __future__ import annotations

import json
import math

import pytest

from societies.metrics import (
    Majority,
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
    assert majority(ds) == Majority("B", pytest.approx(4 / 6))
    none = majority([])
    assert none.option is None and math.isnan(none.share) and none.tied == ()


def test_a_tie_at_the_top_is_no_majority_whatever_the_names():
    # C 3, A 3, B 2 of 8: A and C share the top; neither is the majority (A is not
    # preferred for coming first in the alphabet)
    ds = pair(0, 0, "C", "A") + pair(0, 1, "C", "A") + pair(1, 0, "C", "B") + pair(1, 1, "A", "B")
    assert majority(ds) == Majority(None, 3 / 8, ("A", "C"))
    assert Majority.of_counts({"B": 2, "C": 2, "A": 2}) == Majority(None, 1 / 3, ("A", "B", "C"))
    assert Majority.of_counts({"B": 2, "A": 1}) == Majority("B", 2 / 3)
    for bad in (("A", "B"), ("C",), ("C", "A")):
        with pytest.raises(ValueError, match="^Majority: majority option .*, tied \\["):
            Majority(None if bad != ("A", "B") else "A", 0.5, bad)


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


def test_entropy_does_not_depend_on_the_order_of_the_options():
    """A resumed run reads priors back in another order; its entropies must be identical.

    With a plain left-to-right sum these two orders differ in the last bit.
    """
    probs = [0.14038782176329279, 0.09312747041723095, 0.16613468282055846, 0.10396975032995584]
    probs += [0.1012862319986396, 0.07670175782835059, 0.10278062548233921, 0.06634454501799474]
    probs += [0.09922367086594618, 0.05004344347569169]
    assert -sum(p * math.log2(p) for p in probs) != -sum(p * math.log2(p) for p in sorted(probs))
    assert entropy_bits(probs) == entropy_bits(sorted(probs)) == entropy_bits(probs[::-1])


def test_a_prior_keeps_one_option_order_however_it_was_made():
    from societies.records import AgentPrior

    made = AgentPrior("a", {"K": 0.2, "B": 0.5, "Z": 0.3}, 0.1, 3)
    read = AgentPrior.from_dict(json.loads(json.dumps(made.to_dict(), sort_keys=True)))
    assert list(made.probs) == list(read.probs) == ["B", "K", "Z"]
