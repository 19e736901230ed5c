"""Multi-token options scored by their summed token log-probabilities (sequence scoring).

References are computed independently: each option teacher-forced through a plain
transformers model (or PEFT with one adapter) over the joined text ``prompt + option``,
one sequence at a time, no KV reuse. Tolerances derive from tests/float32.py below.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from societies.choices import ChoiceRequest, OptionScores, sample_index
from societies.population import LoraSpec, PopulationModel, Scoring
from societies.records import Message
from tests.float32 import TINY_LOGITS_ATOL, assert_close

# A token's log-probability is z_t - logsumexp(z): two code paths whose logits differ by
# at most TINY_LOGITS_ATOL give log-probabilities within 2 * TINY_LOGITS_ATOL (the
# logsumexp moves by at most max|dz|). An option of k tokens sums k such terms (in
# float64, which adds ~1e-16), so it agrees within k * LOGPROB_ATOL_PER_TOKEN. The
# renormalised probs move by at most that much too (softmax's Jacobian rows have absolute
# sum 2 p (1 - p) <= 1/2), and option_mass = sum exp(logprob) by that much relatively.
LOGPROB_ATOL_PER_TOKEN = 2 * TINY_LOGITS_ATOL

AGENTS = ["agent_00", "agent_01", "agent_02"]
# 3, 3, 1 and 4 tokens for the embedded tokenizer: a single-token option inside a
# sequence request is scored by sequence with the others.
OPTIONS = ("30%", "Strongly agree", "R", "Neither agree nor disagree")
LORA = LoraSpec(r=4, alpha=8)


def requests_for(agents, lengths, options=OPTIONS, system=True):
    """One request per agent; prompts of different lengths (padding) and option orders."""
    out = []
    for agent, n in zip(agents, lengths, strict=True):
        user = Message("user", "How sure are you? " + "Last time you said 30%. " * n)
        messages = (Message("system", f"You are {agent}. Answer with one option."), user)
        order = tuple(np.random.default_rng(n).permutation(list(options)))
        out.append(ChoiceRequest(agent, messages if system else (user,), order))
    return out


def atol_for(population, requests) -> float:
    longest = max(len(population.option_tokens(o)) for r in requests for o in r.options)
    return LOGPROB_ATOL_PER_TOKEN * longest


def teacher_forced(population, request, model, **model_kwargs) -> list[float]:
    """Each option's sum of log_softmax at its token positions, over prompt + option text."""
    text = population.render(request.messages)
    prompt = population.tokenizer(text, add_special_tokens=False).input_ids
    totals = []
    for option in request.options:
        ids = population.tokenizer(text + option, add_special_tokens=False).input_ids
        assert ids[: len(prompt)] == prompt  # the joined text keeps the prompt's tokens
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids]), **model_kwargs).logits[0]
        logprobs = torch.log_softmax(logits.float(), dim=-1).double()
        totals.append(float(sum(logprobs[j - 1, ids[j]] for j in range(len(prompt), len(ids)))))
    return totals


@pytest.fixture(scope="module")
def folders(tiny_model_path, tmp_path_factory):
    """PEFT adapter folders: ``fresh`` (B = 0, equal to the base) and ``noisy`` (seeded B)."""
    root = tmp_path_factory.mktemp("adapters")
    model = PopulationModel(
        tiny_model_path, AGENTS, LORA, init_seeds={a: i for i, a in enumerate(AGENTS)}
    )
    fresh = {a: model.save_adapter(a, root / "fresh" / a) for a in AGENTS}
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    noisy = {a: model.save_adapter(a, root / "noisy" / a) for a in AGENTS}
    return {"fresh": fresh, "noisy": noisy}


ENGINES = {
    "peft": dict(engine="peft"),
    "multi_lora": dict(engine="multi_lora"),
    "multi_lora+prefix_cache": dict(engine="multi_lora", prefix_cache=True),
}


@pytest.fixture(scope="module")
def populations(tiny_model_path, folders):
    """``populations(adapters, engine, batch_size=32)``, built once per combination."""
    built = {}

    def get(adapters: str, engine: str, batch_size: int = 32) -> PopulationModel:
        key = (adapters, engine, batch_size)
        if key not in built:
            built[key] = PopulationModel(
                tiny_model_path,
                AGENTS,
                LORA,
                adapter_dirs=folders[adapters],
                batch_size=batch_size,
                **ENGINES[engine],
            )
        return built[key]

    return get


