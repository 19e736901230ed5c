"""Donor game rules, schedule, payoffs, trace text and metrics (Vallinder & Hughes 2024)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from societies.games.donor_game import (
    DEFAULT_FRACTIONS,
    ActionKind,
    Choice,
    DonationEvent,
    DonorAction,
    DonorGame,
    DonorGameRules,
    DonorView,
    Pairing,
    fixed_fraction,
    fraction_label,
    game_schedule,
    gini,
    history_text,
    max_rounds,
    mean_fraction_by_round,
    nearest_level,
    parse_fraction_label,
    reciprocator,
    resource_stats,
    total_welfare,
)
from societies.records import SchemaError

GAME = DonorGame(DonorGameRules())
PUNISH = DonorGame(DonorGameRules(punishment=True))
AGENTS = [f"agent_{i:02d}" for i in range(12)]


def give(donor: str, recipient: str, fraction: float) -> DonorAction:
    return DonorAction(donor, recipient, Choice(fraction))


def punish(donor: str, recipient: str, fraction: float) -> DonorAction:
    return DonorAction(donor, recipient, Choice(fraction, ActionKind.PUNISH))


def event(round_, donor, recipient, fraction, held, kind=ActionKind.DONATE, change=None):
    amount = fraction * held
    if change is None:
        change = 2.0 * amount if kind is ActionKind.DONATE else -2.0 * amount
    return DonationEvent(round_, donor, recipient, kind, fraction, amount, held, change)


def play(game, agents, seed, policy):
    """Play one game with a scripted policy; returns final resources and all events."""
    rules = game.rules
    resources = dict.fromkeys(agents, rules.endowment)
    events: list[DonationEvent] = []
    schedule = game_schedule(agents, rules.rounds, np.random.default_rng(seed))
    for r, pairings in enumerate(schedule):
        past = tuple(events)
        actions = [
            DonorAction(
                p.donor,
                p.recipient,
                policy(
                    DonorView(
                        p.donor, p.recipient, r, resources[p.donor], resources[p.recipient], past
                    )
                ),
            )
            for p in pairings
        ]
        outcome = game.resolve_round(r, resources, actions)
        resources = outcome.resources
        events += outcome.events
    return resources, events


# ---- rules and labels -----------------------------------------------------------------


def test_default_rules_are_the_papers():
    r = DonorGameRules()
    assert (r.endowment, r.multiplier, r.rounds, r.history_hops) == (10.0, 2.0, 12, 3)
    assert (r.punishment, r.punishment_cost_ratio) == (False, 2.0)
    assert r.fractions == DEFAULT_FRACTIONS and len(r.fractions) == 11


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"endowment": 0.0}, r"endowment=0\.0; expected a finite number > 0"),
        ({"multiplier": -1.0}, r"multiplier=-1\.0"),
        ({"fractions": (0.0, 1.5)}, r"fractions=\(0\.0, 1\.5\); expected >= 2 shares"),
        ({"fractions": (0.5, 0.0)}, r"expected distinct shares in increasing order"),
        ({"fractions": (0.5, 0.5, 1.0)}, r"expected distinct shares in increasing order"),
        ({"fractions": (0.1, 0.1000000001)}, r"round to the same percentage label"),
        ({"history_hops": -1}, r"history_hops=-1; expected an integer >= 0"),
        ({"punishment_cost_ratio": float("nan")}, r"punishment_cost_ratio=nan"),
        ({"rounds": 0}, r"rounds=0; expected an integer >= 1"),
        ({"rounds": 2.5}, r"rounds=2\.5; expected an integer >= 1"),
    ],
)
def test_rules_reject_bad_values_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DonorGameRules(**kwargs)


def test_fraction_labels_round_trip_exactly():
    labels = [fraction_label(f) for f in DEFAULT_FRACTIONS]
    assert labels == ["0%", "10%", "20%", "30%", "40%", "50%", "60%", "70%", "80%", "90%", "100%"]
    assert [parse_fraction_label(x) for x in labels] == list(DEFAULT_FRACTIONS)
    assert fraction_label(0.125) == "12.5%" and parse_fraction_label(" 12.5% ") == 0.125
    for bad in ("30", "abc%", "120%", "-5%"):
        with pytest.raises(ValueError, match=repr(bad)):
            parse_fraction_label(bad)
    with pytest.raises(ValueError, match="fraction=1.5"):
        fraction_label(1.5)


def test_options_and_parse_option():
    assert GAME.options == tuple(fraction_label(f) for f in DEFAULT_FRACTIONS)
    assert PUNISH.options[11:] == tuple(f"punish {p}%" for p in range(10, 101, 10))
    assert "punish 0%" not in PUNISH.options and len(PUNISH.options) == 21
    assert PUNISH.rules.parse_option("punish 30%") == Choice(0.3, ActionKind.PUNISH)
    assert GAME.rules.parse_option("30%") == Choice(0.3)
    with pytest.raises(ValueError, match="'punish 30%' is not one of"):
        GAME.rules.parse_option("punish 30%")
    shuffled = {GAME.shuffled_options(np.random.default_rng(i)) for i in range(10)}
    assert all(sorted(o) == sorted(GAME.options) for o in shuffled) and len(shuffled) == 10


# ---- payoffs --------------------------------------------------------------------------


def test_gifts_are_multiplied_and_resolved_from_start_of_round_resources():
    start = {"a": 10.0, "b": 10.0, "c": 20.0, "d": 5.0, "e": 7.0}
    new, payoffs = GAME.apply_round(start, [give("a", "b", 0.5), give("c", "d", 0.25)])
    assert new == {"a": 5.0, "b": 20.0, "c": 15.0, "d": 15.0, "e": 7.0}
    assert payoffs == {"a": -5.0, "b": 10.0, "c": -5.0, "d": 10.0, "e": 0.0}
    assert start["a"] == 10.0  # input untouched
    # every unit given is worth m units: welfare grows by (m - 1) * given
    assert total_welfare(new) - total_welfare(start) == (2.0 - 1.0) * (5.0 + 5.0)


def test_round_events_record_amounts():
    outcome = GAME.resolve_round(4, {"a": 8.0, "b": 1.0}, [give("a", "b", 0.75)])
    assert outcome.events == (DonationEvent(4, "a", "b", ActionKind.DONATE, 0.75, 6.0, 8.0, 12.0),)
    assert outcome.resources == {"a": 2.0, "b": 13.0}


def test_bad_rounds_are_rejected():
    start = {"a": 10.0, "b": 10.0, "c": 10.0}
    with pytest.raises(ValueError, match="'b' is in more than one action"):
        GAME.apply_round(start, [give("a", "b", 0.5), give("b", "c", 0.5)])
    with pytest.raises(ValueError, match="'z' in .* has no resources entry"):
        GAME.apply_round(start, [give("a", "z", 0.5)])
    with pytest.raises(ValueError, match="punishment off"):
        GAME.apply_round(start, [punish("a", "b", 0.5)])
    with pytest.raises(ValueError, match="not finite and >= 0"):
        GAME.apply_round({"a": -1.0, "b": 1.0}, [])
    with pytest.raises(ValueError, match="both donor and recipient"):
        give("a", "a", 0.5)


def test_punishment_spends_x_to_remove_ratio_x_not_below_zero():
    start = {"a": 10.0, "b": 10.0, "c": 10.0, "d": 3.0, "e": 4.0, "f": 0.0}
    actions = [punish("a", "b", 0.25), punish("c", "d", 0.5), punish("e", "f", 1.0)]
    outcome = PUNISH.resolve_round(0, start, actions)
    # a spends 2.5, b loses 2 * 2.5; c spends 5 but d only had 3; e spends all on f at 0
    assert outcome.resources == {"a": 7.5, "b": 5.0, "c": 5.0, "d": 0.0, "e": 0.0, "f": 0.0}
    assert outcome.payoffs == {"a": -2.5, "b": -5.0, "c": -5.0, "d": -3.0, "e": -4.0, "f": 0.0}
    assert [e.recipient_change for e in outcome.events] == [-5.0, -3.0, 0.0]
    assert math.copysign(1.0, outcome.events[2].recipient_change) == 1.0  # not -0.0
    ratio3 = DonorGame(DonorGameRules(punishment=True, punishment_cost_ratio=3.0))
    assert ratio3.apply_round({"a": 8.0, "b": 20.0}, [punish("a", "b", 0.5)])[0] == {
        "a": 4.0,
        "b": 8.0,
    }


# ---- schedule -------------------------------------------------------------------------


def test_schedule_alternates_roles_and_never_repeats_a_pair():
    schedule = game_schedule(AGENTS, 12, np.random.default_rng(7))
    assert len(schedule) == 12
    for pairings in schedule:
        assert len(pairings) == 6
        assert sorted(a for p in pairings for a in p) == sorted(AGENTS)  # everyone exactly once
    for before, after in itertools.pairwise(schedule):
        assert {p.donor for p in before} == {p.recipient for p in after}
    pairs = [p for pairings in schedule for p in pairings]
    assert len(set(pairs)) == len(pairs) == 72
    # with N = R = 12 every agent gives exactly once to each agent of the other half
    half_a = {p.donor for p in schedule[0]}
    for donor in AGENTS:
        others = set(AGENTS) - half_a if donor in half_a else half_a
        assert {p.recipient for p in pairs if p.donor == donor} == others


def test_schedule_is_seeded_and_prefix_stable():
    a = game_schedule(AGENTS, 12, np.random.default_rng(3))
    assert a == game_schedule(AGENTS, 12, np.random.default_rng(3))
    assert a != game_schedule(AGENTS, 12, np.random.default_rng(4))
    assert game_schedule(AGENTS, 5, np.random.default_rng(3)) == a[:5]
    assert game_schedule(["x", "y"], 2, np.random.default_rng(0)) in (
        ((Pairing("x", "y"),), (Pairing("y", "x"),)),
        ((Pairing("y", "x"),), (Pairing("x", "y"),)),
    )


def test_schedule_errors():
    assert max_rounds(12) == 12
    with pytest.raises(ValueError, match=r"rounds=13 cannot be scheduled for 12 agents.*1\.\.12"):
        game_schedule(AGENTS, 13, np.random.default_rng(0))
    with pytest.raises(ValueError, match="even number >= 2 of agents, got 3"):
        game_schedule(["a", "b", "c"], 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="distinct"):
        game_schedule(["a", "a"], 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="rounds=0"):
        game_schedule(["a", "b"], 0, np.random.default_rng(0))


# ---- trace text -----------------------------------------------------------------------

TRACE = [
    event(0, "B", "Z", 0.2, 10.0),  # B's older gift: superseded by round 2
    event(0, "D", "E", 1.0, 10.0),
    event(1, "C", "D", 0.0, 10.0),
    event(1, "D", "G", 0.3, 10.0),  # D in round 1: not before C's gift to D in round 1
    event(2, "B", "C", 0.5, 20.0),
    event(2, "C", "F", 0.9, 10.0),  # C in round 2: not before B's gift to C in round 2
]


def test_history_text_follows_the_trace_three_hops():
    assert history_text("B", TRACE, hops=3) == (
        "In round 3, B gave 50% of its 20 units (10 units) to C.\n"
        "Before that, in round 2, C gave 0% of its 10 units (0 units) to D.\n"
        "Before that, in round 1, D gave 100% of its 10 units (10 units) to E."
    )
    assert (
        history_text("B", TRACE, hops=1)
        == "In round 3, B gave 50% of its 20 units (10 units) to C."
    )
    assert history_text("C", TRACE, hops=3) == (
        "In round 3, C gave 90% of its 10 units (9 units) to F.\n"
        "F had not been a donor before round 3."
    )


def test_history_text_empty_punishment_and_no_hops():
    assert history_text("Q", TRACE) == "Q has not been a donor yet."
    assert history_text("B", TRACE, hops=0) == "You are told nothing about what B has done before."
    punished = [event(1, "B", "C", 0.25, 13.0, ActionKind.PUNISH)]
    assert history_text("B", punished) == (
        "In round 2, B spent 25% of its 13 units (3.25 units) to punish C, "
        "who lost 6.5 units.\nC had not been a donor before round 2."
    )


def test_donation_event_round_trips_through_json():
    e = TRACE[-2]
    data = json.loads(json.dumps(e.to_dict()))
    assert data["kind"] == "donate" and DonationEvent.from_dict(data) == e
    with pytest.raises(SchemaError, match="unknown fields"):
        DonationEvent.from_dict({**data, "oops": 1})


# ---- prompts --------------------------------------------------------------------------


def test_prompt_states_rules_resources_trace_and_options_in_given_order():
    order = GAME.shuffled_options(np.random.default_rng(1))
    view = DonorView("A", "B", 3, 12.5, 20.0, tuple(TRACE))
    system, user = GAME.prompt(view, order)
    assert system.role == "system" and user.role == "user"
    text = user.content
    assert "starts with 10 units" in text and "receives 2 times the amount given" in text
    assert "total resources" in text and "This is round 4 of 12." in text
    assert "You are A, the donor; your recipient is B." in text
    assert "You have 12.5 units; B has 20 units." in text
    assert history_text("B", TRACE, 3) in text
    assert "Options: " + ", ".join(order) + "." in text
    assert text.endswith("Answer with the option only.") and "punish" not in text
    with pytest.raises(ValueError, match="not a permutation"):
        GAME.prompt(view, order[:-1])


def test_prompt_with_punishment_and_letter_keys():
    keys = [chr(ord("A") + i) for i in range(len(PUNISH.options))]
    _, user = PUNISH.empty_history_prompt(PUNISH.options, keys=keys)
    text = user.content
    assert "removes 2 units from the recipient" in text
    assert "A: 0%\n" in text and "U: punish 100%\n" in text
    assert "This is round 1 of 12." in text and "You have 10 units; agent_01 has 10 units." in text
    assert "agent_01 has not been a donor yet." in text
    assert text.endswith("Answer with the letter of your option only.")
    with pytest.raises(ValueError, match="distinct keys"):
        PUNISH.empty_history_prompt(PUNISH.options, keys=keys[:-1])


# ---- metrics --------------------------------------------------------------------------


def test_gini_values():
    assert gini([5.0, 5.0, 5.0]) == 0.0 and gini([0.0, 0.0]) == 0.0
    for n in (2, 4, 5, 12):
        assert gini([0.0] * (n - 1) + [7.0]) == pytest.approx((n - 1) / n, abs=1e-15)
    assert gini([1, 2, 3, 4, 5]) == pytest.approx(4 / 15, abs=1e-15)  # sum|xi-xj| = 40
    assert gini([3, 1, 2]) == gini([1, 2, 3])
    with pytest.raises(ValueError, match="finite values >= 0"):
        gini([1.0, -1.0])
    with pytest.raises(ValueError, match="non-empty"):
        gini([])


def test_resource_stats_and_mean_fraction_by_round():
    stats = resource_stats({"a": 0.0, "b": 10.0, "c": 20.0, "d": 30.0})
    assert (stats.mean, stats.min, stats.max, stats.total) == (15.0, 0.0, 30.0, 60.0)
    assert stats.gini == pytest.approx(gini([0, 10, 20, 30]))
    events = [
        event(0, "a", "b", 0.5, 10.0),
        event(0, "c", "d", 1.0, 10.0),
        event(1, "b", "a", 0.4, 10.0, ActionKind.PUNISH),  # gives nothing
        event(1, "d", "c", 0.2, 10.0),
    ]
    assert mean_fraction_by_round(events) == {0: 0.75, 1: 0.1}


# ---- scripted policies ----------------------------------------------------------------


def test_fixed_fraction_ignores_what_it_sees():
    policy = fixed_fraction(0.3)
    assert policy(DonorView("A", "B", 0, 10, 10)) == Choice(0.3)
    assert policy(DonorView("A", "B", 5, 1, 90, tuple(TRACE))) == Choice(0.3)
    with pytest.raises(ValueError, match="fraction=1.2"):
        fixed_fraction(1.2)


def test_reciprocator_mirrors_the_recipients_last_gift():
    policy = reciprocator()
    assert policy(DonorView("A", "Q", 3, 10, 10, tuple(TRACE))) == Choice(1.0)  # no history
    assert reciprocator(default=0.5)(DonorView("A", "Q", 0, 10, 10)) == Choice(0.5)
    assert policy(DonorView("A", "B", 3, 10, 10, tuple(TRACE))) == Choice(0.5)  # latest, not 0.2
    odd = (event(0, "B", "C", 0.37, 10.0),)
    assert policy(DonorView("A", "B", 1, 10, 10, odd)) == Choice(0.4)  # snapped
    punished = (event(0, "B", "C", 0.5, 10.0, ActionKind.PUNISH),)
    assert policy(DonorView("A", "B", 1, 10, 10, punished)) == Choice(0.0)
    assert nearest_level(0.25, (0.0, 0.5, 1.0)) == 0.0  # exact tie: lower level


# ---- closed form ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "rounds", "m"), [(2, 1, 2.0), (6, 5, 2.0), (12, 12, 2.0), (8, 7, 3.0)]
)
def test_everyone_giving_everything_matches_the_closed_form(n, rounds, m):
    """All donors give fraction 1.0: final resources in closed form.

    Every agent in a half holds the same amount at every round (induction: they start
    equal, and in each round every member of the donating half gives everything to a
    distinct member of the receiving half). Let x_k be what each donor holds at the
    start of round k (1-based). Round 1: each donor of half A gives E, so A holds 0 and
    each member of B holds E + mE = (1 + m)E. Round 2: each member of B gives all of it,
    so B holds 0 and each member of A holds 0 + m(1 + m)E. Thereafter a recipient always
    holds 0 when it receives, so after round k the receiving half holds
    m^(k-1) (1 + m) E each and the donating half 0. After R rounds: the half that
    received in round R (B if R is odd, A if R is even) holds m^(R-1) (1 + m) E each,
    the other half 0; total welfare (N/2) m^(R-1) (1 + m) E and Gini 1/2.
    Every step multiplies by m or adds exact binary values, so float64 equality is exact
    for the integer E and m used here.
    """
    agents = [f"agent_{i:02d}" for i in range(n)]
    game = DonorGame(DonorGameRules(multiplier=m, rounds=rounds))
    e = game.rules.endowment
    schedule = game_schedule(agents, rounds, np.random.default_rng(11))
    resources = dict.fromkeys(agents, e)
    for pairings in schedule:
        resources, _ = game.apply_round(
            resources, [give(p.donor, p.recipient, 1.0) for p in pairings]
        )
    holders = {p.recipient for p in schedule[-1]}
    each = m ** (rounds - 1) * (1 + m) * e
    assert resources == {a: (each if a in holders else 0.0) for a in agents}
    assert total_welfare(resources) == n / 2 * each
    assert resource_stats(resources).gini == 0.5
    # the same game driven by scripted policies: always-1.0 and an all-reciprocator society
    # (default 1.0, then everyone mirrors 100%) both reproduce it
    assert play(game, agents, 11, fixed_fraction(1.0))[0] == resources
    final, events = play(game, agents, 11, reciprocator())
    assert final == resources and {e.fraction for e in events} == {1.0}
    assert mean_fraction_by_round(events) == dict.fromkeys(range(rounds), 1.0)
