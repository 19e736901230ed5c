"""The vLLM rollout engine: its pure parts, and its plumbing checked on fakes.

**vLLM never runs in these tests** (it is not installed: its pins conflict with the
training stack, and there is no GPU). Every test below is a unit test with fakes: the
``vllm`` module is replaced by a namespace whose ``LLM`` answers with outputs shaped like
vLLM 0.33.0's (``outputs[0].logprobs[0]``: token id -> Logprob for the ids asked in
``logprob_token_ids``; ``prompt_token_id_logprobs``: one row per option token, as
``prompt_logprob_token_ids``/``prompt_logprob_start`` define in vllm/sampling_params.py),
computed by the tiny torch model with the adapter loaded from each ``LoRARequest``'s
path. Passing them shows the engine's plumbing (tokens, LoRA routing, row alignment,
summing, sampling) agrees with :class:`PopulationModel`; it says nothing about vLLM's own
numerics or whether vLLM accepts these calls at runtime.

The ``Experiment`` tests at the end are fake-based: they show the loop builds and feeds a
``VllmPopulation``, no more. The import guard, the config keys and the early failure
without vLLM are in tests/test_vllm_config.py.
"""

from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from societies.choices import ChoiceRequest, sample_index
from societies.population import LoraSpec, PopulationModel
from societies.records import Message, Scoring
from societies.text_generation import TextRequest
from societies.vllm_engine import (
    DEFAULT_GPU_MEMORY_UTILIZATION,
    VllmEngine,
    VllmPopulation,
    row_seed,
)
from societies.vllm_requests import (
    LoraRegistry,
    next_token_option_logprobs,
    sequence_option_logprob,
    vllm_max_lora_rank,
)
from tests.conftest import run_tiny, save_distinct_adapters, tiny_experiment_config
from tests.float32 import PROB_ATOL, TINY_LOGITS_ATOL, assert_close
from trainer.run_dir import RunLayout


# ----- pure parts --------------------------------------------------------------------
def test_lora_rank_rounds_up_to_a_rank_vllm_accepts():
    assert [vllm_max_lora_rank(r) for r in (1, 2, 8, 9, 16, 300, 512)] == [
        1,
        8,
        8,
        16,
        16,
        320,
        512,
    ]
    with pytest.raises(ValueError, match="up to 512"):
        vllm_max_lora_rank(513)