@pytest.mark.parametrize("engine", list(ENGINES))
def test_sequence_scores_equal_teacher_forcing_with_the_base_model(
    populations, tiny_model_path, engine
):
    from transformers import AutoModelForCausalLM

    population = populations("fresh", engine)  # B = 0: every agent equals the base
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()
    requests = requests_for(AGENTS, lengths=(0, 3, 7))
    scores = population.score(requests)
    atol = atol_for(population, requests)
    for request, s in zip(requests, scores, strict=True):
        assert s.scoring is Scoring.SEQUENCE
        expected = teacher_forced(population, request, base)
        assert_close(s.logprobs, expected, atol, f"{engine}: summed logprobs vs teacher forcing")
        # the recorded belief and mass are exactly those of the summed logprobs
        raw = np.exp(np.asarray(s.logprobs))
        assert_close(s.probs, raw / raw.sum(), 1e-12, "probs = renormalised sequence probs")
        assert s.option_mass == pytest.approx(raw.sum(), rel=1e-12)
        assert sum(s.probs) == pytest.approx(1.0, abs=1e-12)
        # the single-token option "R" is scored by its next-token log-probability
        assert -20 < s.logprobs[request.options.index("R")] < 0


@pytest.mark.parametrize("engine", ["peft", "multi_lora"])
def test_rows_use_their_own_adapter_and_batch_equals_alone(populations, engine):
    population = populations("noisy", engine)
    same_prompt = requests_for(["agent_00"], lengths=(2,))[0]
    rows = [ChoiceRequest(a, same_prompt.messages, same_prompt.options) for a in AGENTS]
    requests = rows + requests_for(AGENTS[::-1], lengths=(5, 0, 1))
    batched = population.score(requests)
    alone = [population.score([r])[0] for r in requests]
    atol = atol_for(population, requests)
    for b, a in zip(batched, alone, strict=True):
        assert_close(b.logprobs, a.logprobs, atol, f"{engine}: batched vs alone")
        assert_close(b.probs, a.probs, atol, f"{engine}: probs, batched vs alone")
    # the same prompt under different adapters scores differently
    assert np.abs(np.subtract(batched[0].logprobs, batched[1].logprobs)).max() > 1e-2
    assert np.abs(np.subtract(batched[1].logprobs, batched[2].logprobs)).max() > 1e-2


def test_adapters_match_per_option_peft_teacher_forcing(populations):
    population = populations("noisy", "peft")
    requests = requests_for(AGENTS, lengths=(1, 4, 0))
    atol = atol_for(population, requests)
    for request, s in zip(requests, population.score(requests), strict=True):
        # full prompt + option through PEFT with this agent's adapter only, no KV reuse
        expected = teacher_forced(
            population, request, population.model, adapter_names=[request.agent]
        )
        assert_close(s.logprobs, expected, atol, "KV-continued vs full-sequence PEFT")


def test_continuations_are_chunked_to_batch_size(populations):
    """Rows per forward never exceed batch_size; chunking changes only rounding."""
    small = populations("noisy", "multi_lora", batch_size=2)
    large = populations("noisy", "multi_lora")
    requests = requests_for(AGENTS, lengths=(0, 2, 4))
    rows_seen = []
    hook = small.model.model.register_forward_pre_hook(
        lambda _module, _args, kwargs: rows_seen.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True,
    )
    try:
        chunked = small.score(requests)
    finally:
        hook.remove()
    # requests in chunks of 2 and 1; each chunk: one prompt pass, then its 3 multi-token
    # options per request in continuation chunks of <= 2 rows
    assert rows_seen == [2, 2, 2, 2, 1, 2, 1]
    atol = atol_for(large, requests)
    for a, b in zip(chunked, large.score(requests), strict=True):
        assert_close(a.logprobs, b.logprobs, atol, "batch_size 2 vs 32")


@pytest.mark.parametrize("engine", list(ENGINES))
def test_single_token_options_keep_the_next_token_path(populations, engine):
    population = populations("noisy", engine)
    singles = requests_for(AGENTS, lengths=(0, 2, 5), options=tuple("RKTBQ"))
    scores = population.score(singles)
    # the direct next-token computation, exactly (same code and batch)
    cached = population.prefix_cache is not None
    logits = (population._cached_prefix_logits if cached else population._full_logits)(singles)
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    for row, (request, s) in enumerate(zip(singles, scores, strict=True)):
        assert s.scoring is Scoring.NEXT_TOKEN
        ids = [population.option_token_id(o) for o in request.options]
        option_lp = logprobs[row, ids].double()
        assert s.logprobs == tuple(option_lp.tolist())
        assert s.probs == tuple(torch.softmax(option_lp, -1).tolist())
        assert s.option_mass == float(option_lp.exp().sum())
    # mixed with sequence requests, the single-token rows are batched exactly as alone
    multi = requests_for(["agent_01"], lengths=(3,))
    mixed = population.score([singles[0], multi[0], singles[1], singles[2]])
    assert [m.scoring for m in mixed] == [Scoring.NEXT_TOKEN, Scoring.SEQUENCE] + [
        Scoring.NEXT_TOKEN
    ] * 2
    assert [mixed[0], *mixed[2:]] == scores
    assert_close(
        mixed[1].logprobs, population.score(multi)[0].logprobs, atol_for(population, multi), "mix"
    )


