"""Influence (transfer entropy on sparse interactions) and partner agreement records,
checked against analytic values on synthetic transcripts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from societies.measures.information import entropy
from societies.records import Decision, Message
from trainer.information_metrics import (
    INFORMATION_PHASE,
    influence,
    influence_samples,
    information_records,
    pair_label,
)

NAMES = ("A", "B", "C", "D")
PROMPT = (Message("user", "Pick a name."),)


def decision(round_: int, pair: int, agent: str, partner: str | None, action: str, other=None):
    return Decision(
        run="synthetic",
        generation=0,
        round=round_,
        pair=pair,
        agent=agent,
        partner=partner,
        game="naming_game",
        messages=PROMPT,
        options=NAMES,
        option_probs=(0.25,) * 4,
        option_mass=1.0,
        action=action,
        partner_action=other,
        payoff=0.0,
    )


def copying_transcript(rounds: int, seed: int = 0) -> list[Decision]:
    """``leader`` picks uniformly at random every round; ``follower`` repeats the leader's
    action of the round before; ``bystander`` picks at random, independently."""
    rng = np.random.default_rng(seed)
    leader = [NAMES[i] for i in rng.integers(0, 4, rounds)]
    bystander = [NAMES[i] for i in rng.integers(0, 4, rounds)]
    out = []
    for r in range(rounds):
        follower = leader[r - 1] if r else "A"
        out += [
            decision(r, 0, "leader", None, leader[r]),
            decision(r, 1, "follower", None, follower),
            decision(r, 2, "bystander", None, bystander[r]),
        ]
    return out


def by_name(records, name):
    return {r.agent: r.value for r in records if r.name == name}


def test_samples_take_the_last_action_of_an_earlier_round_only():
    ds = [
        decision(0, 0, "s", None, "A"),
        decision(0, 1, "t", None, "B"),  # no past yet: no sample
        decision(1, 0, "t", None, "C"),  # source's round-0 action, target's round-0 action
        decision(3, 0, "s", None, "D"),  # simultaneous with the target's round 3: not seen
        decision(3, 1, "t", None, "A"),
    ]
    assert influence_samples(ds, "s", "t") == (["C", "A"], ["A", "A"], ["B", "C"])
    # The source acted in round 3 and round 0; in round 3 only its round-0 action is past.
    assert influence_samples(ds, "t", "s") == (["D"], ["C"], ["A"])


def test_a_follower_gets_the_leaders_entropy_in_that_direction_only():
    ds = copying_transcript(rounds=2000)
    leader_actions = [d.action for d in ds if d.agent == "leader"]
    te = influence(ds, ["leader", "follower", "bystander"])
    h = entropy(leader_actions)
    assert h == pytest.approx(2.0, abs=0.01)
    # Y = X exactly and Z (the leader two rounds back) is independent of X: I(Y;X|Z) = H(X|Z).
    assert te[("leader", "follower")][0] == pytest.approx(h, abs=0.02)
    # The plug-in bias of an independent pair is about (|Y|-1)(|X|-1)|Z| / (2N ln 2) = 0.026 bits.
    assert te[("follower", "leader")][0] < 0.05
    assert te[("bystander", "follower")][0] < 0.05
    assert te[("leader", "bystander")][0] < 0.05
    assert te[("leader", "follower")][1] == 1999  # every round but the first has both pasts


def test_records_name_pairs_and_summaries():
    ds = copying_transcript(rounds=400)
    agents = ["leader", "follower", "bystander"]
    records = information_records(0, ds, agents, seed=0, n_permutations=10)
    assert {r.phase for r in records} == {INFORMATION_PHASE}
    pairs = by_name(records, "influence_te_bits")
    assert set(pairs) == {pair_label(s, t) for s in agents for t in agents if s != t}
    assert by_name(records, "influence_te_mean_bits")[None] == pytest.approx(
        math.fsum(pairs.values()) / 6
    )
    assert by_name(records, "influence_te_max_bits") == {
        "leader->follower": pairs["leader->follower"]
    }
    assert by_name(records, "influence_pairs") == {None: 6.0}
    assert by_name(records, "influence_samples_mean") == {None: 399.0}
    # No partners in this transcript: no partner records.
    assert not by_name(records, "partner_mi_bits")


def interaction_transcript(rounds: int, same: bool, seed: int = 0) -> list[Decision]:
    """One pair per round; the second seat copies the first (``same``) or picks independently."""
    rng = np.random.default_rng(seed)
    out = []
    for r in range(rounds):
        a = NAMES[rng.integers(0, 4)]
        b = a if same else NAMES[rng.integers(0, 4)]
        out += [decision(r, 0, "x", "y", a, b), decision(r, 0, "y", "x", b, a)]
    return out


def test_identical_partners_share_all_their_entropy():
    ds = interaction_transcript(rounds=300, same=True)
    records = information_records(0, ds, ["x", "y"], seed=1, n_permutations=200)
    first_seat = [d.action for d in ds if d.agent == "x"]
    mi = by_name(records, "partner_mi_bits")[None]
    assert mi == pytest.approx(entropy(first_seat), abs=1e-12)
    assert by_name(records, "partner_mi_p")[None] == pytest.approx(1 / 201)  # the floor
    assert by_name(records, "partner_interactions")[None] == 300  # one sample per interaction


def test_independent_partners_have_no_mutual_information():
    ds = interaction_transcript(rounds=2000, same=False)
    records = information_records(0, ds, ["x", "y"], seed=1, n_permutations=200)
    # Plug-in bias (|X|-1)(|Y|-1) / (2N ln 2) = 0.0032 bits.
    assert by_name(records, "partner_mi_bits")[None] < 0.01
    assert by_name(records, "partner_mi_p")[None] > 0.05
    # The same seed gives the same p-value.
    again = information_records(0, ds, ["x", "y"], seed=1, n_permutations=200)
    assert by_name(again, "partner_mi_p") == by_name(records, "partner_mi_p")


def test_pairs_with_too_few_samples_are_left_out():
    ds = [decision(0, 0, "s", None, "A"), decision(1, 0, "t", None, "B")]
    assert information_records(0, ds, ["s", "t"], seed=0) == []


def test_invalid_free_text_decisions_are_left_out():
    ds = interaction_transcript(rounds=50, same=True)
    broken = [Decision(**{**d.__dict__, "valid": False}) if d.round == 0 else d for d in ds]
    records = information_records(0, broken, ["x", "y"], seed=0, n_permutations=5)
    assert by_name(records, "partner_interactions")[None] == 49


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"generation": 1}, "decisions of generations [0] given for generation 1"),
        ({"agents": ["x", "x"]}, "repeats an agent"),
        ({"min_samples": 0}, "min_samples=0; expected an integer >= 1"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    args = {"generation": 0, "decisions": interaction_transcript(3, True), "agents": ["x", "y"]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        information_records(**args, seed=0)
