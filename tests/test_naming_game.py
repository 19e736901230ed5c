"""Naming game rules, prompts and pairing (Ashery et al. 2025)."""

from __future__ import annotations

import numpy as np
import pytest

from societies import seeding
from societies.games.naming_game import Interaction, NamingGame, NamingGameRules, draw_letter_names
from societies.seeding import Stream
from societies.topology import Topology, sample_pairs

GAME = NamingGame(NamingGameRules(names=("A", "B", "C", "D"), memory=2))


def test_payoffs_match_the_paper():
    assert GAME.payoff("A", "A") == 100.0
    assert GAME.payoff("A", "B") == -50.0
    custom = NamingGame(NamingGameRules(names=("X", "Y"), payoff_match=3, payoff_mismatch=-1))
    assert (custom.payoff("Y", "Y"), custom.payoff("X", "Y")) == (3, -1)


def test_prompt_shows_only_the_last_memory_items_and_the_given_order():
    memory = [Interaction("A", "B", -50), Interaction("C", "C", 100), Interaction("D", "A", -50)]
    system, user = GAME.prompt(memory, ("D", "B", "A", "C"))
    assert system.role == "system" and user.role == "user"
    text = user.content
    assert "you picked A" not in text  # memory=2: the oldest is forgotten
    assert text.index("you picked C, your partner picked C: match, +100") < text.index(
        "you picked D, your partner picked A: no match, -50"
    )
    assert "Points over these rounds: +50." in text
    assert "Names: D, B, A, C." in text


def test_empty_memory_prompt_and_bad_options():
    _, user = GAME.prompt([], ("A", "B", "C", "D"))
    assert "not played any rounds yet" in user.content
    with pytest.raises(ValueError, match="not a permutation"):
        GAME.prompt([], ("A", "B", "C"))
    with pytest.raises(ValueError, match="distinct names"):
        NamingGameRules(names=("A", "A"))


def test_shuffled_options_are_permutations_and_vary():
    orders = {GAME.shuffled_options(np.random.default_rng(i)) for i in range(30)}
    assert all(sorted(o) == ["A", "B", "C", "D"] for o in orders)
    assert len(orders) > 10  # 24 possible orders; position bias needs them shuffled


def test_letter_names_are_distinct_and_seeded():
    a = draw_letter_names(10, seeding.rng(0, Stream.NAMES))
    assert len(set(a)) == 10 and all(len(n) == 1 and n.isupper() for n in a)
    assert a == draw_letter_names(10, seeding.rng(0, Stream.NAMES))
    assert a != draw_letter_names(10, seeding.rng(1, Stream.NAMES))


def test_pairs_are_disjoint_and_cover_everyone_over_time():
    agents = [f"a{i}" for i in range(6)]
    met = set()
    for r in range(200):
        pairs = sample_pairs(Topology.COMPLETE, agents, 3, seeding.rng(0, Stream.PAIRING, 0, r))
        flat = [a for p in pairs for a in p]
        assert len(flat) == len(set(flat)) == 6
        met |= {frozenset(p) for p in pairs}
    assert len(met) == 15  # complete graph: all 6*5/2 pairs occur
    with pytest.raises(ValueError, match="expected 1..3"):
        sample_pairs(Topology.COMPLETE, agents, 4, np.random.default_rng(0))


def test_seed_streams_are_independent_and_stable():
    assert seeding.stream_seed(0, Stream.PAIRING, 1, 2) == seeding.stream_seed(
        0, Stream.PAIRING, 1, 2
    )
    assert seeding.stream_seed(0, Stream.PAIRING, 1, 2) != seeding.stream_seed(
        0, Stream.SAMPLING, 1, 2
    )
    assert seeding.stream_seed(0, Stream.PAIRING, 1, 2) != seeding.stream_seed(
        0, Stream.PAIRING, 2, 1
    )
    # Pinned values (blake2b of "root:stream:keys", 8 bytes, >> 1): a change here silently
    # changes every run's randomness, and Python's hash() would differ across processes.
    assert seeding.stream_seed(0, Stream.PAIRING, 0, 0) == 5302548945479253852
    assert seeding.stream_seed(7, Stream.SAMPLING, 3, "agent_01") == 7363653737948012354
    assert seeding.stream_seed(0, "pairing", "0", "0") == 5302548945479253852  # keys as text