def test_engines_and_prefix_cache_agree(populations):
    # two rounds (the second reuses the cached heads), a probe-like batch repeating one
    # agent, and prompts without a system message (the prefix cache steps aside)
    batches = [
        requests_for(AGENTS, lengths=(0, 2, 5)),
        requests_for(AGENTS[::-1], lengths=(4, 1, 0)),
        requests_for(["agent_01"] * 3, lengths=(0, 1, 2)),
        requests_for(AGENTS, lengths=(1, 1, 3), system=False),
    ]
    peft = populations("noisy", "peft")
    stacked = populations("noisy", "multi_lora")
    cached = populations("noisy", "multi_lora+prefix_cache")
    for batch in batches:
        atol = atol_for(peft, batch)
        reference = peft.score(batch)
        for name, population in (("multi_lora", stacked), ("prefix cache", cached)):
            for a, b in zip(population.score(batch), reference, strict=True):
                assert a.scoring is b.scoring is Scoring.SEQUENCE
                assert_close(a.logprobs, b.logprobs, atol, f"{name} vs peft")
                assert_close(a.probs, b.probs, atol, f"{name} vs peft, probs")
                assert a.option_mass == pytest.approx(b.option_mass, rel=atol)
    assert len(cached.prefix_cache) == 3  # one cached head per agent, encoded once


def test_choose_samples_the_renormalised_sequence_distribution(populations):
    population = populations("noisy", "multi_lora")
    # three-token options of comparable probability, so every option gets drawn
    request = requests_for(["agent_02"], lengths=(1,), options=("30%", "45%", "70%"))[0]
    (scores,) = population.score([request])
    assert scores.scoring is Scoring.SEQUENCE and min(scores.probs) > 0.05
    # choose applies sample_index to the summed logprobs, per row and seeded draw
    uniforms = np.random.default_rng(5).random(6).tolist()
    chosen = population.choose([request] * 6, 0.7, uniforms)
    for (s, option), u in zip(chosen, uniforms, strict=True):
        assert s.scoring is Scoring.SEQUENCE
        assert option == request.options[sample_index(s.logprobs, 0.7, u)]
    # at temperature 1, inverse-CDF draws on a grid reproduce the renormalised probs
    grid = (np.arange(1000) + 0.5) / 1000
    picks = [sample_index(scores.logprobs, 1.0, u) for u in grid]
    counts = np.bincount(picks, minlength=3) / len(grid)
    assert_close(counts, scores.probs, 1e-3, "draw frequencies vs renormalised probs")
    greedy = population.choose([request], 0.0, [0.99])[0][1]
    assert greedy == request.options[int(np.argmax(scores.logprobs))]


def test_option_boundary_and_bad_options(populations):
    population = populations("noisy", "peft")
    prompt = requests_for(["agent_00"], lengths=(0,))[0]
    text = population.render(prompt.messages)
    prompt_ids = population.tokenizer(text, add_special_tokens=False).input_ids
    for option in OPTIONS + ("100%", " yes", "A."):
        # the option's own tokens are exactly how prompt + option tokenizes
        joined = population.tokenizer(text + option, add_special_tokens=False).input_ids
        assert joined == prompt_ids + list(population.option_tokens(option))
    # whitespace after the header's newline merges with it: refused, not mis-scored
    with pytest.raises(ValueError, match=r"'  two' merges with the end of the prompt"):
        population.score([ChoiceRequest("agent_00", prompt.messages, ("  two", "30%"))])
    with pytest.raises(ValueError, match="empty text"):
        population.score([ChoiceRequest("agent_00", prompt.messages, ("", "30%"))])
    with pytest.raises(ValueError, match="next-token scoring needs single tokens"):
        population.option_token_id("30%")
    with pytest.raises(ValueError, match=r"scoring='beam'; accepted: \['next_token', 'sequence'\]"):
        OptionScores((0.0,), (1.0,), 1.0, scoring="beam")
    assert OptionScores((0.0,), (1.0,), 1.0, scoring="sequence").scoring is Scoring.SEQUENCE
