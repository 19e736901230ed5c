"""One linear layer carrying N stacked LoRA adapters, one chosen per batch row.

Part of the batched multi-LoRA engine (:mod:`societies.multi_lora`): the layer math
and the helpers that find and replace a model's linear layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class AdapterShape:
    """What every stacked adapter shares: the rank the stacks are padded to.

    Attributes:
        rank: the largest LoRA rank among the adapters; smaller ranks are zero-padded
            (exact: the padded columns contribute 0).
        target_modules: module paths (relative to the base model) that carry LoRA.
    """

    rank: int
    target_modules: tuple[str, ...]


# Tokens per adapter slot from which the down-projection is computed transposed. Measured
# on a 2-core AMD EPYC (torch 2.13, fp32), one slot of 1248 tokens, rank 8: x @ A took
# 551 us for 576 -> 8 and 1215 us for 1536 -> 8, A^T @ x^T 190 and 518 us; A's gradient
# x^T @ g took 647 and 2161 us, (g^T @ x)^T 157 and 449 us. At one token per slot
# (decoding) the plain products are faster (12 vs 68 us).
TRANSPOSED_FROM_TOKENS = 16


def lora_down(x: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """``bmm(x, A)`` for ``x [slots, T, in]``, ``A [slots, in, r]``, in the fast layout."""
    if x.shape[1] < TRANSPOSED_FROM_TOKENS:
        return torch.bmm(x, A)
    return torch.bmm(A.transpose(1, 2), x.transpose(1, 2)).transpose(1, 2)


class LoraDown(torch.autograd.Function):
    """``bmm(x, A)`` for ``x [slots, T, in]``, ``A [slots, in, r]``, in the fast layout.

    The rank is tiny next to the model width, and the CPU's BLAS handles a product whose
    output is ``r`` columns wide far worse than the same product with ``r`` rows: the
    down-projection and ``A``'s gradient are computed transposed for long inputs
    (same values up to float rounding: both layouts are checked against bmm and by
    gradcheck in tests/test_multi_lora.py).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, A)
        return lora_down(x, A)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, A = ctx.saved_tensors
        grad_x = grad_A = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.bmm(grad, A.transpose(1, 2))
        if ctx.needs_input_grad[1]:
            if x.shape[1] < TRANSPOSED_FROM_TOKENS:
                grad_A = torch.bmm(x.transpose(1, 2), grad)
            else:
                grad_A = torch.bmm(grad.transpose(1, 2), x).transpose(1, 2)
        return grad_x, grad_A


class StackedLoraLinear(nn.Module):
    """An ``nn.Linear`` plus N stacked LoRA adapters, one chosen per batch row.

    Args:
        base: the frozen base linear layer (kept as is; its weights are shared).
        num_adapters: N, the number of stacked adapters.
        rank: the (padded) LoRA rank.

    With no selection active (:meth:`MultiLoraEngine.select` not entered) the layer
    returns exactly ``base(x)``, so the wrapped model still works as the base model.
    """

    def __init__(self, base: nn.Linear, num_adapters: int, rank: int) -> None:
        super().__init__()
        self.base = base
        dtype, device = base.weight.dtype, base.weight.device
        self.lora_A = nn.Parameter(
            torch.zeros(num_adapters, base.in_features, rank, dtype=dtype, device=device),
            requires_grad=False,
        )
        self.lora_B = nn.Parameter(
            torch.zeros(num_adapters, rank, base.out_features, dtype=dtype, device=device),
            requires_grad=False,
        )
        self.dropout = 0.0
        # Per-call working set: the rows' A and B, set by MultiLoraEngine.select.
        self._rows_A: torch.Tensor | None = None
        self._rows_B: torch.Tensor | None = None
        self._group = 1
        self._scale: float | torch.Tensor = 1.0

    def set_rows(
        self,
        rows_A: torch.Tensor | None,
        rows_B: torch.Tensor | None,
        group: int = 1,
        scale: float | torch.Tensor = 1.0,
    ) -> None:
        """Install (or clear, with ``None``) the per-row factors for the next forwards.

        ``group`` > 1 means each factor serves ``group`` consecutive batch rows (rows
        grouped by adapter): those rows are folded into one bmm operand, no gather.
        ``scale`` is the LoRA scaling: one float for all rows, or ``[slots, 1, 1]``.
        """
        self._rows_A, self._rows_B, self._group, self._scale = rows_A, rows_B, group, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self._rows_A is None:
            return out
        slots = self._rows_A.shape[0]
        if x.shape[0] != slots * self._group:
            raise ValueError(
                f"batch has {x.shape[0]} rows but the active adapter selection has "
                f"{slots * self._group}; call the model inside engine.select(...) with one "
                "index per row"
            )
        # [rows, T, in] -> [slots, group * T, in]: rows sharing an adapter are contiguous.
        x3 = x.reshape(slots, -1, x.shape[-1])
        if self.dropout and self.training:
            x3 = nn.functional.dropout(x3, p=self.dropout)
        # One bmm for the down-projection of all rows, one baddbmm that adds the
        # up-projection onto the base output in place of a separate add. The scaling is
        # not folded into B: training must see PEFT's parametrisation (Adam's step size
        # and gradient clipping are not invariant to rescaling B).
        if torch.is_grad_enabled() and (x3.requires_grad or self._rows_A.requires_grad):
            hidden = LoraDown.apply(x3, self._rows_A)
        else:
            # Inference (rollout, decode): the same products without autograd's Function
            # machinery, which cost ~29 us a call (~6 ms a decode step of 210 calls, 5%).
            hidden = lora_down(x3, self._rows_A)
        # In place on the base output, a fresh tensor no backward needs: saves copying
        # [tokens, out_features] floats per layer (baddbmm out of place copies its input).
        base3 = out.view(slots, -1, out.shape[-1])
        if isinstance(self._scale, torch.Tensor):
            base3.baddbmm_(hidden * self._scale, self._rows_B)
        else:
            base3.baddbmm_(hidden, self._rows_B, alpha=self._scale)
        return out


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def linear_layer_paths(model: nn.Module, suffixes: set[str] | None) -> list[str]:
    """Paths of the nn.Linear layers to wrap: all but the output head, or those named."""
    paths = []
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for path, module in model.named_modules():
        if not isinstance(module, nn.Linear) or module is output:
            continue
        if suffixes is None or path in suffixes or path.rsplit(".", 1)[-1] in suffixes:
            paths.append(path)
    return paths


def with_zero_slot(stack: torch.Tensor) -> torch.Tensor:
    return torch.cat([stack, stack.new_zeros(1, *stack.shape[1:])], dim=0)


def get_submodule_or_none(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None
