"""Custom probes from YAML: parsing errors that name the bad key, prompts, a tiny-model run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from societies.choices import ChoiceRequest
from societies.custom_probes import (
    CustomProbe,
    custom_probe,
    custom_probes_from_list,
    custom_questions,
    render_prompt,
)
from societies.population import LoraSpec, PopulationModel, Scoring
from tests.float32 import OPTION_MASS_RTOL, PROB_ATOL_OTHER_BATCH

CONFIG = """
probe:
  custom:
    - name: trust_strangers
      system: You are one of several agents in a village.
      prompt: "A stranger asks to borrow your tools. Do you lend them? Options: {options}."
      options: ["Yes", "No"]
    - name: favourite_colour
      prompt: Which colour do you like best?
      options: [red, green, blue, "dark purple"]
"""


def parsed() -> list[CustomProbe]:
    return custom_probes_from_list(yaml.safe_load(CONFIG)["probe"]["custom"])


# --- parsing -------------------------------------------------------------------------------


def test_yaml_probes_parse_into_typed_probes_and_round_trip():
    probes = parsed()
    assert probes[0] == CustomProbe(
        "trust_strangers",
        "A stranger asks to borrow your tools. Do you lend them? Options: {options}.",
        ("Yes", "No"),
        "You are one of several agents in a village.",
    )
    assert probes[1].system is None and probes[1].options == ("red", "green", "blue", "dark purple")
    assert [CustomProbe.from_dict(p.to_dict()) for p in probes] == probes
    assert custom_probes_from_list(None) == []


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            {"name": "x", "prompt": "Q?", "options": ["a", "b"], "sytem": "S"},
            r"probe.custom\[1\]: unknown key\(s\) \['sytem'\]; accepted: \['name', 'prompt', 'options', 'system'\]",
        ),
        ({"name": "x", "options": ["a", "b"]}, r"probe.custom\[1\]: missing key\(s\) \['prompt'\]"),
        ("just text", r"probe.custom\[1\] is a str; expected a mapping"),
        (
            {"name": "x", "prompt": "Q?", "options": ["a"]},
            r"probe.custom\[1\]: .*options=\['a'\]; expected at least 2",
        ),
        (
            {"name": "x", "prompt": "Q?", "options": "a, b"},
            r"probe.custom\[1\]: .*options='a, b'; expected a list of texts",
        ),
        (
            {"name": "x", "prompt": "Q?", "options": ["a", " b"]},
            r"probe.custom\[1\]: .*option ' b'; expected non-empty text without leading",
        ),
        (
            {"name": "x", "prompt": "Q?", "options": ["a", "a"]},
            r"options=\['a', 'a'\] repeat",
        ),
        (
            {"name": "my probe", "prompt": "Q?", "options": ["a", "b"]},
            r"name='my probe'; accepted: letters, digits, '_' and '-'",
        ),
        ({"name": "x", "prompt": "  ", "options": ["a", "b"]}, r"prompt='  '; expected non-empty"),
        (
            {"name": "x", "prompt": "Q?", "options": ["a", "b"], "system": 3},
            r"system=3; expected text or null",
        ),
        (
            {"name": "trust", "prompt": "Q?", "options": ["a", "b"]},
            r"probe.custom: probe names \['trust'\] repeat",
        ),
    ],
)
def test_bad_entries_are_named_with_the_key_and_what_is_accepted(entry, message):
    good = {"name": "trust", "prompt": "Q?", "options": ["Yes", "No"]}
    with pytest.raises(ValueError, match=message):
        custom_probes_from_list([good, entry])


def test_a_non_list_section_is_named():
    with pytest.raises(ValueError, match=r"probe.custom is a dict; expected a list of probes"):
        custom_probes_from_list({"name": "x"})


# --- prompts and orders --------------------------------------------------------------------


def test_options_fill_the_placeholder_or_are_appended_in_the_shown_order():
    trust, colour = parsed()
    messages = render_prompt(trust, ("No", "Yes"))
    assert [m.role for m in messages] == ["system", "user"]
    assert messages[1].content.endswith("Do you lend them? Options: No, Yes.")
    (user,) = render_prompt(colour, ("blue", "red", "dark purple", "green"))
    assert user.content == (
        "Which colour do you like best?\n\nOptions: blue, red, dark purple, green.\n"
        "Answer with one of the options only."
    )


def test_each_probe_gets_rotations_capped_at_its_number_of_options():
    trust, colour = parsed()
    questions = custom_questions([trust, colour], orders=4, rng=np.random.default_rng(0))
    assert [len(q.items) for q in questions] == [2, 4]  # 2 options: both rotations only
    for q in questions:
        assert q.answers == (trust if q.key == "trust_strangers" else colour).options
        for item, meaning in zip(q.items, q.meanings, strict=True):
            assert item.options == meaning  # a custom probe is scored on its answers
        # every option in every position once
        for position in range(len(q.answers)):
            assert sorted(m[position] for m in q.meanings) == sorted(q.answers)
    again = custom_questions([trust, colour], orders=4, rng=np.random.default_rng(0))
    assert again == questions  # the same seed gives the same orders


# --- the real path: PopulationModel on the tiny random Llama --------------------------------

AGENTS = ["agent_a", "agent_b"]


@pytest.fixture(scope="module")
def population(tiny_model_path):
    model = PopulationModel(
        tiny_model_path, AGENTS, LoraSpec(r=4, alpha=8), init_seeds={"agent_a": 0, "agent_b": 1}
    )
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.model.named_parameters():
            if "lora_B" in name and ".agent_b." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 2.0)
    return model


def test_tiny_model_custom_probe_distributions(population):
    probes = parsed()
    results = custom_probe(population, AGENTS, probes, orders=4, rng=np.random.default_rng(1))
    assert list(results) == AGENTS
    for agent in AGENTS:
        assert list(results[agent]) == ["trust_strangers", "favourite_colour"]
        trust, colour = results[agent]["trust_strangers"], results[agent]["favourite_colour"]
        assert set(trust.probs) == {"Yes", "No"} and trust.orders == 2
        assert set(colour.probs) == {"red", "green", "blue", "dark purple"} and colour.orders == 4
        for prior in (trust, colour):
            assert prior.agent == agent
            assert sum(prior.probs.values()) == pytest.approx(1.0, abs=1e-12)
            assert 0.0 < prior.option_mass <= 1.0
    assert (
        results["agent_a"]["favourite_colour"].probs != results["agent_b"]["favourite_colour"].probs
    )

    # the same numbers by hand: agent_b's colour rows scored alone, averaged over orders
    questions = custom_questions(probes, orders=4, rng=np.random.default_rng(1))
    colour_q = questions[1]
    rows = population.score(
        [ChoiceRequest("agent_b", item.messages, item.options) for item in colour_q.items]
    )
    assert {r.scoring for r in rows} == {Scoring.SEQUENCE}  # "dark purple" is two tokens
    by_hand = {
        a: sum(r.probs[item.options.index(a)] for r, item in zip(rows, colour_q.items, strict=True))
        / 4
        for a in colour_q.answers
    }
    got = results["agent_b"]["favourite_colour"]
    assert got.probs == pytest.approx(by_hand, abs=PROB_ATOL_OTHER_BATCH)
    mass = sum(r.option_mass for r in rows) / 4
    assert got.option_mass == pytest.approx(mass, rel=OPTION_MASS_RTOL)
