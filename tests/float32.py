"""Tolerances of the test suite, each derived from float32 rounding, and one assert.

float32 keeps 24 bits: a unit roundoff of u = 2**-24 ~ 6e-8 per operation. Two
computations of the same quantity by different code paths (a stacked bmm vs PEFT's
Linear calls, another batch shape and so another GEMM blocking, another CPU's kernels:
Intel and AMD differ) agree only to the rounding each accumulates. Exact
equality is kept where the same process and kernels compute both sides (a replay, a
resume); every comparison across code paths uses a constant from here, whose comment
says where its size comes from.
"""

from __future__ import annotations

import numpy as np
import torch

# Logits of the tiny random Llama (2 layers, hidden 64, |logit| < ~1): each passes
# through ~10 dot products of length <= 256; rounding differences between two code
# paths stay below ~sqrt(256) * u * a few layers ~ 1e-6. 1e-5 leaves a 10x margin.
TINY_LOGITS_ATOL = 1e-5

# Logits of the embedded model (30 layers, hidden 576, |logit| ~ 20): relative rounding
# ~ 30 layers * sqrt(1536) * u ~ 1e-5 of |logit| ~ 2e-4 absolute.
EMBEDDED_LOGITS_ATOL = 2e-4

# Option probabilities are a softmax of logits: |dp| <= max|dz| / 2, so the logit
# tolerance carries over (tiny model; the renormalisation over options adds ~u).
PROB_ATOL = TINY_LOGITS_ATOL

# The same probabilities computed by the same code but in another batch (other rows,
# other padding): the GEMM shapes change and with them the summation order, so these
# differ by rounding too (seen: 1e-7 between an Intel and an AMD machine).
PROB_ATOL_OTHER_BATCH = TINY_LOGITS_ATOL

# Total softmax mass on the option tokens (~0.1): a sum of probabilities each off by
# |dz| relative, so relative error <= 2 max|dz| ~ 2e-5; 1e-4 leaves a 5x margin.
OPTION_MASS_RTOL = 1e-4

# Mean cross-entropy over a batch (~11 nats on the tiny model): u * 11 ~ 7e-7 per
# rounding; two summation orders differ by a few of those. 2e-5 is ~30 units.
LOSS_ATOL = 2e-5

# LoRA weights after AdamW steps can NOT be compared across float32 code paths with a
# tolerance derived from rounding: Adam divides each gradient element by its own running
# RMS, so an element whose gradient nearly cancels (sum of terms >> result) turns its
# rounding error into a step of up to the learning rate. Seen: 3.4e-6 between batched
# and separate training on an Intel Xeon, 6.4e-4 (grouped vs one pass, lr 5e-3) on an
# AMD EPYC, in single elements of layers.0.q_proj.lora_A. So trained weights of two code
# paths are compared in a float64 run. It is not all float64: transformers' Llama
# computes RMSNorm and the attention softmax in float32 whatever the model's dtype, so a
# float64 difference of ~1e-16 between two paths can flip a float32 rounding there and
# gradients differ by ~u32 ~ 6e-8 relative (not ~1e-16). Measured (AMD EPYC): weights
# 2.5e-8 apart (batched vs separate; grouped vs one pass < 1e-12, since those float32
# steps are per row and so see identical inputs). 1e-6 leaves a 40x margin, while a real
# bug (a learning rate 1% off, a batch in another order) moves weights by >1e-4 here.
ADAM_WEIGHTS_ATOL_FLOAT64 = 1e-6

# Per-step losses of the same float64 runs: the float32 steps inside the model leave
# ~u32 * |loss| ~ 6e-7 at worst; measured 5.6e-9. 1e-7 is 18x that.
LOSS_ATOL_FLOAT64 = 1e-7


def assert_close(actual, expected, atol: float, what: str) -> None:
    """``|actual - expected| <= atol`` elementwise; the failure names the largest gap.

    Accepts tensors, arrays, sequences of numbers, or dicts of those with equal keys.
    """
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), (
            f"{what}: keys differ: {sorted(actual)} vs {sorted(expected)}"
        )
        worst = max(
            ((_max_abs_diff(actual[k], expected[k]), k) for k in expected), key=lambda x: x[0]
        )
        assert worst[0] <= atol, (
            f"{what}: largest difference {worst[0]:.3g} at {worst[1]!r} > atol {atol:g}"
        )
        return
    diff = _max_abs_diff(actual, expected)
    assert diff <= atol, f"{what}: largest difference {diff:.3g} > atol {atol:g}"


def _max_abs_diff(a, b) -> float:
    a = a.detach().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, float)
    b = b.detach().double().numpy() if isinstance(b, torch.Tensor) else np.asarray(b, float)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    return float(np.max(np.abs(a - b))) if a.size else 0.0
