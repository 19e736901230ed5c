"""What each adapter is distilled on: method, selection, scope and data policy, on
hand-made naming-game transcripts of three generations."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from societies.games.naming_game import NamingGame, NamingGameRules
from societies.seeding import Stream, stream_seed
from tests.test_data_builders import naming
from trainer.training_data import COMMUNITY, training_rows

GAME = NamingGame(NamingGameRules(names=("A", "B", "C"), memory=3))


def generation(g: int) -> list:
    """Round 0: x and y match on a name that says the generation; u and v mismatch."""
    name = "ABC"[g]
    other = "ABC"[(g + 1) % 3]
    ds = [
        naming(0, 0, "x", "y", name, name),
        naming(0, 0, "y", "x", name, name),
        naming(0, 1, "u", "v", name, other),
        naming(0, 1, "v", "u", other, name),
    ]
    return [replace(d, generation=g) for d in ds]


TRANSCRIPTS = {g: generation(g) for g in range(3)}


def distill(**kw):
    values = dict(
        method="sft",
        selection="community_successes",
        top_share=0.25,
        data_policy="replace",
        anchor_share=0.5,
        max_examples=16,
    )
    values.update(kw)
    return SimpleNamespace(**values)


def rows_of(agent, g, **kw):
    read = []

    def transcripts(k):
        read.append(k)
        return TRANSCRIPTS[k]

    rows = training_rows(GAME, agent, g, transcripts, distill(**kw), root_seed=7)
    return rows, read


def completions(rows) -> list[str]:
    return [r["completion"][0]["content"] for r in rows.rows]


def test_replace_feeds_generation_2_its_own_successes_only():
    rows, read = rows_of("u", 2)
    assert read == [2] and rows.generations == [2]
    # The community's successes of generation 2: x and y matched on "C".
    assert completions(rows) == ["C", "C"]
    own, _ = rows_of("u", 2, selection="own_successes")
    assert own.rows == [] and own.sha256 == "" and own.generations == []
    mine, _ = rows_of("x", 2, selection="own_successes")
    assert completions(mine) == ["C"] and "x at round 0" in mine.rows[0]["prompt"][1]["content"]


def test_accumulate_feeds_generation_2_every_generation_oldest_first():
    rows, read = rows_of("u", 2, data_policy="accumulate")
    assert read == [0, 1, 2] and rows.generations == [0, 1, 2]
    assert completions(rows) == ["A", "A", "B", "B", "C", "C"]


def test_anchor_feeds_generation_2_its_rows_plus_a_seeded_share_of_generation_0():
    rows, read = rows_of("u", 2, data_policy="anchor", anchor_share=0.5)
    assert read == [0, 2] and rows.generations == [0, 2]
    # k = round(0.5 * 2) = 1 generation-0 row, drawn by the ANCHOR stream, then gen 2's.
    drawn = np.random.default_rng(stream_seed(7, Stream.ANCHOR, 2, "u")).choice(2, 1, False)
    gen0 = [r["prompt"][1]["content"] for r in rows_of("u", 0)[0].rows]
    assert completions(rows) == ["A", "C", "C"]
    assert rows.rows[0]["prompt"][1]["content"] == gen0[int(drawn[0])]
    # At generation 0 the anchor is the data itself.
    assert rows_of("u", 0, data_policy="anchor")[0].rows == rows_of("u", 0)[0].rows


def test_max_examples_keeps_each_generations_newest_rows():
    rows, _ = rows_of("u", 2, data_policy="accumulate", max_examples=1)
    assert completions(rows) == ["A", "B", "C"]


def test_top_payoff_keeps_the_best_paid_share_of_every_turn():
    rows, _ = rows_of("v", 1, selection="top_payoff", top_share=0.5)
    # 4 turns, keep 2: the two matches (+100), in transcript order; whoever asks.
    assert completions(rows) == ["B", "B"]


def test_dpo_rows_are_own_or_community_pairs_after_mismatches():
    own, _ = rows_of("u", 1, method="dpo", selection="own_successes")
    # u said B, v said C: u's pair prefers C to B on u's prompt; v's the other way round.
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in own.rows] == [
        ("C", "B")
    ]
    assert "u at round 0" in own.rows[0]["prompt"][1]["content"]
    assert rows_of("x", 1, method="dpo", selection="own_successes")[0].rows == []
    everyone, _ = rows_of(COMMUNITY, 1, method="dpo")
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in everyone.rows] == [
        ("C", "B"),
        ("B", "C"),
    ]


def test_the_community_adapter_learns_the_union_of_everyones_rows_once():
    union, _ = rows_of(COMMUNITY, 1, selection="own_successes")
    assert completions(union) == ["B", "B"]  # x's and y's own successes, each once
    assert union.rows == rows_of(COMMUNITY, 1)[0].rows


def test_the_hash_names_the_rows():
    a, _ = rows_of("u", 2)
    b, _ = rows_of("u", 2, data_policy="accumulate")
    assert len(a.sha256) == 64 and a.sha256 != b.sha256
    assert a.sha256 == rows_of("x", 2)[0].sha256  # community successes: the same rows


@pytest.mark.parametrize("policy", ["keep", ""])
def test_an_unknown_policy_is_named(policy):
    with pytest.raises(ValueError, match=repr(policy)):
        rows_of("u", 1, data_policy=policy)