def _adapter_folder(path, content: bytes = b"weights"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_model.safetensors").write_bytes(content)
    return path


def test_lora_ids_are_unique_per_folder_version(tmp_path):
    registry = LoraRegistry()
    a = _adapter_folder(tmp_path / "gen0" / "agent_00")
    b = _adapter_folder(tmp_path / "gen0" / "agent_01")
    first = registry.slot("agent_00", a)
    assert (first.lora_name, first.lora_int_id, first.lora_path) == ("agent_00@1", 1, str(a))
    assert registry.slot("agent_00", tmp_path / "gen0" / ".." / "gen0" / "agent_00") == first
    assert registry.slot("agent_01", b).lora_int_id == 2
    # the same folder rewritten (a resumed generation): a new id, so vLLM cannot serve
    # the weights it cached under the old one
    _adapter_folder(a, b"new weights")
    os.utime(a / "adapter_model.safetensors", ns=(1, 1))
    again = registry.slot("agent_00", a)
    assert (again.lora_name, again.lora_int_id) == ("agent_00@3", 3)
    with pytest.raises(FileNotFoundError, match="has no adapter_model.safetensors"):
        registry.slot("agent_02", tmp_path / "missing")


def test_vllm_logprob_outputs_become_option_logprobs():
    position = {
        12: SimpleNamespace(logprob=-0.5),
        7: SimpleNamespace(logprob=-2.0),
        99: SimpleNamespace(logprob=-0.1),  # the sampled token, also returned
    }
    assert next_token_option_logprobs(position, [7, 12]).tolist() == [-2.0, -0.5]
    with pytest.raises(ValueError, match=r"no logprob for option token ids \[5\]"):
        next_token_option_logprobs(position, [7, 5])
    rows = np.array([[-1.25], [-0.5], [-0.25]], dtype=np.float32)
    assert sequence_option_logprob(rows, [3, 4, 5]) == -2.0
    with pytest.raises(ValueError, match=r"shape \(3, 1\); expected \(2, 1\)"):
        sequence_option_logprob(rows, [3, 4])
    with pytest.raises(ValueError, match="non-finite"):
        sequence_option_logprob(np.array([[-np.inf]]), [3])


def test_row_seeds_are_distinct_and_reproducible():
    seeds = [row_seed(123, i) for i in range(50)]
    assert len(set(seeds)) == 50 and seeds == [row_seed(123, i) for i in range(50)]
    assert all(0 <= s < 2**63 for s in seeds) and row_seed(124, 0) != seeds[0]


# ----- the engine against a fake vLLM ------------------------------------------------
class _TorchLLM:
    """A fake ``vllm.LLM``: vLLM's output contract computed by the tiny torch model.

    Adapters are loaded from each ``LoRARequest``'s path and cached by ``lora_int_id``,
    as vLLM does. Free text is not computed: ``reply_ids`` is returned for every prompt.
    """

    def __init__(self, **kwargs):
        from transformers import AutoModelForCausalLM

        self.kwargs = kwargs
        self.base = AutoModelForCausalLM.from_pretrained(kwargs["model"], dtype=torch.float32)
        self.model = None
        self.calls = []
        self.reply_ids: list[int] = []

    def _adapter(self, lora) -> str:
        from peft import PeftModel

        name = f"id{lora.lora_int_id}"
        if self.model is None:
            self.model = PeftModel.from_pretrained(self.base, lora.lora_path, adapter_name=name)
        elif name not in self.model.peft_config:
            self.model.load_adapter(lora.lora_path, adapter_name=name)
        return name

    @torch.inference_mode()
    def generate(self, prompts, sampling_params, lora_request, use_tqdm):
        self.calls.append((prompts, sampling_params, lora_request))
        outputs = []
        for prompt, params, lora in zip(prompts, sampling_params, lora_request, strict=True):
            ids = prompt["prompt_token_ids"]
            name = self._adapter(lora)  # first: it creates self.model on the first call
            self.model.set_adapter(name)
            logits = self.model(input_ids=torch.tensor([ids])).logits[0]
            lp = torch.log_softmax(logits.double(), dim=-1)
            out = SimpleNamespace(
                outputs=[SimpleNamespace(logprobs=None, token_ids=list(self.reply_ids))],
                prompt_token_id_logprobs=None,
            )
            if params.logprob_token_ids is not None:
                out.outputs[0].logprobs = [
                    {t: SimpleNamespace(logprob=float(lp[-1, t])) for t in params.logprob_token_ids}
                ]
            if params.prompt_logprob_token_ids is not None:
                start, rows = params.prompt_logprob_start, params.prompt_logprob_token_ids
                assert len(rows) == len(ids) - 1 - start  # vLLM's output shape
                # row i predicts prompt token start + i + 1, from position start + i
                out.prompt_token_id_logprobs = np.array(
                    [[float(lp[start + i, t]) for t in row] for i, row in enumerate(rows)]
                )
            outputs.append(out)
        return outputs


def _fake_vllm():
    def sampling_params(**kwargs):
        defaults = dict(
            logprob_token_ids=None,
            prompt_logprob_token_ids=None,
            prompt_logprob_start=None,
            seed=None,
            stop_token_ids=None,
        )
        return SimpleNamespace(**{**defaults, **kwargs})

    return SimpleNamespace(
        LLM=_TorchLLM,
        SamplingParams=sampling_params,
        TokensPrompt=dict,  # vLLM's TokensPrompt is a TypedDict: calling it makes a dict
        LoRARequest=lambda name, lora_id, path: SimpleNamespace(
            lora_name=name, lora_int_id=lora_id, lora_path=path
        ),
    )


@pytest.fixture(scope="module")
def adapters(tiny_model_path, tmp_path_factory):
    """Two agents with different, non-zero adapters (fresh ones equal the base)."""
    return save_distinct_adapters(
        tiny_model_path, ["agent_00", "agent_01"], tmp_path_factory.mktemp("adapters")
    )


def _choice(agent: str, options: tuple[str, ...], user: str) -> ChoiceRequest:
    messages = (Message("system", "You are playing a game."), Message("user", user))
    return ChoiceRequest(agent, messages, options)


def test_engine_scores_like_the_torch_population(tiny_model_path, adapters):
    engine = VllmEngine(tiny_model_path, max_loras=2, lora_rank=4, backend=_fake_vllm())
    assert engine.llm.kwargs["enable_lora"] is True and engine.llm.kwargs["max_lora_rank"] == 8
    assert engine.llm.kwargs["max_loras"] == 2 and engine.llm.kwargs["model"] == tiny_model_path
    population = engine.population(list(adapters), adapters)
    reference = PopulationModel(
        tiny_model_path, list(adapters), LoraSpec(r=4), adapter_dirs=adapters
    )
    requests = [
        _choice("agent_00", ("A", "B", "C"), "Pick a letter."),
        _choice("agent_01", ("Strongly agree", "Disagree", "30%"), "How much?"),
        _choice("agent_01", ("A", "B", "C"), "Pick a letter."),
        _choice("agent_00", ("Strongly agree", "Disagree", "30%"), "How much?"),
    ]
    got, expected = population.score(requests), reference.score(requests)
    assert [s.scoring for s in got] == [Scoring.NEXT_TOKEN, Scoring.SEQUENCE] * 2
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g.scoring == e.scoring
        # one unpadded row per prompt here, a padded batch there: other GEMM shapes
        assert_close(g.logprobs, e.logprobs, TINY_LOGITS_ATOL, f"logprobs of request {i}")
        assert_close(g.probs, e.probs, PROB_ATOL, f"probs of request {i}")
    assert got[0].probs != got[2].probs  # the two agents' adapters differ

    # one generate call: a prompt per single-token choice, one per option otherwise
    ((prompts, params, loras),) = engine.llm.calls
    assert len(prompts) == 1 + 3 + 1 + 3
    assert [lora.lora_path for lora in loras] == [
        str(adapters[a].resolve()) for a in ["agent_00"] + ["agent_01"] * 4 + ["agent_00"] * 3
    ]
    assert params[0].logprob_token_ids == [population.option_tokens(o)[0] for o in "ABC"]
    option = population.option_tokens("Strongly agree")
    assert params[1].prompt_logprob_token_ids == [[t] for t in option]
    assert prompts[1]["prompt_token_ids"][params[1].prompt_logprob_start + 1 :] == list(option)


def test_engine_choose_samples_from_the_callers_draws(tiny_model_path, adapters):
    population = VllmEngine(tiny_model_path, max_loras=2, backend=_fake_vllm()).population(
        list(adapters), adapters
    )
    requests = [_choice("agent_00", ("A", "B", "C", "D"), "Pick.")] * 3
    uniforms = [0.05, 0.5, 0.95]
    chosen = population.choose(requests, 0.7, uniforms)
    for (scores, action), u in zip(chosen, uniforms, strict=True):
        assert action == "ABCD"[sample_index(scores.logprobs, 0.7, u)]
    with pytest.raises(ValueError, match="one uniform draw per request"):
        population.choose(requests, 0.7, uniforms[:2])
    with pytest.raises(KeyError, match="agent_07"):
        population.score([_choice("agent_07", ("A", "B"), "Pick.")])


def test_engine_generate_replies_passes_seeds_budget_and_stop(tiny_model_path, adapters):
    engine = VllmEngine(tiny_model_path, max_loras=2, backend=_fake_vllm())
    population = engine.population(list(adapters), adapters)
    tok = population.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    engine.llm.reply_ids = tok(" My answer is B.", add_special_tokens=False).input_ids + [end]
    messages = (Message("user", "Answer?"),)
    requests = [TextRequest("agent_01", messages, 64), TextRequest("agent_00", messages, 3)]
    replies = population.generate_replies(requests, temperature=0.5, seed=77)
    short = tok.decode(engine.llm.reply_ids[:3], skip_special_tokens=True).strip()
    assert replies == ["My answer is B.", short]
    ((_, params, loras),) = engine.llm.calls
    assert [(p.max_tokens, p.temperature, p.seed, p.stop_token_ids) for p in params] == [
        (64, 0.5, row_seed(77, 0), [end]),
        (3, 0.5, row_seed(77, 1), [end]),
    ]
    assert [lora.lora_name for lora in loras] == ["agent_01@2", "agent_00@1"]
    # the games' and probes' entry point hands a VllmPopulation to this method
    from societies.text_generation import generate_replies

    assert generate_replies(population, requests, temperature=0.5, seed=77) == replies
    assert len(engine.llm.calls) == 2 and engine.llm.calls[1][1][1].seed == row_seed(77, 1)


def test_engine_checks_lora_slots_and_adapter_ranks(tiny_model_path, adapters):
    with pytest.raises(ValueError, match="1 <= max_loras <= max_cpu_loras"):
        VllmEngine(tiny_model_path, max_loras=4, max_cpu_loras=2, backend=_fake_vllm())
    engine = VllmEngine(tiny_model_path, max_loras=2, max_cpu_loras=6, backend=_fake_vllm())
    assert (engine.llm.kwargs["max_loras"], engine.llm.kwargs["max_cpu_loras"]) == (2, 6)
    narrow = VllmEngine(tiny_model_path, max_loras=2, lora_rank=1, backend=_fake_vllm())
    assert narrow.max_lora_rank == 1
    with pytest.raises(ValueError, match=r"above the engine's max_lora_rank=1: \{'agent_00': 4"):
        narrow.population(list(adapters), adapters)  # the fixture's adapters have r=4


# ----- Experiment on the vLLM engine: FAKE vLLM (plumbing only) ----------------------
@pytest.fixture
def fake_vllm(monkeypatch):
    """The fake ``vllm`` module in ``sys.modules``; ``built`` lists every fake ``LLM``."""
    fake = _fake_vllm()
    fake.built = []

    def llm(**kwargs):
        fake.built.append(_TorchLLM(**kwargs))
        return fake.built[-1]

    fake.LLM = llm
    monkeypatch.setitem(sys.modules, "vllm", fake)
    return fake


def test_fake_experiment_population_is_a_view_of_one_vllm_engine(tmp_path, fake_vllm):
    from trainer.generation_loop import Experiment

    overrides = {"model.engine": "vllm", "model.vllm_max_loras": 3, "population.size": 6}
    experiment = Experiment(tiny_experiment_config(tmp_path, **overrides), progress=False)
    experiment.prepare()  # the vLLM check passes with the fake module
    experiment.ensure_initial_adapters()
    start = experiment.start_adapters(0)
    population = experiment.population(start)
    assert isinstance(population, VllmPopulation)
    assert population.agents == experiment.llm_agents == [f"agent_{i:02d}" for i in range(6)]
    assert {a: slot.lora_path for a, slot in population.slots.items()} == {
        a: str(experiment.layout.initial_adapter(a).resolve()) for a in population.agents
    }
    assert population.batch_size == 8  # model.batch_size of the tiny overrides
    (llm,) = fake_vllm.built
    kwargs = dict(llm.kwargs)
    assert kwargs.pop("model") == kwargs.pop("tokenizer") == experiment.model_path
    assert kwargs == {
        "enable_lora": True,
        "max_loras": 3,
        "max_cpu_loras": 6,  # every agent's adapter stays loaded in CPU memory
        "max_lora_rank": 8,  # lora.r of the quickstart
        "dtype": "auto",
        "seed": 0,
        "enable_prefix_caching": True,
        "gpu_memory_utilization": DEFAULT_GPU_MEMORY_UTILIZATION,
    }
    assert DEFAULT_GPU_MEMORY_UTILIZATION == 0.5  # what ModelConfig's docstring promises
    # a transplant-like swap: another view of the same engine, the same folder's LoRA id
    swapped = {**start, "agent_01": start["agent_00"]}
    again = experiment.population(swapped)
    assert again.engine is population.engine and len(fake_vllm.built) == 1
    assert again.slots["agent_01"].lora_int_id == population.slots["agent_00"].lora_int_id
    assert again.slots["agent_01"].lora_name == "agent_01@1"


def test_fake_crossover_and_defaults_size_the_vllm_engine(tmp_path, fake_vllm, adapters):
    from trainer.generation_loop import Experiment

    overrides = {
        "model.engine": "vllm",
        "population.size": 2,
        "game.pairs_per_round": 1,
        "game.num_names": 2,
        "probe.orders": 2,
        "evolution.survive": 0.5,
        "evolution.immigrants": 0.5,
        "evolution.crossover": True,
        "evolution.max_rank": 24,
    }
    experiment = Experiment(tiny_experiment_config(tmp_path, **overrides), progress=False)
    experiment.population(adapters)
    (llm,) = fake_vllm.built
    # cat crossovers make adapters up to evolution.max_rank=24 wide: vLLM's next rank is 32
    assert (llm.kwargs["max_lora_rank"], llm.kwargs["max_loras"]) == (32, 2)


def test_fake_tiny_run_rolls_out_and_probes_on_the_vllm_engine(tmp_path, fake_vllm):
    from societies.population import PopulationModel
    from societies.probes import prior_probe
    from trainer.generation_loop import Experiment
    from trainer.run_records import read_probes

    result = run_tiny(tmp_path, **{"model.engine": "vllm", "run.generations": 1})
    layout = RunLayout(result.run_dir)
    assert (layout.generation(0) / "COMPLETE").is_file()
    (llm,) = fake_vllm.built  # one engine for the probe before, the rounds, the probe after
    used = [{lora.lora_path for lora in loras} for _, _, loras in llm.calls]
    initial = {str(layout.initial_adapter(f"agent_{i:02d}").resolve()) for i in range(4)}
    distilled = {str(layout.adapter(0, f"agent_{i:02d}").resolve()) for i in range(4)}
    # probe before + 4 rounds on the initial adapters, then the probe after on gen 0's
    assert len(used) == 1 + 4 + 1
    assert all(u <= initial for u in used[:-1]) and used[-1] == distilled
    decisions = [json.loads(x) for x in layout.transcripts(0).read_text().splitlines()]
    assert len(decisions) == 4 * 4 and {d["scoring"] for d in decisions} == {"next_token"}
    # the priors the loop recorded from vLLM-shaped outputs equal the torch engine's
    experiment = Experiment.from_run_dir(result.run_dir, progress=False)
    torch_population = PopulationModel(
        experiment.model_path,
        experiment.llm_agents,
        experiment.lora,
        adapter_dirs=experiment.start_adapters(0),
        engine="multi_lora",
    )
    expected = prior_probe(
        torch_population, experiment.game, experiment.llm_agents, experiment.probe_orders
    )
    recorded = read_probes(layout, 0)["before"]
    for agent, prior in expected.items():
        names = sorted(prior.probs)
        assert_close(
            [recorded[agent].probs[n] for n in names],
            [prior.probs[n] for n in names],
            PROB_ATOL,
            f"prior of {agent}",
        )
