"""Batched multi-LoRA: many agents' adapters applied in one forward, one op per layer.

Each target ``nn.Linear`` of the base model is wrapped by a :class:`StackedLoraLinear`
that holds every agent's LoRA factors stacked as ``A: [N, in, r]`` and
``B: [N, r, out]``. A forward call names one adapter per row; each wrapper then computes

    y = x W^T + scaling * bmm(bmm(x, A[rows]), B[rows])

with one ``baddbmm`` for all rows, never a loop over adapters (PEFT's mixed batch loops
over the distinct adapters inside every LoRA layer, PEFT 0.21).

Why the weights are gathered once per call, not per layer call: we measured a
prototype that gathered the stacked weights on every decode step at 65% of base-model
throughput, against 86% without the gather. Here :meth:`MultiLoraEngine.select` gathers
``A[rows]`` and ``B[rows]`` once and every later forward (all decode steps of a
``generate``) reuses them. When the rows are consecutive stacked agents, each repeated
``k`` times in a run (``k = 1``: the stack in order; ``k > 1``: rows grouped by agent,
as distillation batches them), the stacked tensors are used as views with no copy at
all, and each agent's ``k`` rows form one bmm operand.

Adapters come from standard PEFT folders and go back to them (:meth:`save_adapter`),
so nothing else in the project needs to know about the stacked layout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from societies.decoding import greedy_or_sampled_decode, left_padded_positions
from societies.lora_folders import (
    lora_scaling,
    read_adapter_folder,
    read_peft_model,
    write_adapter_folder,
)
from societies.stacked_lora_linear import (
    AdapterShape,
    StackedLoraLinear,
    get_submodule_or_none,
    linear_layer_paths,
    set_submodule,
    with_zero_slot,
)

__all__ = [
    "NO_ADAPTER",
    "AdapterShape",
    "MultiLoraEngine",
    "StackedLoraLinear",
    "greedy_or_sampled_decode",
    "left_padded_positions",
]

NO_ADAPTER = -1
"""Row index meaning "base model only" (PEFT's ``"__base__"``)."""


class MultiLoraEngine:
    """A base causal LM whose target linears carry N stacked LoRA adapters.

    Build with :meth:`from_adapter_dirs` or :meth:`from_peft_model`. The engine wraps the
    base model's linear layers in place; outside :meth:`select` the model computes the
    plain base model.

    Attributes:
        model: the wrapped base model (``AutoModelForCausalLM``); call it as usual
            inside ``with engine.select(indices):``.
        names: adapter (agent) names; ``names[i]`` is stacked index ``i``.
        layers: target module path -> its :class:`StackedLoraLinear`.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], shape: AdapterShape) -> None:
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"adapter names must be distinct and non-empty, got {list(names)}")
        self.model = model
        self.names = list(names)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.shape = shape
        self.scalings = [1.0] * len(self.names)
        # adapter name -> its adapter_config.json contents, written back by save_adapter.
        self.configs: dict[str, dict] = {}
        self.layers: dict[str, StackedLoraLinear] = {}
        for path in shape.target_modules:
            module = model.get_submodule(path)
            if isinstance(module, StackedLoraLinear):
                raise ValueError(f"module {path!r} is already wrapped by another engine")
            if not isinstance(module, nn.Linear):
                raise TypeError(
                    f"target module {path!r} is {type(module).__name__}, expected nn.Linear"
                )
            wrapper = StackedLoraLinear(module, len(self.names), shape.rank)
            set_submodule(model, path, wrapper)
            self.layers[path] = wrapper

    # ----- construction --------------------------------------------------------------
    @classmethod
    def from_adapter_dirs(
        cls, base_model: nn.Module, adapter_dirs: Mapping[str, str | Path]
    ) -> MultiLoraEngine:
        """Stack the adapters of ``{name: PEFT folder}`` onto ``base_model`` (wrapped in place).

        Adapters may differ in rank (zero-padded to the largest), alpha and target
        modules (a module an adapter does not target gets zeros for it).
        """
        if not adapter_dirs:
            raise ValueError("from_adapter_dirs needs at least one adapter folder")
        loaded = {name: read_adapter_folder(path) for name, path in adapter_dirs.items()}
        modules = sorted({m for adapter in loaded.values() for m in adapter.factors})
        missing = [m for m in modules if get_submodule_or_none(base_model, m) is None]
        if missing:
            raise ValueError(
                f"adapter modules {missing[:3]}... are not in the base model; the folders were "
                "saved for a different architecture (keys must be 'base_model.model.<path>')"
            )
        shape = AdapterShape(max(a.rank for a in loaded.values()), tuple(modules))
        engine = cls(base_model, list(loaded), shape)
        for name, adapter in loaded.items():
            engine.set_adapter(name, adapter.factors, adapter.scaling)
            engine.configs[name] = dict(adapter.config)
        engine._set_dropout(max(a.dropout for a in loaded.values()))
        return engine

    @classmethod
    def with_zero_adapters(
        cls,
        base_model: nn.Module,
        names: Sequence[str],
        rank: int,
        target_modules: Sequence[str] | None = None,
        scaling: float = 1.0,
    ) -> MultiLoraEngine:
        """An engine whose adapters are all zero (each equals the base model).

        Args:
            target_modules: module paths or last names (``"q_proj"``); ``None`` means every
                ``nn.Linear`` except the output head (PEFT's ``"all-linear"``).
            scaling: recorded as each adapter's ``alpha / r`` (used by :meth:`save_adapter`).
        """
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        paths = linear_layer_paths(
            base_model, set(target_modules) if target_modules is not None else None
        )
        if not paths:
            raise ValueError(f"no nn.Linear in the model matches target_modules={target_modules}")
        engine = cls(base_model, names, AdapterShape(rank, tuple(paths)))
        engine.scalings = [scaling] * len(engine.names)
        return engine

    @classmethod
    def from_peft_model(
        cls, peft_model, adapter_names: Sequence[str] | None = None
    ) -> MultiLoraEngine:
        """Copy the named LoRA adapters of a ``PeftModel`` into a new engine.

        The PeftModel is left working: the engine wraps each LoRA layer's ``base_layer``,
        which is transparent outside :meth:`select`. Inside ``select`` run the model with
        PEFT's adapters disabled (``with peft_model.disable_adapter():``) or call
        :meth:`forward` / :meth:`generate` on ``engine.model``, which do this for you.
        Later changes to the PeftModel's adapters are not seen: rebuild or call
        :meth:`set_adapter`.
        """
        adapters, modules = read_peft_model(peft_model, adapter_names)
        base = peft_model.get_base_model()
        rank = max(a.rank for a in adapters.values())
        engine = cls(base, list(adapters), AdapterShape(rank, tuple(modules)))
        for name, adapter in adapters.items():
            engine.set_adapter(name, adapter.factors, adapter.scaling)
            engine.configs[name] = adapter.config
        engine._set_dropout(max(a.dropout for a in adapters.values()))
        engine._peft_model = peft_model
        return engine

    def _set_dropout(self, p: float) -> None:
        for layer in self.layers.values():
            layer.dropout = p

    # ----- adapters ------------------------------------------------------------------
    @torch.no_grad()
    def set_adapter(
        self, name: str, factors: Mapping[str, tuple[torch.Tensor, torch.Tensor]], scaling: float
    ) -> None:
        """Overwrite adapter ``name`` with PEFT-layout factors ``{path: (A [r,in], B [out,r])}``.

        Modules not in ``factors`` are zeroed.
        """
        i = self._index_of(name)
        unknown = sorted(set(factors) - set(self.layers))
        if unknown:
            raise KeyError(f"modules {unknown[:3]} are not targets of this engine")
        for path, layer in self.layers.items():
            layer.lora_A[i].zero_()
            layer.lora_B[i].zero_()
            if path in factors:
                a, b = factors[path]
                r = a.shape[0]
                layer.lora_A[i, :, :r].copy_(a.T)
                layer.lora_B[i, :r, :].copy_(b.T)
        self.scalings[i] = scaling

    def adapter_factors(self, name: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Adapter ``name`` in PEFT layout ``{path: (A [r,in], B [out,r])}`` (copies)."""
        i = self._index_of(name)
        return {
            path: (layer.lora_A[i].detach().T.clone(), layer.lora_B[i].detach().T.clone())
            for path, layer in self.layers.items()
        }

    def save_adapter(self, name: str, out_dir: str | Path, config: Mapping | None = None) -> Path:
        """Write adapter ``name`` as a standard PEFT folder loadable by ``PeftModel``.

        Args:
            config: the ``adapter_config.json`` contents (a ``LoraConfig.to_dict()``);
                defaults to the config the adapter was loaded with. Its ``r`` and
                ``lora_alpha`` must give the scaling this adapter was stacked with.
        """
        i = self._index_of(name)
        config = config if config is not None else self.configs.get(name)
        if config is None:
            raise ValueError(
                f"adapter {name!r} was not loaded from a PEFT folder or PeftModel: pass its "
                "LoraConfig as a dict (config=LoraConfig(...).to_dict())"
            )
        scaling = lora_scaling(config)
        if abs(scaling - self.scalings[i]) > 1e-9 * max(1.0, scaling):
            raise ValueError(
                f"config gives scaling {scaling} but adapter {name!r} was stacked with {self.scalings[i]}"
            )
        return write_adapter_folder(out_dir, self.adapter_factors(name), config)

    def _index_of(self, name: str) -> int:
        if name not in self.index:
            raise KeyError(
                f"no adapter named {name!r}; the engine holds {self.names[:5]}... ({len(self.names)})"
            )
        return self.index[name]

    def indices(self, names: Sequence[str | None]) -> torch.Tensor:
        """Row indices for adapter names; ``None`` or ``"__base__"`` means no adapter."""
        return torch.tensor(
            [NO_ADAPTER if n in (None, "__base__") else self._index_of(n) for n in names],
            dtype=torch.long,
        )

    # ----- selection -----------------------------------------------------------------
    @contextlib.contextmanager
    def select(self, agent_indices: torch.Tensor | Sequence[int]) -> Iterator[None]:
        """Within the block, row ``b`` of every forward uses adapter ``agent_indices[b]``.

        The rows' factors are gathered once here, not at every forward: all decode steps
        of a generation reuse them. No gather at all when the rows are consecutive
        adapters ``s, s+1, ...`` each repeated ``k`` times in a run (``k`` rows per agent,
        grouped): the stacked tensors are used as views and each agent's ``k`` rows form
        one bmm operand. Gradients reach the stacked parameters either way.
        ``-1`` = no adapter.
        """
        idx = torch.as_tensor(agent_indices, dtype=torch.long)
        if idx.ndim != 1 or idx.numel() == 0:
            raise ValueError(
                f"agent_indices must be a non-empty 1-D sequence, got shape {tuple(idx.shape)}"
            )
        n = len(self.names)
        if bool(((idx < NO_ADAPTER) | (idx >= n)).any()):
            raise ValueError(f"agent_indices must lie in [-1, {n - 1}], got {idx.tolist()}")
        layout = _layout(idx)
        scale = self._row_scales(idx, layout)
        try:
            for layer in self.layers.values():
                if layout is not None:
                    start, count, group = layout
                    rows_A = layer.lora_A[start : start + count]
                    rows_B = layer.lora_B[start : start + count]
                elif bool((idx == NO_ADAPTER).any()):
                    # A zero slot at the end for base rows: adds exactly 0.
                    rows_A = with_zero_slot(layer.lora_A)[idx]
                    rows_B = with_zero_slot(layer.lora_B)[idx]
                    group = 1
                else:
                    rows_A, rows_B, group = layer.lora_A[idx], layer.lora_B[idx], 1
                layer.set_rows(rows_A, rows_B, group, scale)
            yield
        finally:
            for layer in self.layers.values():
                layer.set_rows(None, None)

    def _row_scales(self, idx: torch.Tensor, layout) -> float | torch.Tensor:
        """One float if every selected adapter has the same scaling, else ``[slots, 1, 1]``."""
        scalings = torch.tensor(self.scalings + [0.0])  # the last entry: "no adapter" rows
        slots = torch.arange(layout[0], layout[0] + layout[1]) if layout is not None else idx
        chosen = scalings[slots]
        if bool((chosen == chosen[0]).all()):
            return float(chosen[0])
        return chosen.view(-1, 1, 1)

    # ----- inference -----------------------------------------------------------------
    def peft_disabled(self):
        """Context in which a PeftModel the engine was built from adds nothing of its own.

        Engines from :meth:`from_peft_model` wrap the LoRA layers' ``base_layer``; calls
        to ``engine.model`` must run inside this so that only the stacked adapters apply.
        A no-op for other engines.
        """
        peft_model = getattr(self, "_peft_model", None)
        return peft_model.disable_adapter() if peft_model is not None else contextlib.nullcontext()

    def row_order(self, agent_indices: torch.Tensor | Sequence[int]) -> torch.Tensor | None:
        """A permutation that sorts the rows into a gather-free layout, or ``None``.

        A round that scores every agent in a random order needs no weight gather if its
        rows are permuted into stack order first: permuting token ids costs nothing,
        gathering N adapters' weights copies ~10 MB per agent (r=8, 135M model).
        Returns ``None`` when the rows are already gather-free or sorting would not help
        (e.g. a subset of agents with gaps).
        """
        idx = torch.as_tensor(agent_indices, dtype=torch.long)
        if idx.ndim != 1 or idx.numel() == 0 or _layout(idx) is not None:
            return None
        perm = torch.argsort(idx, stable=True)
        return perm if _layout(idx[perm]) is not None else None

    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        agent_indices: torch.Tensor | Sequence[int],
        position_ids: torch.Tensor | None = None,
        logits_to_keep: int = 1,
    ) -> torch.Tensor:
        """Logits ``[B, logits_to_keep, V]`` with row ``b`` under adapter ``agent_indices[b]``.

        ``position_ids`` default to ``cumsum(attention_mask) - 1`` (correct for left padding).
        Rows are internally reordered into a gather-free layout when that is possible
        (:meth:`row_order`); the result is in the caller's row order.
        """
        idx = torch.as_tensor(agent_indices, dtype=torch.long)
        if position_ids is None:
            position_ids = left_padded_positions(attention_mask)
        perm = self.row_order(idx)
        if perm is not None:
            logits = self.forward(
                input_ids[perm], attention_mask[perm], idx[perm], position_ids[perm], logits_to_keep
            )
            return logits[torch.argsort(perm)]
        with self.select(idx), self.peft_disabled():
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                logits_to_keep=logits_to_keep,
                use_cache=False,
            )
        return out.logits

    @torch.inference_mode()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        agent_indices: torch.Tensor | Sequence[int] | None,
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
        eos_token_id: int | None = None,
    ) -> torch.Tensor:
        """Decode ``max_new_tokens`` for left-padded prompts, each row under its adapter.

        Returns the new tokens ``[B, max_new_tokens]``; after a row emits ``eos_token_id``
        it is filled with that id. ``agent_indices=None`` runs the base model (the
        benchmark's baseline through the same loop). Rows may be reordered internally
        as in :meth:`forward`; with ``temperature > 0`` the random draws then follow the
        sorted order (still deterministic for a given generator and batch).
        """
        if agent_indices is not None:
            idx = torch.as_tensor(agent_indices, dtype=torch.long)
            perm = self.row_order(idx)
            if perm is not None:
                tokens = self.generate(
                    input_ids[perm],
                    attention_mask[perm],
                    idx[perm],
                    max_new_tokens,
                    temperature=temperature,
                    generator=generator,
                    eos_token_id=eos_token_id,
                )
                return tokens[torch.argsort(perm)]
        ctx = self.select(agent_indices) if agent_indices is not None else contextlib.nullcontext()
        with ctx, self.peft_disabled():
            return greedy_or_sampled_decode(
                self.model,
                input_ids,
                attention_mask,
                max_new_tokens,
                temperature=temperature,
                generator=generator,
                eos_token_id=eos_token_id,
            )


def _layout(idx: torch.Tensor) -> tuple[int, int, int] | None:
    """``(start, count, group)`` if ``idx`` is ``start..start+count-1`` each repeated
    ``group`` times consecutively, else ``None``."""
    start = int(idx[0])
    if start < 0:
        return None
    group = int((idx == start).sum())
    if len(idx) % group:
        return None
    count = len(idx) // group
    expected = torch.arange(start, start + count).repeat_interleave(group)
    return (start, count, group) if torch.equal(idx, expected) else None
