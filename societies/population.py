"""The population model: one shared base model, one LoRA adapter per agent.

Discrete actions are chosen from the next-token distribution over the options
(DESIGN.md, decision 3): one forward pass per batch, always a valid action, and the
whole renormalised distribution is recorded as the agent's belief. Options of more than
one token ("30%", "Strongly agree") are scored by their summed token log-probabilities
instead (:mod:`societies.option_scoring`; :class:`Scoring` records which). All agents acting
in a round are scored in one batched call, each row with its own adapter
(decision 4), through one of two engines:

- ``multi_lora`` (default): :class:`societies.multi_lora.MultiLoraEngine`, all adapters
  stacked per layer and applied with one batched matmul (benchmarks in the README);
- ``peft``: PEFT's mixed-adapter batch (``adapter_names=[...]``), which loops over the
  distinct adapters inside every LoRA layer; kept as the reference implementation.

This module knows nothing of games: it takes chat messages and option strings.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from societies.atomic import atomic_directory, scratch_directory
from societies.choices import ChoiceRequest, OptionScores, choose_scored, tokenize_option
from societies.lora_folders import canonicalize_adapter_config
from societies.population_spec import Engine, LoraSpec
from societies.records import Message, Scoring


class PopulationModel:
    """A base causal LM with one named LoRA adapter per agent.

    Args:
        model_path: directory (or hub id in the local cache) for ``from_pretrained``.
        agents: agent ids; each names its adapter.
        lora: the adapter shape (used for adapters created fresh).
        adapter_dirs: agent -> PEFT adapter folder to load; agents not listed get a
            fresh adapter (B = 0, so it starts equal to the base model) whose random A
            matrix is seeded by ``init_seeds[agent]``.
        batch_size: rows per forward pass.
        engine: ``"multi_lora"`` (stacked adapters, one matmul per layer; needs every
            agent's adapter folder) or ``"peft"`` (PEFT mixed batch; can create fresh adapters).
        prefix_cache: with the multi-LoRA engine, encode each agent's system message once
            and reuse its KV cache for every later prompt (issue 3; equal to the uncached
            path within fp32 rounding). Adapters never change inside a PopulationModel, so
            the cache lives as long as the model: one generation.
    """

    def __init__(
        self,
        model_path: str,
        agents: Sequence[str],
        lora: LoraSpec,
        *,
        adapter_dirs: Mapping[str, str | Path] | None = None,
        init_seeds: Mapping[str, int] | None = None,
        batch_size: int = 32,
        engine: Engine | str = Engine.PEFT,
        prefix_cache: bool = False,
    ) -> None:
        from peft import PeftModel, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch_engines = [e.value for e in Engine if e is not Engine.VLLM]
        if engine not in torch_engines:  # vLLM populations are VllmPopulation objects
            raise ValueError(
                f"engine={engine!r}; accepted: {torch_engines} (engine 'vllm': "
                "societies.vllm_engine.VllmPopulation, for rollouts and probes)"
            )
        self.engine_kind = Engine(engine)

        if not agents:
            raise ValueError("PopulationModel needs at least one agent")
        if len(set(agents)) != len(agents):
            raise ValueError(f"agent ids must be distinct, got {list(agents)}")
        self.agents = list(agents)
        self.lora = lora
        self.batch_size = batch_size
        adapter_dirs = dict(adapter_dirs or {})
        init_seeds = dict(init_seeds or {})
        unknown = sorted(set(adapter_dirs) - set(agents))
        if unknown:
            raise ValueError(f"adapter_dirs names agents not in the population: {unknown}")
        from societies.lora_folders import check_adapter_folder

        for path in adapter_dirs.values():
            check_adapter_folder(path)  # a damaged file is named here, before any loading

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # use_safetensors: never fall back to a pickled pytorch_model.bin.
        base = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=torch.float32, use_safetensors=True
        )
        base.eval()
        self._option_tokens: dict[str, tuple[int, ...]] = {}
        self._boundaries_checked: set[tuple[str, str]] = set()

        if self.engine_kind is Engine.MULTI_LORA:
            from societies.multi_lora import MultiLoraEngine

            missing = [a for a in self.agents if a not in adapter_dirs]
            if missing:
                raise ValueError(
                    f"engine 'multi_lora' loads adapters from folders; no folder for {missing[:3]} "
                    "(create fresh adapters with engine='peft' and save them first)"
                )
            self.multi_lora = MultiLoraEngine.from_adapter_dirs(
                base, {a: adapter_dirs[a] for a in self.agents}
            )
            self.model = self.multi_lora.model
            self.prefix_cache = None
            if prefix_cache:
                from societies.prefix_cache import PrefixCache

                self.prefix_cache = PrefixCache(
                    self.multi_lora, pad_token_id=self.tokenizer.pad_token_id
                )
            self._head_ids: dict[str, list[int]] = {}
            return

        if prefix_cache:
            raise ValueError("prefix_cache needs engine='multi_lora'")
        self.multi_lora = None
        self.prefix_cache = None
        model = None
        for agent in self.agents:
            if agent in adapter_dirs:
                path = str(adapter_dirs[agent])  # checked above: safetensors, whole
                if model is None:
                    model = PeftModel.from_pretrained(base, path, adapter_name=agent)
                else:
                    model.load_adapter(path, adapter_name=agent)
            else:
                seed = init_seeds.get(agent, 0)
                with _seeded_torch(seed):
                    if model is None:
                        model = get_peft_model(base, lora.peft_config(), adapter_name=agent)
                    else:
                        model.add_adapter(agent, lora.peft_config())
        model.eval()
        self.model = model

    # ----- prompts -------------------------------------------------------------------
    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text the model sees: chat template plus the assistant header."""
        return self.tokenizer.apply_chat_template(
            [m.to_dict() for m in messages], tokenize=False, add_generation_prompt=True
        )

    def option_tokens(self, option: str) -> tuple[int, ...]:
        """The option tokenized on its own (no special tokens): what the assistant writes
        first after the chat template's header (boundary: :mod:`societies.option_scoring`)."""
        if option not in self._option_tokens:
            self._option_tokens[option] = tokenize_option(self.tokenizer, option)
        return self._option_tokens[option]

    def option_token_id(self, option: str) -> int:
        """The single token an option is scored by; errors if the option is not one token."""
        ids = self.option_tokens(option)
        if len(ids) != 1:
            raise ValueError(
                f"option {option!r} is {len(ids)} tokens ({list(ids)}) for this tokenizer; "
                "next-token scoring needs single tokens (e.g. capital letters A-Z); "
                "score() scores such options by sequence"
            )
        return ids[0]

    def scoring_of(self, request: ChoiceRequest) -> Scoring:
        """``SEQUENCE`` if any option of ``request`` is not exactly one token."""
        if all(len(self.option_tokens(o)) == 1 for o in request.options):
            return Scoring.NEXT_TOKEN
        return Scoring.SEQUENCE

    # ----- scoring -------------------------------------------------------------------
    @torch.inference_mode()
    def score(self, requests: Sequence[ChoiceRequest]) -> list[OptionScores]:
        """Option scores for every request, ``batch_size`` rows per forward.

        Requests whose options are all single tokens are scored from the next-token
        distribution (in request order, batched as ever); the others by sequence
        (:mod:`societies.option_scoring`). Results are in request order.
        """
        known = set(self.agents)
        for request in requests:
            if request.agent not in known:
                raise KeyError(f"agent {request.agent!r} has no adapter in this population")
            if len(set(request.options)) != len(request.options):
                raise ValueError(f"options must be distinct, got {request.options}")
        kinds = [self.scoring_of(r) for r in requests]
        results: list[OptionScores | None] = [None] * len(requests)
        for kind, score_batch in (
            (Scoring.NEXT_TOKEN, self._score_batch),
            (Scoring.SEQUENCE, self._score_sequences),
        ):
            rows = [i for i, k in enumerate(kinds) if k is kind]
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                for i, scores in zip(chunk, score_batch([requests[i] for i in chunk]), strict=True):
                    results[i] = scores
        return results

    def _score_batch(self, requests: Sequence[ChoiceRequest]) -> list[OptionScores]:
        if self.prefix_cache is not None and all(len(r.messages) > 1 for r in requests):
            logits = self._cached_prefix_logits(requests)
        else:
            logits = self._full_logits(requests)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        results = []
        for row, request in enumerate(requests):
            ids = torch.tensor([self.option_token_id(o) for o in request.options])
            option_lp = logprobs[row, ids].double()
            results.append(OptionScores.from_logprobs(option_lp, Scoring.NEXT_TOKEN))
        return results

    def _score_sequences(self, requests: Sequence[ChoiceRequest]) -> list[OptionScores]:
        """Sequence scores: prompts run once, options continue from their KV."""
        from societies.option_scoring import score_sequences

        totals = score_sequences(self, requests)
        return [OptionScores.from_logprobs(t, Scoring.SEQUENCE) for t in totals]

    def _cached_prefix_logits(self, requests: Sequence[ChoiceRequest]) -> torch.Tensor:
        """Last-token logits [B, V], each agent's static head taken from the prefix cache."""
        full_ids = self._encode_prefixes(requests)
        return self.prefix_cache.forward([r.agent for r in requests], full_ids)

    def _encode_prefixes(self, requests: Sequence[ChoiceRequest]) -> list[list[int]]:
        """Bring each agent's cached head up to date; return the requests' prompt ids.

        The head is the system message and the first user message's opening paragraph
        (the rules: :func:`societies.prefix_cache.static_head_ids`), shortened to what
        all of the agent's prompts in this call share.
        """
        from societies.prefix_cache import static_head_ids, static_prefix_ids

        full_ids = [
            self.tokenizer(self.render(r.messages), add_special_tokens=False).input_ids
            for r in requests
        ]
        heads: dict[str, list[int]] = {}
        for request, ids in zip(requests, full_ids, strict=True):
            dicts = [m.to_dict() for m in request.messages]
            system = request.messages[0].content
            if system not in self._head_ids:
                self._head_ids[system] = static_prefix_ids(self.tokenizer, dicts, static_messages=1)
            head = static_head_ids(self.tokenizer, dicts, ids, self._head_ids[system])
            other = heads.get(request.agent)
            if other is not None and other != head:  # one agent, two heads: keep the shared part
                pairs = enumerate(zip(other, head, strict=False))
                n = next((i for i, (a, b) in pairs if a != b), None)
                head = (other if len(other) <= len(head) else head)[:n]
            heads[request.agent] = head
        stale = {a: h for a, h in heads.items() if self.prefix_cache.prefix_ids(a) != tuple(h)}
        self.prefix_cache.encode(stale)
        return full_ids

    def _full_logits(self, requests: Sequence[ChoiceRequest]) -> torch.Tensor:
        """Last-token logits [B, V] from one left-padded forward over the whole prompts."""
        texts = [self.render(r.messages) for r in requests]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        # Left padding: positions must count real tokens only, or a padded row would see
        # different rotary positions than the same prompt alone.
        position_ids = (enc.attention_mask.cumsum(-1) - 1).clamp(min=0)
        if self.multi_lora is not None:
            logits = self.multi_lora.forward(
                enc.input_ids,
                enc.attention_mask,
                self.multi_lora.indices([r.agent for r in requests]),
                position_ids=position_ids,
                logits_to_keep=1,
            )
        else:
            logits = self.model(
                input_ids=enc.input_ids,
                attention_mask=enc.attention_mask,
                position_ids=position_ids,
                adapter_names=[r.agent for r in requests],
                logits_to_keep=1,
            ).logits
        return logits[:, -1, :]

    def choose(
        self,
        requests: Sequence[ChoiceRequest],
        temperature: float,
        uniforms: Sequence[float],
    ) -> list[tuple[OptionScores, str]]:
        """Score all requests in one batched call and sample one option per row."""
        return choose_scored(self.score, requests, temperature, uniforms)

    # ----- adapters ------------------------------------------------------------------
    def save_adapter(self, agent: str, out_dir: str | Path) -> Path:
        """Write ``agent``'s adapter as a standard PEFT folder at ``out_dir`` (atomically)."""
        out_dir = Path(out_dir)
        if self.multi_lora is not None:
            with atomic_directory(out_dir) as tmp:
                self.multi_lora.save_adapter(agent, tmp)
            return out_dir
        with scratch_directory(out_dir) as scratch:
            self.model.save_pretrained(scratch, selected_adapters=[agent])
            # PEFT writes a non-"default" adapter into a sub-folder named after it.
            written = Path(scratch) / agent if (Path(scratch) / agent).is_dir() else Path(scratch)
            canonicalize_adapter_config(written)
            with atomic_directory(out_dir) as tmp:
                for item in written.iterdir():
                    if item.is_file():
                        shutil.move(str(item), tmp / item.name)
        return out_dir

    def adapter_state(self, agent: str) -> dict[str, torch.Tensor]:
        """A copy of ``agent``'s LoRA weights, keyed by parameter name (PEFT engine)."""
        from peft import get_peft_model_state_dict

        if self.multi_lora is not None:
            raise NotImplementedError(
                "adapter_state reads PEFT models; use multi_lora.adapter_factors"
            )

        return {
            k: v.detach().clone()
            for k, v in get_peft_model_state_dict(self.model, adapter_name=agent).items()
        }


@contextlib.contextmanager
def _seeded_torch(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
