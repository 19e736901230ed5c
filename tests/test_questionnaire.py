"""The IPIP Big-Five questionnaire: the data file, Likert scoring, order averaging, a tiny run.

Scoring is checked on hand-made probabilities and on a fake population (no model);
one run through :class:`PopulationModel` on the tiny random Llama checks the real path:
shapes, per-row adapters (batched = one agent at a time) and the letter distributions.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import replace

import pytest
import torch

from societies.choices import OptionScores
from societies.measures.questionnaire import (
    IPIP_BIG_FIVE_50,
    Keying,
    LikertOrders,
    TraitProfile,
    administer,
    anchor_orders,
    expected_level,
    item_prompt,
    keyed_level,
    load_questionnaire,
    questionnaire_questions,
    score_profile,
)
from societies.ordered_questions import OrderedQuestion, ask_ordered, average_over_orders
from societies.population import LoraSpec, PopulationModel, Scoring
from societies.records import SchemaError
from tests.float32 import OPTION_MASS_RTOL, PROB_ATOL_OTHER_BATCH

IPIP = load_questionnaire()
ANCHORS = IPIP.anchors
TRAITS = [
    "extraversion",
    "agreeableness",
    "conscientiousness",
    "emotional_stability",
    "intellect_imagination",
]

# --- the data file ------------------------------------------------------------------------


def test_ipip_file_has_ten_items_per_trait_in_the_standard_cycle():
    assert len(IPIP.items) == 50
    assert [i.number for i in IPIP.items] == list(range(1, 51))
    assert list(IPIP.traits) == TRAITS
    # items are administered cycling E, A, C, ES, I (ipip.ori.org numbering)
    assert [i.trait for i in IPIP.items] == TRAITS * 10
    assert Counter(i.trait for i in IPIP.items) == dict.fromkeys(TRAITS, 10)


def test_ipip_keying_matches_the_published_key():
    plus = Counter(i.trait for i in IPIP.items if i.keyed is Keying.PLUS)
    # the IPIP scoring key: + items per trait (the rest are -)
    assert plus == {
        "extraversion": 5,
        "agreeableness": 6,
        "conscientiousness": 6,
        "emotional_stability": 2,
        "intellect_imagination": 7,
    }
    by_number = {i.number: i for i in IPIP.items}
    spot = {
        1: ("Am the life of the party.", "extraversion", "+"),
        2: ("Feel little concern for others.", "agreeableness", "-"),
        9: ("Am relaxed most of the time.", "emotional_stability", "+"),
        19: ("Seldom feel blue.", "emotional_stability", "+"),
        28: ("Often forget to put things back in their proper place.", "conscientiousness", "-"),
        30: ("Do not have a good imagination.", "intellect_imagination", "-"),
        41: ("Don't mind being the center of attention.", "extraversion", "+"),
        49: ("Often feel blue.", "emotional_stability", "-"),
        50: ("Am full of ideas.", "intellect_imagination", "+"),
    }
    for number, (text, trait, keyed) in spot.items():
        item = by_number[number]
        assert (item.text, item.trait, item.keyed.value) == (text, trait, keyed)


def test_ipip_file_names_its_source_and_licence():
    data = json.loads(IPIP_BIG_FIVE_50.read_text())
    assert "Goldberg" in data["source"] and "1992" in data["source"]
    assert "ipip.ori.org" in data["source"]
    assert data["licence"].startswith("Public domain")
    assert ANCHORS == (
        "Very inaccurate",
        "Moderately inaccurate",
        "Neither accurate nor inaccurate",
        "Moderately accurate",
        "Very accurate",
    )


def test_a_bad_keying_in_a_questionnaire_file_is_named(tmp_path):
    data = json.loads(IPIP_BIG_FIVE_50.read_text())
    data["items"][3]["keyed"] = "R"
    path = tmp_path / "q.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"items\[3\].keyed='R'; accepted: '\+', '-'"):
        load_questionnaire(path)
    data["items"][3]["keyed"] = "-"
    del data["items"][7]["trait"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"items\[7\] lacks \['trait'\]"):
        load_questionnaire(path)
    data["items"][7]["trait"] = "extraversion"
    del data["anchors"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="missing key 'anchors'"):
        load_questionnaire(path)


# --- Likert scoring (pure) ------------------------------------------------------------------


def one_hot(anchor: str) -> dict[str, float]:
    return {a: float(a == anchor) for a in ANCHORS}


def test_expected_level_from_given_probabilities():
    assert expected_level(one_hot("Very inaccurate"), ANCHORS) == 1.0
    assert expected_level(one_hot("Moderately accurate"), ANCHORS) == 4.0
    assert expected_level(dict.fromkeys(ANCHORS, 0.2), ANCHORS) == pytest.approx(3.0)
    probs = dict(zip(ANCHORS, [0.1, 0.2, 0.3, 0.0, 0.4], strict=True))
    # 1*0.1 + 2*0.2 + 3*0.3 + 4*0 + 5*0.4 = 3.4
    assert expected_level(probs, ANCHORS) == pytest.approx(3.4, abs=1e-15)
    with pytest.raises(ValueError, match="expected exactly"):
        expected_level({"Yes": 1.0}, ANCHORS)


def test_reverse_keyed_items_are_flipped_six_minus_s():
    assert keyed_level(3.4, Keying.PLUS, 5) == 3.4
    assert keyed_level(3.4, Keying.MINUS, 5) == pytest.approx(2.6)
    assert keyed_level(1.0, "-", 5) == 5.0


def test_trait_scores_of_an_agent_that_agrees_with_everything():
    # "Very accurate" to all: + items score 5, - items 1; a trait's mean follows its key
    profile = score_profile("a", IPIP, {i.key: one_hot("Very accurate") for i in IPIP.items})
    assert profile.traits == pytest.approx(
        {
            "extraversion": (5 * 5 + 5 * 1) / 10,
            "agreeableness": (6 * 5 + 4 * 1) / 10,
            "conscientiousness": (6 * 5 + 4 * 1) / 10,
            "emotional_stability": (2 * 5 + 8 * 1) / 10,
            "intellect_imagination": (7 * 5 + 3 * 1) / 10,
        }
    )
    assert profile.items["2"] == 1.0 and profile.items["1"] == 5.0
    with pytest.raises(ValueError, match=r"lacks items \['50'\]"):
        score_profile("a", IPIP, {i.key: one_hot("Very accurate") for i in IPIP.items[:-1]})


def test_trait_profile_round_trips_and_checks_its_schema():
    items = {i.key: one_hot("Very accurate") for i in IPIP.items}
    profile = score_profile("a", IPIP, items, option_mass=0.25, orders=5)
    assert TraitProfile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile
    with pytest.raises(SchemaError, match="schema_version=7"):
        TraitProfile.from_dict({**profile.to_dict(), "schema_version": 7})


# --- orders ---------------------------------------------------------------------------------


def test_rotations_put_every_anchor_in_every_position_once():
    orders = anchor_orders(ANCHORS, "rotations")
    assert len(orders) == 5 and orders[0] == ANCHORS
    for position in range(5):
        assert sorted(o[position] for o in orders) == sorted(ANCHORS)
    assert anchor_orders(ANCHORS, LikertOrders.REVERSED) == [ANCHORS, ANCHORS[::-1]]
    with pytest.raises(
        ValueError, match=r"orders='shuffled'; accepted: \['rotations', 'reversed'\]"
    ):
        anchor_orders(ANCHORS, "shuffled")


def test_item_prompt_labels_the_anchors_with_letters():
    item = IPIP.items[0]
    probe = item_prompt(IPIP, item, ANCHORS[::-1], system="You are agent 3.")
    assert probe.options == ("A", "B", "C", "D", "E")
    assert [m.role for m in probe.messages] == ["system", "user"]
    text = probe.messages[1].content
    assert 'Statement: "Am the life of the party."' in text
    assert "A. Very accurate\n" in text and "E. Very inaccurate\n" in text
    assert text.startswith(IPIP.instructions)
    assert [m.role for m in item_prompt(IPIP, item, ANCHORS, None).messages] == ["user"]


def test_average_over_orders_does_not_depend_on_how_the_orders_are_listed():
    orders = anchor_orders(ANCHORS, "rotations")
    rows = [
        [0.5, 0.2, 0.1, 0.1, 0.1],
        [0.3, 0.3, 0.2, 0.1, 0.1],
        [0.2] * 5,
        [0.6, 0.1, 0.1, 0.1, 0.1],
        [0.1, 0.1, 0.1, 0.2, 0.5],
    ]
    reference = average_over_orders(ANCHORS, orders, rows)
    assert sum(reference.values()) == pytest.approx(1.0)
    for perm in itertools.permutations(range(5)):
        assert (
            average_over_orders(ANCHORS, [orders[i] for i in perm], [rows[i] for i in perm])
            == reference
        )


def test_rotations_cancel_a_pure_position_bias():
    # the scorer ignores the content: every order gives the same positional row
    orders = anchor_orders(ANCHORS, "rotations")
    row = [0.6, 0.1, 0.1, 0.1, 0.1]
    averaged = average_over_orders(ANCHORS, orders, [row] * 5)
    assert averaged == pytest.approx(dict.fromkeys(ANCHORS, 0.2), abs=1e-15)


class FakePopulation:
    """Scores a letter prompt as ``content[anchor under the letter] * position[letter]``,
    renormalised; records every request it saw."""

    def __init__(self, content: dict[str, dict[str, float]], position: list[float]):
        self.content, self.position, self.requests = content, position, []

    def score(self, requests):
        self.requests.extend(requests)
        out = []
        for r in requests:
            lines = r.messages[-1].content.splitlines()
            shown = [line[3:] for line in lines if line[:3] in {f"{o}. " for o in r.options}]
            weights = [
                self.content[r.agent][a] * w for a, w in zip(shown, self.position, strict=True)
            ]
            total = sum(weights)
            out.append(
                OptionScores(
                    tuple(0.0 for _ in weights),
                    tuple(w / total for w in weights),
                    0.5,
                    Scoring.NEXT_TOKEN,
                )
            )
        return out


def test_administer_with_a_content_only_scorer_recovers_its_distribution():
    prefs = {
        "x": dict(zip(ANCHORS, [0.0, 0.0, 0.0, 0.0, 1.0], strict=True)),
        "y": dict(zip(ANCHORS, [0.1, 0.2, 0.4, 0.2, 0.1], strict=True)),
    }
    for orders in LikertOrders:
        fake = FakePopulation(prefs, [1.0] * 5)
        profiles = administer(fake, ["x", "y"], IPIP, orders=orders)
        assert len(fake.requests) == 2 * 50 * (5 if orders is LikertOrders.ROTATIONS else 2)
        assert (
            profiles["x"].traits
            == score_profile("x", IPIP, {i.key: prefs["x"] for i in IPIP.items}).traits
        )
        assert profiles["y"].traits == pytest.approx(dict.fromkeys(TRAITS, 3.0), abs=1e-12)
        assert profiles["x"].option_mass == 0.5
        assert profiles["x"].orders == len(anchor_orders(ANCHORS, orders))


def test_a_position_only_scorer_scores_the_midpoint_under_both_order_schemes():
    uniform = {"x": dict.fromkeys(ANCHORS, 1.0)}
    for orders in LikertOrders:
        profiles = administer(FakePopulation(uniform, [5, 1, 1, 1, 2]), ["x"], IPIP, orders=orders)
        assert list(profiles["x"].items.values()) == pytest.approx([3.0] * 50, abs=1e-12)


def test_ask_ordered_rejects_repeated_keys_and_bad_meanings():
    question = questionnaire_questions(IPIP, "reversed")[0]
    with pytest.raises(ValueError, match=r"question keys \['1'\] repeat"):
        ask_ordered(FakePopulation({}, []), ["x"], [question, question])
    with pytest.raises(ValueError, match="a permutation of"):
        OrderedQuestion("q", ANCHORS, question.items, (ANCHORS, ANCHORS[:4] + ("Yes",)))


# --- the real path: PopulationModel on the tiny random Llama --------------------------------

AGENTS = ["agent_a", "agent_b"]


@pytest.fixture(scope="module")
def population(tiny_model_path):
    """Two PEFT adapters: agent_a fresh (the base model), agent_b with a random B."""
    model = PopulationModel(
        tiny_model_path, AGENTS, LoraSpec(r=4, alpha=8), init_seeds={"agent_a": 0, "agent_b": 1}
    )
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.model.named_parameters():
            if "lora_B" in name and ".agent_b." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 2.0)
    return model


def test_tiny_model_profiles_have_every_trait_and_item_and_match_single_agent_runs(population):
    few = replace(IPIP, items=IPIP.items[:5])  # one item per trait
    profiles = administer(population, AGENTS, few)
    assert list(profiles) == AGENTS
    for agent, profile in profiles.items():
        assert profile.agent == agent and profile.questionnaire == "ipip_big_five_50"
        assert list(profile.traits) == TRAITS
        assert list(profile.items) == ["1", "2", "3", "4", "5"]
        assert all(1.0 <= v <= 5.0 for v in profile.items.values())
        assert 0.0 < profile.option_mass <= 1.0
        assert profile.orders == 5
    # different adapters answer differently; batched rows use each agent's own adapter
    assert profiles["agent_a"].items != profiles["agent_b"].items
    for agent in AGENTS:
        alone = administer(population, [agent], few)[agent]
        assert alone.items == pytest.approx(profiles[agent].items, abs=5 * PROB_ATOL_OTHER_BATCH)
        assert alone.option_mass == pytest.approx(profiles[agent].option_mass, rel=OPTION_MASS_RTOL)


def test_tiny_model_item_score_is_the_expectation_of_the_averaged_letter_probabilities(population):
    item = IPIP.items[1]  # "Feel little concern for others.", keyed -
    orders = anchor_orders(ANCHORS, "rotations")
    prompts = [item_prompt(IPIP, item, o, None) for o in orders]
    from societies.choices import ChoiceRequest

    rows = population.score([ChoiceRequest("agent_b", p.messages, p.options) for p in prompts])
    assert {r.scoring for r in rows} == {Scoring.NEXT_TOKEN}  # letters: one token each
    probs = {
        a: sum(r.probs[o.index(a)] for r, o in zip(rows, orders, strict=True)) / 5 for a in ANCHORS
    }
    expected = 6 - sum(k * probs[a] for k, a in enumerate(ANCHORS, start=1))
    few = replace(IPIP, items=(item,), traits={"agreeableness": "A"})
    profile = administer(population, ["agent_b"], few)["agent_b"]
    assert profile.items["2"] == pytest.approx(expected, abs=5 * PROB_ATOL_OTHER_BATCH)
    assert profile.traits == {"agreeableness": profile.items["2"]}
