"""The population model: option probabilities, per-row adapters, seeded sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from societies.atomic import TEMP_MARK, remove_stale_temporaries
from societies.choices import ChoiceRequest, sample_index
from societies.games.naming_game import NamingGame, NamingGameRules
from societies.population import LoraSpec, PopulationModel
from societies.records import Message
from tests.float32 import OPTION_MASS_RTOL, PROB_ATOL, PROB_ATOL_OTHER_BATCH, assert_close

AGENTS = ["agent_00", "agent_01", "agent_02"]
GAME = NamingGame(NamingGameRules(names=tuple("RKTBQ"), memory=3))


@pytest.fixture(scope="module")
def population(tiny_model_path):
    model = PopulationModel(
        tiny_model_path,
        AGENTS,
        LoraSpec(r=4, alpha=8),
        init_seeds={a: i for i, a in enumerate(AGENTS)},
    )
    # Fresh adapters equal the base (B = 0); give each agent a distinct non-zero B so
    # the per-row adapter choice visibly matters.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model


def requests_for(agents, lengths=(0, 2, 5)):
    from societies.games.naming_game import Interaction

    out = []
    for agent, n in zip(agents, lengths, strict=True):
        memory = [Interaction("R", "K", -50.0)] * n  # different prompt lengths -> padding
        options = tuple(np.random.default_rng(n).permutation(list(GAME.options)))
        out.append(ChoiceRequest(agent, GAME.prompt(memory, options), options))
    return out


def test_probabilities_sum_to_one_and_mass_is_recorded(population):
    # probs are renormalised in float64 from the same logprobs: exact to float64 rounding
    for s in population.score(requests_for(AGENTS)):
        assert sum(s.probs) == pytest.approx(1.0, abs=1e-12)
        assert all(p > 0 for p in s.probs)
        assert 0 < s.option_mass < 1
        # probs are exactly the renormalised option probabilities
        raw = np.exp(s.logprobs)
        assert np.allclose(s.probs, raw / raw.sum(), atol=1e-12)
        assert s.option_mass == pytest.approx(raw.sum())


def test_mixed_batch_equals_per_agent_calls(population):
    reqs = requests_for(AGENTS)
    batched = population.score(reqs)
    single = [population.score([r])[0] for r in reqs]
    for b, s in zip(batched, single, strict=True):
        # a batch of one vs a padded batch of all: other GEMM shapes, rounding only
        assert_close(b.probs, s.probs, PROB_ATOL_OTHER_BATCH, "probabilities, batch vs single")
        assert b.option_mass == pytest.approx(s.option_mass, rel=OPTION_MASS_RTOL)
    u = [0.1, 0.5, 0.9]
    assert [c for _, c in population.choose(reqs, 0.5, u)] == [
        population.choose([r], 0.5, [x])[0][1] for r, x in zip(reqs, u, strict=True)
    ]


def test_rows_use_their_own_adapter(population):
    prompt = requests_for(["agent_00"], lengths=(1,))[0]
    rows = [ChoiceRequest(a, prompt.messages, prompt.options) for a in AGENTS]
    probs = [s.probs for s in population.score(rows)]
    assert not np.allclose(probs[0], probs[1], atol=1e-4)
    assert not np.allclose(probs[1], probs[2], atol=1e-4)


def test_seeded_choices_repeat_exactly(population):
    reqs = requests_for(AGENTS)
    u = np.random.default_rng(7).random(3).tolist()
    assert population.choose(reqs, 0.5, u) == population.choose(reqs, 0.5, u)


def test_sample_index_follows_tempered_distribution():
    logprobs = np.log([0.5, 0.3, 0.2])
    # inverse CDF on a grid of 10,000 uniforms reproduces the probabilities to 1/10,000
    grid = (np.arange(10_000) + 0.5) / 10_000
    counts = np.bincount([sample_index(logprobs, 1.0, u) for u in grid], minlength=3) / len(grid)
    assert np.allclose(counts, [0.5, 0.3, 0.2], atol=1e-3)
    # temperature 0.5 squares and renormalises: [0.25, 0.09, 0.04] / 0.38
    counts = np.bincount([sample_index(logprobs, 0.5, u) for u in grid], minlength=3) / len(grid)
    assert np.allclose(counts, np.array([0.25, 0.09, 0.04]) / 0.38, atol=1e-3)
    assert sample_index(logprobs, 0.0, 0.99) == 0  # greedy
    assert sample_index(logprobs, 1.0, 0.0) == 0 and sample_index(logprobs, 1.0, 0.9999) == 2


def test_the_one_token_path_names_multi_token_options_and_unknown_agents(population):
    with pytest.raises(ValueError, match="single tokens"):
        population.option_token_id("Rumpelstiltskin")
    with pytest.raises(KeyError, match="no adapter"):
        population.score([ChoiceRequest("stranger", (Message("user", "hi"),), ("R", "K"))])


def test_adapters_round_trip_through_peft_folders(population, tiny_model_path, tmp_path):
    path = population.save_adapter("agent_01", tmp_path / "agent_01")
    assert (path / "adapter_model.safetensors").is_file()
    reloaded = PopulationModel(
        tiny_model_path, ["agent_01"], LoraSpec(r=4, alpha=8), adapter_dirs={"agent_01": path}
    )
    req = requests_for(["agent_01"], lengths=(2,))
    assert reloaded.score(req)[0].probs == population.score(req)[0].probs
    original, loaded = population.adapter_state("agent_01"), reloaded.adapter_state("agent_01")
    assert original.keys() == loaded.keys()
    assert all(torch.equal(original[k], loaded[k]) for k in original)


def test_a_save_writes_its_scratch_folder_beside_the_adapter(population, tmp_path, monkeypatch):
    # A run killed mid-save leaves the scratch folder where it was; inside the run
    # directory its resume removes it (societies.atomic), in /tmp nothing ever would.
    scratch: list[Path] = []
    real = population.model.save_pretrained

    def spy(directory, *args, **kwargs):
        scratch.append(Path(directory))
        return real(directory, *args, **kwargs)

    monkeypatch.setattr(population.model, "save_pretrained", spy)
    out = tmp_path / "run" / "initial_adapters" / "agent_01"  # parents not made yet
    population.save_adapter("agent_01", out)
    assert (out / "adapter_model.safetensors").is_file()
    assert scratch[0].parent == out.parent and TEMP_MARK in scratch[0].name
    assert remove_stale_temporaries(tmp_path / "run") == []  # nothing was left


def test_fresh_adapters_start_equal_to_the_base(tiny_model_path):
    from transformers import AutoModelForCausalLM

    fresh = PopulationModel(tiny_model_path, ["a"], LoraSpec(r=4, alpha=8), init_seeds={"a": 3})
    req = requests_for(["a"], lengths=(1,))[0]
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    enc = fresh.tokenizer(fresh.render(req.messages), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logits = base(**enc).logits[0, -1]
    ids = [fresh.option_token_id(o) for o in req.options]
    expected = torch.softmax(torch.log_softmax(logits, -1)[ids].double(), -1)
    assert_close(fresh.score([req])[0].probs, expected.numpy(), PROB_ATOL, "fresh adapter vs base")


def test_multi_lora_engine_equals_the_peft_engine(population, tiny_model_path, tmp_path):
    dirs = {a: population.save_adapter(a, tmp_path / a) for a in AGENTS}
    stacked = PopulationModel(
        tiny_model_path, AGENTS, LoraSpec(r=4, alpha=8), adapter_dirs=dirs, engine="multi_lora"
    )
    reqs = requests_for(AGENTS) + requests_for(AGENTS[::-1])
    for a, b in zip(stacked.score(reqs), population.score(reqs), strict=True):
        assert_close(a.probs, b.probs, PROB_ATOL, "stacked engine vs PEFT")
        assert a.option_mass == pytest.approx(b.option_mass, rel=OPTION_MASS_RTOL)
    u = np.random.default_rng(3).random(len(reqs)).tolist()
    assert [c for _, c in stacked.choose(reqs, 0.5, u)] == [
        c for _, c in population.choose(reqs, 0.5, u)
    ]
    # saving from the stacked engine gives the same PEFT folder contents
    from safetensors.torch import load_file

    stacked.save_adapter("agent_02", tmp_path / "again")
    first, again = (
        load_file(dirs["agent_02"] / "adapter_model.safetensors"),
        load_file(tmp_path / "again" / "adapter_model.safetensors"),
    )
    assert first.keys() == again.keys() and all(torch.allclose(first[k], again[k]) for k in first)


def test_engine_errors_name_the_value(tiny_model_path):
    with pytest.raises(ValueError, match=r"engine='vllm'; accepted: \['multi_lora', 'peft'\]"):
        PopulationModel(tiny_model_path, ["a"], LoraSpec(), engine="vllm")
    with pytest.raises(ValueError, match="no folder for"):
        PopulationModel(tiny_model_path, ["a"], LoraSpec(), engine="multi_lora")


def test_prefix_cache_scores_equal_the_uncached_path(population, tiny_model_path, tmp_path):
    dirs = {a: population.save_adapter(a, tmp_path / a) for a in AGENTS}
    cached = PopulationModel(
        tiny_model_path,
        AGENTS,
        LoraSpec(r=4, alpha=8),
        adapter_dirs=dirs,
        engine="multi_lora",
        prefix_cache=True,
    )
    plain = PopulationModel(
        tiny_model_path, AGENTS, LoraSpec(r=4, alpha=8), adapter_dirs=dirs, engine="multi_lora"
    )
    # two "rounds" (the second reuses the cache) and a probe-like batch repeating one agent
    batches = [
        requests_for(AGENTS),
        requests_for(AGENTS[::-1], lengths=(4, 1, 0)),
        requests_for(["agent_01"] * 3),
    ]
    for batch in batches:
        for a, b in zip(cached.score(batch), plain.score(batch), strict=True):
            assert_close(a.probs, b.probs, PROB_ATOL, "prefix-cached vs plain")
    assert len(cached.prefix_cache) == 3  # one cached head per agent
    # Once an agent has seen two prompts its head is their longest common prefix: past
    # the system message, through the rules (the user message's static opening).
    from societies.prefix_cache import static_prefix_ids

    request = batches[2][0]
    system = static_prefix_ids(cached.tokenizer, [m.to_dict() for m in request.messages])
    head = cached.prefix_cache.prefix_ids("agent_01")
    opening = request.messages[1].content.split("\n")[0]  # the payoff rules
    rules = cached.tokenizer(opening, add_special_tokens=False).input_ids
    assert len(head) >= len(system) + len(rules) - 2  # BPE may merge at the two edges
    with pytest.raises(ValueError, match="needs engine='multi_lora'"):
        PopulationModel(tiny_model_path, ["a"], LoraSpec(), prefix_cache=True)
