"""Dataset builders and data policies on hand-made transcripts: which turns, which pairs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from societies.games import debate
from societies.games.debate import DebateRules
from societies.games.debate_society import DebateSocietyGame
from societies.games.donor_game import DonorGameRules
from societies.games.donor_society import DonorSocietyGame
from societies.records import Decision, Message
from trainer.data_builders import (
    PreferencePair,
    debate_pairs,
    donor_pairs,
    naming_pairs,
    top_payoff_turns,
)
from trainer.data_policies import DataPolicy, policy_rows

NAMES = ("A", "B", "C")


def prompt(agent: str, round_: int) -> tuple[Message, ...]:
    """A prompt that says whose it is, so a test can tell which context a pair is on."""
    return (Message("system", "rules"), Message("user", f"{agent} at round {round_}"))


def naming(round_, index, agent, partner, mine, theirs, options=NAMES):
    return Decision(
        run="r",
        generation=0,
        round=round_,
        pair=index,
        agent=agent,
        partner=partner,
        game="naming_game",
        messages=prompt(agent, round_),
        options=options,
        option_probs=tuple(1 / len(options) for _ in options),
        option_mass=0.5,
        action=mine,
        partner_action=theirs,
        payoff=100.0 if mine == theirs else -50.0,
    )


def pair(round_, index, a_action, b_action, a="x", b="y"):
    """Both decisions of one naming-game interaction (as in tests/test_metrics.py)."""
    return [
        naming(round_, index, a, b, a_action, b_action),
        naming(round_, index, b, a, b_action, a_action),
    ]


def naming_transcript() -> list[Decision]:
    """r0: x/y match on A; u/v mismatch (A, B). r1: x says C, y says B, but x's prompt
    only offered A and C, so y's name is not among x's options."""
    return (
        pair(0, 0, "A", "A")
        + pair(0, 1, "A", "B", "u", "v")
        + [
            naming(1, 0, "x", "y", "C", "B", options=("A", "C")),
            naming(1, 0, "y", "x", "B", "C"),
        ]
    )


def debate_decision(round_, question, agent, text) -> Decision:
    answer = debate.parse_answer(text)
    return Decision(
        run="r",
        generation=0,
        round=round_,
        pair=question,
        agent=agent,
        partner=None,
        game="debate",
        messages=prompt(agent, round_),
        options=(),
        option_probs=(),
        option_mass=0.0,
        action="" if answer is None else str(answer),
        partner_action=None,
        payoff=0.0,
        role="debater",
        scoring="generate",
        text=text,
        valid=answer is not None,
    )


def ids(decisions):
    return [(d.round, d.pair, d.agent) for d in decisions]


# ---- top_payoff_turns ----------------------------------------------------------------------


def test_top_payoff_turns_keeps_the_best_and_breaks_ties_by_transcript_order():
    ds = naming_transcript()  # payoffs: 100, 100, then four -50s
    # 6 turns * 0.5 = 3: both matches, then the earliest -50 (round 0, pair 1, u).
    assert ids(top_payoff_turns(ds, 0.5)) == [(0, 0, "x"), (0, 0, "y"), (0, 1, "u")]
    # The input order does not matter; the output is in transcript order.
    assert ids(top_payoff_turns(ds[::-1], 0.5)) == [(0, 0, "x"), (0, 0, "y"), (0, 1, "u")]
    assert ids(top_payoff_turns(ds, 0.25)) == [(0, 0, "x"), (0, 0, "y")]  # round(1.5) = 2
    assert ids(top_payoff_turns(ds, 0.01)) == [(0, 0, "x")]  # at least one turn
    assert ids(top_payoff_turns(ds, 1.0)) == ids(ds)
    assert top_payoff_turns([], 0.5) == []


def test_top_payoff_turns_never_keeps_an_invalid_reply_and_rounds_halves_to_even():
    def reply(agent, payoff, valid=True):
        text = "The answer is 5." if valid else "??"
        return replace(debate_decision(1, 0, agent, text), payoff=payoff)

    ds = [reply("a", 1.0), reply("b", 0.0), reply("c", 9.0, valid=False), reply("d", 1.0)]
    ds += [reply("e", 0.0), reply("f", 0.0)]
    # Five valid turns * 0.5 = 2.5, rounded to 2; the invalid reply's payoff is ignored.
    assert ids(top_payoff_turns(ds, 0.5)) == [(1, 0, "a"), (1, 0, "d")]
    assert ids(top_payoff_turns(ds, 1.0)) == [(1, 0, a) for a in "abdef"]


@pytest.mark.parametrize("share", [0, -0.1, 1.5, float("nan")])
def test_top_payoff_turns_rejects_a_bad_share(share):
    with pytest.raises(ValueError, match=r"share=.*expected a share in \(0, 1\]"):
        top_payoff_turns(naming_transcript(), share)


# ---- PreferencePair ------------------------------------------------------------------------


def test_a_pair_in_trl_conversational_format():
    p = PreferencePair(prompt("u", 0), chosen="B", rejected="A", source="naming_game: here")
    assert p.to_trl() == {
        "prompt": [
            {"role": "system", "content": "rules"},
            {"role": "user", "content": "u at round 0"},
        ],
        "chosen": [{"role": "assistant", "content": "B"}],
        "rejected": [{"role": "assistant", "content": "A"}],
    }
    with pytest.raises(ValueError, match="chosen == rejected == 'A'"):
        PreferencePair(prompt("u", 0), chosen="A", rejected="A", source="s")
    with pytest.raises(ValueError, match="expected a non-empty tuple of Message"):
        PreferencePair((), chosen="A", rejected="B", source="s")


# ---- naming game pairs ---------------------------------------------------------------------


def test_naming_pairs_prefer_the_partners_name_after_a_mismatch():
    pairs, skipped = naming_pairs(naming_transcript()[::-1])
    # The match (r0 p0) gives nothing and is not counted; x at r1 was not offered y's
    # name B, so that mismatch is skipped and counted.
    assert skipped == 1
    assert [(p.prompt, p.chosen, p.rejected, p.source) for p in pairs] == [
        (prompt("u", 0), "B", "A", "naming_game: prompt g0/r0/p1/u"),
        (prompt("v", 0), "A", "B", "naming_game: prompt g0/r0/p1/v"),
        (prompt("y", 1), "C", "B", "naming_game: prompt g0/r1/p0/y"),
    ]
    assert naming_pairs(pair(0, 0, "A", "A")) == ([], 0)


def test_a_builder_refuses_another_games_decisions():
    with pytest.raises(ValueError, match=r"naming_pairs builds from 'naming_game'.*\['debate'\]"):
        naming_pairs([debate_decision(1, 0, "a", "The answer is 5.")])


# ---- donor game pairs ----------------------------------------------------------------------

LEVELS = ("0%", "50%", "100%")


def donation(round_, index, donor, recipient, given):
    return Decision(
        run="r",
        generation=0,
        round=round_,
        pair=index,
        agent=donor,
        partner=recipient,
        game="donor_game",
        messages=prompt(donor, round_),
        options=LEVELS,
        option_probs=(1 / 3, 1 / 3, 1 / 3),
        option_mass=1.0,
        action=given,
        partner_action=None,
        payoff=0.0,  # unused: the builder ranks by replayed final resources
        role="donor",
    )


def donor_game(multiplier=2.0):
    return DonorSocietyGame(DonorGameRules(fractions=(0.0, 0.5, 1.0), multiplier=multiplier))


def test_donor_pairs_prefer_what_the_richer_donor_of_a_round_gave():
    """Endowment 10, gifts doubled.

    r0: a gives d 100% (a 0, d 30); b gives e 0%; c gives f 100% (c 0, f 30).
    r1: d gives b 50% (d 15, b 40); e gives c 100% (e 0, c 20); f gives a 0%.
    Final: a 0, b 40, c 20, d 15, e 0, f 30.
    """
    ds = [
        donation(0, 0, "a", "d", "100%"),
        donation(0, 1, "b", "e", "0%"),
        donation(0, 2, "c", "f", "100%"),
        donation(1, 0, "d", "b", "50%"),
        donation(1, 1, "e", "c", "100%"),
        donation(1, 2, "f", "a", "0%"),
    ]
    game = donor_game()
    final = game.replay(list("abcdef"), ds).resources
    assert final == {"a": 0.0, "b": 40.0, "c": 20.0, "d": 15.0, "e": 0.0, "f": 30.0}

    pairs, skipped = donor_pairs(ds[::-1], game)
    assert [(p.prompt, p.chosen, p.rejected, p.source) for p in pairs] == [
        # b (40) over a and c (both 100%, poorer): one pair, naming the first, a.
        (prompt("b", 0), "0%", "100%", "donor_game: prompt g0/r0/p1/b, rejected from g0/r0/p0/a"),
        # d (15) over e (0).
        (prompt("d", 1), "50%", "100%", "donor_game: prompt g0/r1/p0/d, rejected from g0/r1/p1/e"),
        # f (30) over d (15) and e (0), who gave different levels: two pairs.
        (prompt("f", 1), "0%", "50%", "donor_game: prompt g0/r1/p2/f, rejected from g0/r1/p0/d"),
        (prompt("f", 1), "0%", "100%", "donor_game: prompt g0/r1/p2/f, rejected from g0/r1/p1/e"),
    ]
    # a and e are the poorest of their rounds; c's only poorer donor (a) gave what c gave.
    assert skipped == 3


def test_donors_that_end_equal_give_no_pair():
    """Gifts not multiplied: a gives c 100% (a 0, c 20), b gives d 0%; then c gives a 50%
    (c 10, a 10), d gives b 0%. Everyone ends with 10, so nobody is richer."""
    ds = [
        donation(0, 0, "a", "c", "100%"),
        donation(0, 1, "b", "d", "0%"),
        donation(1, 0, "c", "a", "50%"),
        donation(1, 1, "d", "b", "0%"),
    ]
    game = donor_game(multiplier=1.0)
    assert set(game.replay(list("abcd"), ds).resources.values()) == {10.0}
    assert donor_pairs(ds, game) == ([], 4)


def test_donor_pairs_replay_each_generation_on_its_own():
    """The same round played in generations 0 and 1: resources restart at the endowment."""
    g0 = [donation(0, 0, "a", "c", "100%"), donation(0, 1, "b", "d", "0%")]
    g1 = [replace(d, generation=1) for d in g0]
    pairs, skipped = donor_pairs(g0 + g1, donor_game())
    # Per generation: b (10) over a (0). Replayed as one game, round 0 would hold two
    # actions by a, which the donor game's rules refuse.
    assert [p.source for p in pairs] == [
        "donor_game: prompt g0/r0/p1/b, rejected from g0/r0/p0/a",
        "donor_game: prompt g1/r0/p1/b, rejected from g1/r0/p0/a",
    ]
    assert skipped == 2


# ---- debate pairs --------------------------------------------------------------------------


def test_debate_pairs_prefer_the_final_majority_on_the_dissenters_prompt():
    game = DebateSocietyGame(DebateRules(rounds_per_question=1), root_seed=0)
    assert game.steps == 2  # question q: rounds 2q (first answers) and 2q + 1 (final)
    five, so_five, seven = "The answer is 5.", "So 5. The answer is 5.", "The answer is 7."
    three, unsure = "The answer is 3.", "I don't know"
    finals = {
        # q0: 5, 5, 7: the majority is 5; c dissents; two distinct majority texts.
        0: [("a", five), ("b", so_five), ("c", seven)],
        # q1: 3, invalid, 3 (same text twice): b's invalid reply is rejected, once.
        1: [("a", three), ("b", unsure), ("c", three)],
        # q2: 4, 6, invalid: a tie at the top, no strict majority: skipped.
        2: [("a", "The answer is 4."), ("b", "The answer is 6."), ("c", unsure)],
        # q3: everyone agrees: skipped.  q4: nothing parses: skipped.
        3: [(a, "The answer is 8.") for a in "abc"],
        4: [(a, "no idea") for a in "abc"],
    }
    ds = []
    for q, replies in finals.items():
        # First answers disagree with the finals; only the final round counts.
        ds += [
            debate_decision(2 * q, q, a, seven if text != seven else five) for a, text in replies
        ]
        ds += [debate_decision(2 * q + 1, q, a, text) for a, text in replies]
    ds.append(debate_decision(10, 5, "a", five))  # q5 has no final round yet: not counted

    pairs, skipped = debate_pairs(ds[::-1], game)
    assert [(p.prompt, p.chosen, p.rejected, p.source) for p in pairs] == [
        (prompt("c", 1), five, seven, "debate: prompt g0/r1/p0/c, chosen from g0/r1/p0/a"),
        (prompt("c", 1), so_five, seven, "debate: prompt g0/r1/p0/c, chosen from g0/r1/p0/b"),
        (prompt("b", 3), three, unsure, "debate: prompt g0/r3/p1/b, chosen from g0/r3/p1/a"),
    ]
    assert skipped == 3
    # majority_answer breaks q2's tie by smallest |value| (to 4); the builder skips q2
    # rather than prefer 4 to 6 on that ground.
    assert debate.majority_answer([4, 6, None]) == 4


# ---- data policies -------------------------------------------------------------------------

ROWS = {
    0: ["a0", "b0", "c0", "d0", "e0"],
    1: ["a1", "b1"],
    2: ["a2", "b2", "c2", "d2"],
    3: ["a3"],  # a later generation: never fed to generation 2
}


def test_what_each_policy_feeds_generation_2():
    assert policy_rows(DataPolicy.REPLACE, ROWS, 2, 0.5, 5) == ["a2", "b2", "c2", "d2"]
    assert policy_rows("accumulate", ROWS, 2, 0.5, 5) == [
        "a0", "b0", "c0", "d0", "e0", "a1", "b1", "a2", "b2", "c2", "d2",
    ]  # fmt: skip
    # Anchor: round(0.5 * 4) = 2 rows of generation 0, drawn with seed 5, kept in
    # generation 0's order, before generation 2's rows.
    drawn = np.random.default_rng(5).choice(5, size=2, replace=False)
    assert drawn.tolist() == [4, 2]  # the draw's order is not the rows' order
    assert policy_rows(DataPolicy.ANCHOR, ROWS, 2, 0.5, 5) == [
        "c0", "e0", "a2", "b2", "c2", "d2",
    ]  # fmt: skip
    assert (
        policy_rows(DataPolicy.ANCHOR, ROWS, 2, 0.5, 5)
        == [ROWS[0][i] for i in sorted(drawn)] + ROWS[2]
    )


def test_anchor_edge_cases():
    # More than generation 0 holds: capped at all of it, in order.
    assert policy_rows("anchor", ROWS, 2, 3.0, 5) == ROWS[0] + ROWS[2]
    assert policy_rows("anchor", ROWS, 2, 0.0, 5) == ROWS[2]
    # round(0.1 * 4) = 0 rows: a small share of a small generation adds nothing.
    assert policy_rows("anchor", ROWS, 2, 0.1, 5) == ROWS[2]
    # At generation 0 the anchor is the data itself.
    assert policy_rows("anchor", ROWS, 0, 0.5, 5) == ROWS[0]
    assert policy_rows("anchor", ROWS, 1, 1.0, 5) == (
        [ROWS[0][i] for i in sorted(np.random.default_rng(5).choice(5, size=2, replace=False))]
        + ROWS[1]
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (("mix", ROWS, 2, 0.5, 5), r"data policy='mix'; expected one of \['replace', 'accumulate', 'anchor'\]"),
        (("replace", ROWS, -1, 0.5, 5), r"generation=-1; expected an integer >= 0"),
        (("anchor", ROWS, 2, -0.1, 5), r"anchor_share=-0.1; expected a finite number >= 0"),
        (("anchor", ROWS, 2, float("nan"), 5), r"anchor_share=nan; expected a finite number >= 0"),
        (("anchor", ROWS, 2, 0.5, -1), r"rng_seed=-1; expected an integer >= 0"),
        (("accumulate", {0: [], 2: []}, 2, 0.5, 5), r"no generation 1 \(keys \[0, 2\]\); policy 'accumulate' at generation 2 needs it"),
        (("anchor", {2: ["a2"]}, 2, 0.5, 5), r"no generation 0 \(keys \[2\]\); policy 'anchor'"),
        (("replace", {0: []}, 1, 0.5, 5), r"no generation 1 \(keys \[0\]\)"),
    ],
)  # fmt: skip
def test_policy_errors_name_the_value_and_what_is_accepted(args, message):
    with pytest.raises(ValueError, match=message):
        policy_rows(*args)
