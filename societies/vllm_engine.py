"""vLLM rollouts (GPU, optional): the interaction phase with one ``LoRARequest`` per agent.

**What was and was not run.** No GPU was available where this was written, and vLLM
0.33.0 pins ``torch==2.14.0`` and ``transformers<5.21`` while folkways pins
``transformers==5.23.0``, so vLLM was never installed beside folkways and
**vLLM itself was never run**: not on a GPU, not on a CPU. Not known, therefore:
whether vLLM's LoRA kernels and log-probabilities match the torch engines to any
tolerance, how fast it is, and whether the calls below work unchanged at runtime.
What *was* run (``tests/test_vllm_engine.py``, CPU, no vLLM): the import guard and its
message; the pure parts (LoRA id allocation, rank rounding, turning vLLM-shaped outputs
into option scores); and this module's ``score``/``choose``/``generate_replies`` against
a **fake** ``LLM`` that implements the output contract described below with the tiny
torch model, compared with :class:`societies.population.PopulationModel`. The argument
and field names were read from the vllm-0.33.0 wheel's source
(``vllm/sampling_params.py``, ``vllm/outputs.py``, ``vllm/lora/request.py``,
``vllm/entrypoints/llm.py``), not executed.

**Install** (its own environment; untested here)::

    python3.11 -m venv .venv-vllm
    .venv-vllm/bin/pip install vllm==0.33.0
    .venv-vllm/bin/pip install --no-deps -e .
    .venv-vllm/bin/pip install pyyaml tqdm safetensors numpy pettingzoo==1.27.0 gymnasium

That serves this module. A whole ``folkways run`` with ``model.engine=vllm`` also creates
and distils adapters on the torch path, so the same environment needs peft, trl,
accelerate and datasets too, at versions that accept vLLM's ``transformers<5.21`` (folkways
pins them for transformers 5.23): unresolved and untested.

**Interface**: :class:`VllmPopulation` answers what the rollouts ask of
:class:`~societies.population.PopulationModel`: ``score(requests)``,
``choose(requests, temperature, uniforms)`` (sampled with :func:`sample_index` from the
caller's seeded uniforms, exactly as the torch engines do), ``render(messages)``,
``tokenizer``, ``agents``; free text through ``generate_replies(requests, temperature,
seed)``, to which ``societies.text_generation.generate_replies`` dispatches. Selected by
``model.engine=vllm`` (``trainer.config.ModelConfig``): ``Experiment.population`` builds one
:class:`VllmEngine` (the ``LLM``, tens of seconds to build) on first use and keeps it for
every generation of the run; :meth:`VllmEngine.population` makes each per-generation view.
Adapters are still created, evolved and distilled by the torch path (PEFT/TRL), in the same
process: vLLM is for rollouts and probes only (this class has no ``save_adapter``).

**Scoring fixed options** (vLLM 0.33.0 API; ``logprobs_mode="raw_logprobs"``, the
default, is the log-softmax of the raw logits at temperature 1 — what the torch
engines compute):

- every option one token (``Scoring.NEXT_TOKEN``): one request per choice, ``max_tokens=1``
  and ``SamplingParams(logprob_token_ids=[option ids])``; the first generated position's
  ``outputs[0].logprobs[0]`` maps each requested id to a ``Logprob``;
- longer options (``Scoring.SEQUENCE``): one request per (choice, option) whose prompt is
  the prompt's ids followed by the option's, with ``prompt_logprob_token_ids=[[o_1], ...,
  [o_k]]`` and ``prompt_logprob_start=len(prompt) - 1``: row ``i`` of
  ``RequestOutput.prompt_token_id_logprobs`` is ``log p(o_{i+1} | prompt, o_<=i)``; the
  option's score is the rows' sum (``societies.option_scoring``'s quantity). vLLM's
  prefix cache shares the prompt's KV between a choice's options.

Prompts are rendered and tokenized by the Hugging Face tokenizer exactly as
``PopulationModel`` does and passed as token ids, so both engines see the same tokens.
Sampled free text uses vLLM's per-request seeds: reproducible within vLLM (same
version and GPU), never equal to the torch engines' draws.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from societies.choices import ChoiceRequest, OptionScores, choose_scored, tokenize_option
from societies.records import Message, Scoring
from societies.vllm_requests import (
    MAX_LOGPROB_TOKEN_IDS,
    LoraRegistry,
    next_token_option_logprobs,
    option_scores,
    sequence_option_logprob,
    vllm_max_lora_rank,
)

VLLM_PIN = "vllm==0.33.0"
# Share of the GPU vLLM reserves for the run (weights + KV cache) when the config leaves
# model.vllm_gpu_memory_utilization null. Not vLLM's 0.9: the torch distillation runs in
# the same process on the same GPU and needs the rest. A guess: never measured (no GPU).
DEFAULT_GPU_MEMORY_UTILIZATION = 0.5

INSTALL_HINT = (
    f"the vLLM rollout engine needs {VLLM_PIN}, which is not installed. It cannot share "
    "folkways' training environment (vllm 0.33.0 pins torch==2.14.0 and transformers<5.21; "
    "folkways pins transformers==5.23.0): install it in its own environment on a GPU "
    "machine: python3.11 -m venv .venv-vllm && .venv-vllm/bin/pip install "
    f"{VLLM_PIN} && .venv-vllm/bin/pip install --no-deps -e . && .venv-vllm/bin/pip "
    "install pyyaml tqdm safetensors numpy pettingzoo==1.27.0 gymnasium; then run the "
    "rollouts from .venv-vllm (or use engine multi_lora, which needs no vLLM)"
)


class VllmNotInstalled(ImportError):
    """vLLM is not importable; the message says how to install it apart from folkways."""


def import_vllm():
    """The ``vllm`` module, or :class:`VllmNotInstalled` with :data:`INSTALL_HINT`."""
    try:
        return importlib.import_module("vllm")
    except ImportError as err:
        raise VllmNotInstalled(f"{INSTALL_HINT} ({type(err).__name__}: {err})") from None


# ----- the engine --------------------------------------------------------------------
class VllmEngine:
    """A vLLM ``LLM`` with LoRA enabled, built once and used for every generation.

    Args:
        model_path: the base model folder (for the embedded model: the dequantized cache
            ``folkways model prepare`` writes, so vLLM runs the weights the adapters were
            trained on, not the hub's).
        max_loras: adapters in one batch: the number of LLM agents.
        max_cpu_loras: adapters vLLM keeps loaded in CPU memory (>= ``max_loras``);
            default ``max_loras``.
        lora_rank: the largest LoRA rank of any adapter it will serve (rounded up to a
            rank vLLM accepts); :class:`VllmPopulation` rejects wider adapters.
        dtype: ``"auto"`` lets vLLM downcast the float32 cache to bfloat16 (or float16).
            Not ``"float32"``: vLLM 0.33's Triton LoRA kernels accept only float16/bfloat16
            adapter weights (an assert in ``vllm/lora/ops/triton_ops/lora_expand_op.py``),
            and LoRA weights take the model's dtype. So vLLM rollouts are never
            float32-equal to the torch engines' (CPU, float32) scores.
        backend: the ``vllm`` module (tests pass a fake); default: imported, or
            :class:`VllmNotInstalled`.
        llm_kwargs: passed to ``vllm.LLM`` (e.g. ``gpu_memory_utilization``).
    """

    def __init__(
        self,
        model_path: str,
        *,
        max_loras: int,
        max_cpu_loras: int | None = None,
        lora_rank: int = 8,
        dtype: str = "auto",
        seed: int = 0,
        backend=None,
        **llm_kwargs,
    ) -> None:
        max_cpu_loras = max_loras if max_cpu_loras is None else max_cpu_loras
        if not 1 <= max_loras <= max_cpu_loras:  # vllm/config/lora.py checks the same
            raise ValueError(
                f"max_loras={max_loras}, max_cpu_loras={max_cpu_loras}; expected "
                "1 <= max_loras <= max_cpu_loras"
            )
        self.vllm = backend if backend is not None else import_vllm()
        self.model_path = str(model_path)
        self.registry = LoraRegistry()
        self.max_lora_rank = vllm_max_lora_rank(lora_rank)
        self.llm = self.vllm.LLM(
            model=self.model_path,
            tokenizer=self.model_path,
            enable_lora=True,
            max_loras=max_loras,
            max_cpu_loras=max_cpu_loras,
            max_lora_rank=self.max_lora_rank,
            dtype=dtype,
            seed=seed,
            enable_prefix_caching=True,
            **llm_kwargs,
        )

    def population(
        self, agents: Sequence[str], adapter_dirs: Mapping[str, str | Path], batch_size: int = 32
    ) -> VllmPopulation:
        """This generation's agents, each with its adapter folder."""
        return VllmPopulation(self, agents, adapter_dirs, batch_size)


class VllmPopulation:
    """The population interface of the rollouts, served by a :class:`VllmEngine`.

    ``batch_size`` is kept for the interface; vLLM schedules the batch itself, so every
    call hands it all its requests at once.
    """

    def __init__(
        self,
        engine: VllmEngine,
        agents: Sequence[str],
        adapter_dirs: Mapping[str, str | Path],
        batch_size: int = 32,
    ) -> None:
        from transformers import AutoTokenizer

        missing = [a for a in agents if a not in adapter_dirs]
        if missing:
            raise ValueError(f"vLLM loads adapters from folders; no folder for {missing[:3]}")
        self.engine = engine
        self.agents = list(agents)
        self.batch_size = batch_size
        self.slots = {a: engine.registry.slot(a, adapter_dirs[a]) for a in self.agents}
        ranks = {a: _adapter_rank(adapter_dirs[a]) for a in self.agents}
        too_wide = {a: r for a, r in ranks.items() if r > engine.max_lora_rank}
        if too_wide:  # vLLM would fail on them mid-rollout
            raise ValueError(
                f"adapters of LoRA rank above the engine's max_lora_rank="
                f"{engine.max_lora_rank}: {dict(list(too_wide.items())[:3])}; build the "
                f"VllmEngine with lora_rank >= {max(too_wide.values())}"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(engine.model_path)
        self._option_tokens: dict[str, tuple[int, ...]] = {}
        self._boundaries_checked: set[tuple[str, str]] = set()

    # ----- prompts (as PopulationModel) ---------------------------------------------
    def render(self, messages: Sequence[Message]) -> str:
        return self.tokenizer.apply_chat_template(
            [m.to_dict() for m in messages], tokenize=False, add_generation_prompt=True
        )

    def option_tokens(self, option: str) -> tuple[int, ...]:
        if option not in self._option_tokens:
            self._option_tokens[option] = tokenize_option(self.tokenizer, option)
        return self._option_tokens[option]

    def _prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        return self.tokenizer(self.render(messages), add_special_tokens=False).input_ids

    def _lora(self, agent: str):
        slot = self.slots[agent]
        return self.engine.vllm.LoRARequest(slot.lora_name, slot.lora_int_id, slot.lora_path)

    # ----- scoring -------------------------------------------------------------------
    def score(self, requests: Sequence[ChoiceRequest]) -> list[OptionScores]:
        """Option scores for every request, in request order (one ``generate`` call)."""
        vllm = self.engine.vllm
        prompts, params, loras, plan = [], [], [], []
        for request in requests:
            if request.agent not in self.slots:
                raise KeyError(f"agent {request.agent!r} has no adapter in this population")
            if len(set(request.options)) != len(request.options):
                raise ValueError(f"options must be distinct, got {request.options}")
            ids = self._prompt_ids(request.messages)
            options = [self.option_tokens(o) for o in request.options]
            lora = self._lora(request.agent)
            if all(len(o) == 1 for o in options):
                if len(options) > MAX_LOGPROB_TOKEN_IDS:
                    raise ValueError(
                        f"{len(options)} options; vLLM scores at most {MAX_LOGPROB_TOKEN_IDS}"
                    )
                plan.append((Scoring.NEXT_TOKEN, len(prompts), [o[0] for o in options]))
                prompts.append(vllm.TokensPrompt(prompt_token_ids=ids))
                params.append(
                    vllm.SamplingParams(
                        max_tokens=1, temperature=0.0, logprob_token_ids=[o[0] for o in options]
                    )
                )
                loras.append(lora)
                continue
            from societies.option_scoring import check_boundary

            text = self.render(request.messages)
            for option, option_ids in zip(request.options, options, strict=True):
                check_boundary(self.tokenizer, text, option, option_ids, self._boundaries_checked)
            plan.append((Scoring.SEQUENCE, len(prompts), options))
            for option_ids in options:
                prompts.append(vllm.TokensPrompt(prompt_token_ids=ids + list(option_ids)))
                params.append(
                    vllm.SamplingParams(
                        max_tokens=1,
                        temperature=0.0,
                        prompt_logprob_token_ids=[[t] for t in option_ids],
                        prompt_logprob_start=len(ids) - 1,
                    )
                )
                loras.append(lora)
        if not prompts:
            return []
        outputs = self.engine.llm.generate(prompts, params, lora_request=loras, use_tqdm=False)
        results = []
        for scoring, first, option_ids in plan:
            if scoring is Scoring.NEXT_TOKEN:
                position = outputs[first].outputs[0].logprobs[0]
                lp = next_token_option_logprobs(position, option_ids)
            else:
                lp = np.array(
                    [
                        sequence_option_logprob(outputs[first + j].prompt_token_id_logprobs, ids)
                        for j, ids in enumerate(option_ids)
                    ]
                )
            results.append(option_scores(lp, scoring))
        return results

    def choose(
        self, requests: Sequence[ChoiceRequest], temperature: float, uniforms: Sequence[float]
    ) -> list[tuple[OptionScores, str]]:
        """As :meth:`PopulationModel.choose`: scored here, sampled from the caller's draws."""
        return choose_scored(self.score, requests, temperature, uniforms)

    # ----- free text -----------------------------------------------------------------
    def generate_replies(self, requests: Sequence, temperature: float, seed: int) -> list[str]:
        """Replies to ``TextRequest`` s (``societies.text_generation``), in request order.

        Row ``i`` samples with vLLM seed ``row_seed(seed, i)``; temperature 0 is greedy.
        Decoding stops at the chat's end-of-turn token; the text is decoded by the
        Hugging Face tokenizer as ``generate_replies`` does.
        """
        from societies.text_generation import _eos

        if not requests:
            return []
        vllm = self.engine.vllm
        eos = _eos(self.tokenizer)
        prompts = [
            vllm.TokensPrompt(prompt_token_ids=self._prompt_ids(r.messages)) for r in requests
        ]
        params = [
            vllm.SamplingParams(
                max_tokens=r.max_new_tokens,
                temperature=temperature,
                seed=row_seed(seed, i),
                stop_token_ids=[eos] if eos is not None else None,
            )
            for i, r in enumerate(requests)
        ]
        loras = [self._lora(r.agent) for r in requests]
        outputs = self.engine.llm.generate(prompts, params, lora_request=loras, use_tqdm=False)
        return [
            self.tokenizer.decode(
                list(out.outputs[0].token_ids)[: r.max_new_tokens], skip_special_tokens=True
            ).strip()
            for out, r in zip(outputs, requests, strict=True)
        ]


def _adapter_rank(folder: str | Path) -> int:
    """The largest LoRA rank in a PEFT folder's ``adapter_config.json``."""
    path = Path(folder) / "adapter_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; expected a PEFT LoRA folder")
    config = json.loads(path.read_text())
    return max([int(config["r"]), *map(int, (config.get("rank_pattern") or {}).values())])


def row_seed(seed: int, row: int) -> int:
    """A per-row sampling seed from the round's seed: independent streams per row."""
    state = np.random.SeedSequence([seed % 2**63, row]).generate_state(2, np.uint64)
    return int(state[0] % np.uint64(2**63))
