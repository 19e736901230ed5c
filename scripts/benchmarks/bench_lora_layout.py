"""Benchmark: the LoRA down-projection's layout, plain ``bmm(x, A)`` vs transposed.

The rank (8) is tiny next to the model width, and the CPU's BLAS handles a product with
an 8-column output far worse than the same product with 8 rows
(societies.stacked_lora_linear.LoraDown). This times one pass over the embedded model's
30 layers x 7 adapted linears (SmolLM2-135M shapes) with both layouts, in one run:

- training: one agent's step of the protocol's distillation (1 slot x 1144 tail tokens),
  forward and backward of the adapter path (x carries a gradient, as in every layer but
  the first);
- rollout: one round of the protocol's choice scoring (24 slots x 156 uncached tokens),
  forward only.

The base linears of the same shapes are timed too: the adapter path's cost is read
against them.

Usage: python scripts/benchmarks/bench_lora_layout.py
"""

from __future__ import annotations

import json

import torch
from common import machine, timed_interleaved

from societies.stacked_lora_linear import LoraDown

# (in_features, out_features) of q, k, v, o, gate, up, down in SmolLM2-135M.
SHAPES = ((576, 576), (576, 192), (576, 192), (576, 576), (576, 1536), (576, 1536), (1536, 576))
LAYERS = 30
RANK = 8


def _plain(x, A):
    return torch.bmm(x, A)


def _pass(down, slots: int, tokens: int, backward: bool, base: bool = False):
    """A closure running every adapted linear of one layer once; the caller times it."""
    gen = torch.Generator().manual_seed(0)
    parts = []
    for d_in, d_out in SHAPES:
        x = torch.randn(slots, tokens, d_in, generator=gen, requires_grad=backward)
        A = torch.randn(slots, d_in, RANK, generator=gen, requires_grad=backward)
        B = torch.randn(slots, RANK, d_out, generator=gen, requires_grad=backward)
        W = torch.randn(d_out, d_in, generator=gen)
        parts.append((x, A, B, W))

    def run() -> None:
        for x, A, B, W in parts:
            out = torch.nn.functional.linear(x, W) if base else torch.bmm(down(x, A), B)
            if backward:
                out.backward(torch.ones_like(out))

    def layer() -> None:
        if backward:
            run()
        else:
            with torch.inference_mode():
                run()

    return layer


def run(repeats: int = 10) -> dict:
    out = {"rank": RANK, "layers": LAYERS, "shapes": [list(s) for s in SHAPES]}
    for name, slots, tokens, backward in (
        ("training", 1, 1144, True),
        ("rollout", 24, 156, False),
    ):
        paths = {
            "plain": _pass(_plain, slots, tokens, backward),
            "transposed": _pass(LoraDown.apply, slots, tokens, backward),
            "base_linears": _pass(None, slots, tokens, backward, base=True),
        }
        for fn in paths.values():
            fn()  # warm-up
        seconds = timed_interleaved(paths, repeats)
        out[name] = {
            "slots": slots,
            "tokens_per_slot": tokens,
            "backward": backward,
            **{f"{k}_ms_per_pass": 1e3 * v * LAYERS for k, v in seconds.items()},
            "speedup": seconds["plain"] / seconds["transposed"],
        }
    return out


def main() -> None:
    print(json.dumps({"machine": machine(), "lora_layout": run()}, indent=2))


if __name__ == "__main__":
    main()
