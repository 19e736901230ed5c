"""Evolution between generations, in weight space: crossover and mutation (selection,
which needs no weights, is :mod:`trainer.selection`).

After Vallinder & Hughes (2024), where the top half of agents by resources survive each
generation and the rest are replaced by descendants of the survivors, but with
inheritance in the adapters' weights rather than in prompted strategies (issue 8, item
5). Each operator is a pure function of PEFT LoRA state dicts (keys
``<module>.lora_A.weight`` [r, in] and ``<module>.lora_B.weight`` [out, r], as in
``adapter_model.safetensors``) or of adapter folders, deterministic given its seed.

Immigrants (fresh agents with no parent) need no operator here: the loop creates them
the way it creates the initial adapters (``PopulationModel(..., init_seeds=...)`` with
engine "peft", then ``save_adapter``), seeded by :func:`trainer.selection.immigrant_seed`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from societies.atomic import atomic_directory
from societies.lora_folders import check_adapter_folder, lora_scaling
from trainer.weight_metrics import LORA_A_SUFFIX, LORA_B_SUFFIX, lora_factors

# ----- crossover ------------------------------------------------------------------------


def crossover(
    parent_a: Mapping[str, torch.Tensor],
    parent_b: Mapping[str, torch.Tensor],
    weight_a: float,
    weight_b: float,
    *,
    scaling_a: float = 1.0,
    scaling_b: float = 1.0,
    scaling_out: float | None = None,
) -> dict[str, torch.Tensor]:
    """The ``cat`` combination: a child whose delta is exactly ``w_a·Δa + w_b·Δb``.

    Per module the ranks are concatenated (child rank r_a + r_b):

        A = [A_a; A_b]                          (cat on dim 0, the rank rows)
        B = [c_a·B_a, c_b·B_b],  c = w·s/s_out  (cat on dim 1, the rank columns)

    so ``s_out·B A = w_a·s_a·B_a A_a + w_b·s_b·B_b A_b``: no cross terms, no truncation.
    The scalings are where alpha/r goes: each parent's ``s`` (its own alpha/r) and the
    child's ``s_out`` (the alpha/r its config will give) are folded into its B block, so
    parents of different r or alpha combine exactly. When both scalings equal
    ``s_out`` (one LoraSpec for the population, the default here), ``c`` is just the
    weight. The only rounding is one multiplication per B element (relative ≤ u).

    Args:
        parent_a, parent_b: PEFT LoRA state dicts over the same modules and shapes.
        weight_a, weight_b: finite weights (0 and negative are allowed).
        scaling_a, scaling_b: each parent's alpha/r (``lora_folders.lora_scaling``).
        scaling_out: the child's alpha/r; defaults to ``scaling_a``.

    Returns:
        the child's state dict, same keys as the parents', in parent_a's dtype.
    """
    scaling_out = scaling_a if scaling_out is None else scaling_out
    for name, value in (
        ("weight_a", weight_a),
        ("weight_b", weight_b),
        ("scaling_a", scaling_a),
        ("scaling_b", scaling_b),
        ("scaling_out", scaling_out),
    ):
        if not math.isfinite(value):
            raise ValueError(f"{name}={value!r}; must be a finite number")
    if scaling_out == 0:
        raise ValueError("scaling_out=0: a child with zero scaling cannot carry any delta")
    factors_a, factors_b = lora_factors(parent_a), lora_factors(parent_b)
    if factors_a.keys() != factors_b.keys():
        only_a = sorted(factors_a.keys() - factors_b.keys())
        only_b = sorted(factors_b.keys() - factors_a.keys())
        raise ValueError(
            f"parents adapt different modules: only parent_a {only_a[:3]}, only parent_b "
            f"{only_b[:3]}; crossover needs the same target modules"
        )
    coef_a = weight_a * scaling_a / scaling_out
    coef_b = weight_b * scaling_b / scaling_out
    child = {}
    for module, (a_a, b_a) in factors_a.items():
        a_b, b_b = factors_b[module]
        if a_a.shape[1] != a_b.shape[1] or b_a.shape[0] != b_b.shape[0]:
            raise ValueError(
                f"module {module!r}: parent_a adapts a [{b_a.shape[0]}, {a_a.shape[1]}] "
                f"weight, parent_b a [{b_b.shape[0]}, {a_b.shape[1]}] one; same base needed"
            )
        if a_a.dtype != a_b.dtype or b_a.dtype != b_b.dtype:
            raise ValueError(
                f"module {module!r}: parent dtypes differ ({a_a.dtype} vs {a_b.dtype}); "
                "cast both to one dtype first"
            )
        child[module + LORA_A_SUFFIX] = torch.cat([a_a, a_b], dim=0).contiguous()
        child[module + LORA_B_SUFFIX] = torch.cat([b_a * coef_a, b_b * coef_b], dim=1).contiguous()
    return child


def read_adapter_state(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A PEFT LoRA folder's state dict (keys as saved) and its ``adapter_config.json``.

    Raises:
        ValueError: not plain LoRA with one r and one alpha (DoRA, rank_pattern/alpha_pattern).
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    config = check_adapter_folder(folder)
    if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora"):
        raise ValueError(
            f"{folder}: peft_type={config.get('peft_type')!r}, use_dora="
            f"{config.get('use_dora')!r}; only plain LoRA (peft_type 'LORA', no DoRA) is accepted"
        )
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ValueError(
            f"{folder}: rank_pattern={config.get('rank_pattern')!r}, alpha_pattern="
            f"{config.get('alpha_pattern')!r}; only one r and one alpha per adapter are accepted"
        )
    return load_file(str(folder / "adapter_model.safetensors")), config


def write_adapter_state(
    out_dir: str | Path, state: Mapping[str, torch.Tensor], config: Mapping
) -> Path:
    """Write ``state`` and ``config`` as a PEFT folder at ``out_dir``, atomically.

    ``config["r"]`` must match the tensors' rank (checked), so the folder loads with
    ``PeftModel.from_pretrained``. An existing ``out_dir`` is replaced.
    """
    from safetensors.torch import save_file

    r = int(config["r"])
    ranks = {m: a.shape[0] for m, (a, _) in lora_factors(state).items()}
    wrong = {m: rank for m, rank in ranks.items() if rank != r}
    if wrong:
        raise ValueError(
            f"config r={r} but these modules have other ranks: {dict(list(wrong.items())[:3])}"
        )
    config = dict(config)
    if isinstance(config.get("target_modules"), (list, tuple, set)):
        config["target_modules"] = sorted(config["target_modules"])  # stable bytes (PEFT: a set)
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        tensors = {k: v.contiguous() for k, v in state.items()}
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    return out_dir


def write_crossover_folder(
    parent_dir_a: str | Path,
    parent_dir_b: str | Path,
    out_dir: str | Path,
    weights: tuple[float, float],
) -> Path:
    """Write the ``cat`` child of two adapter folders as a loadable PEFT folder.

    The child's config is parent a's with ``r = r_a + r_b`` and ``lora_alpha`` chosen so
    that its scaling equals parent a's (alpha/r, or alpha/sqrt(r) with rsLoRA): a child
    of one population keeps the population's scale, so later training at the same
    learning rate moves it as it moved its parents. Parent b's scaling is folded into
    its B block (:func:`crossover`), so the child's delta is exactly
    ``weights[0]·Δa + weights[1]·Δb`` even when the parents' r or alpha differ.

    PEFT's ``add_weighted_adapter(..., combination_type="cat")`` computes the same sum,
    but is not used (PEFT 0.21): it needs the base model and both parents
    loaded in one PeftModel; it silently does nothing when the new adapter's name already
    exists (a resumed run would keep a stale child); it writes ``lora_alpha = r`` (scale
    1, not the population's; with rsLoRA the kept ``use_rslora`` then gives sqrt(r), so
    the delta is off by that factor); and its ``linear``/``svd`` siblings are not the
    weighted sum (cross terms; truncation to the largest input rank).
    """
    state_a, config_a = read_adapter_state(parent_dir_a)
    state_b, config_b = read_adapter_state(parent_dir_b)
    if len(weights) != 2:
        raise ValueError(f"weights={weights!r}; expected two numbers, (weight_a, weight_b)")
    config, scalings = crossover_config(config_a, config_b)
    child = crossover(state_a, state_b, float(weights[0]), float(weights[1]), **scalings)
    return write_adapter_state(out_dir, child, config)


def truncate_rank(
    state: Mapping[str, torch.Tensor], max_rank: int
) -> tuple[dict[str, torch.Tensor], float]:
    """Refactor every module of rank above ``max_rank`` to its best rank-``max_rank``
    approximation (Eckart–Young: the truncated SVD of its ``B A``), keeping the scaling.

    Repeated ``cat`` crossovers add ranks every generation (r, 2r, 4r, ...); this caps
    them. Per module ``B A = Q_b (R_b R_aᵀ) Q_aᵀ`` with ``B = Q_b R_b`` and ``Aᵀ = Q_a R_a``,
    so only the small ``R×R`` core is decomposed: ``U S Vᵀ``, then
    ``B' = Q_b U_k √S_k`` and ``A' = √S_k V_kᵀ Q_aᵀ``. Exact when the delta's rank is at
    most ``max_rank``. Computed in float64, returned in the input dtype.

    Returns:
        the new state, and the relative Frobenius error of the whole delta,
        ``||Δ - Δ'|| / ||Δ||`` (0.0 when nothing was truncated or Δ = 0).
    """
    if max_rank < 1:
        raise ValueError(f"max_rank={max_rank!r}; must be an integer >= 1")
    out, dropped, total = {}, 0.0, 0.0
    for module, (a, b) in lora_factors(state).items():
        a64, b64 = a.double(), b.double()
        if a.shape[0] <= max_rank:
            out[module + LORA_A_SUFFIX], out[module + LORA_B_SUFFIX] = a.clone(), b.clone()
            total += float((b64 @ a64).square().sum())
            continue
        q_b, r_b = torch.linalg.qr(b64)
        q_a, r_a = torch.linalg.qr(a64.T)
        u, sigma, vh = torch.linalg.svd(r_b @ r_a.T)
        k = min(max_rank, sigma.numel())  # a module narrower than max_rank: zero-pad
        root = sigma[:k].sqrt()
        new_b = torch.zeros(b.shape[0], max_rank, dtype=torch.float64)
        new_a = torch.zeros(max_rank, a.shape[1], dtype=torch.float64)
        new_b[:, :k] = q_b @ u[:, :k] * root
        new_a[:k] = (root[:, None] * vh[:k]) @ q_a.T
        dropped += float(sigma[k:].square().sum())
        total += float(sigma.square().sum())
        out[module + LORA_A_SUFFIX] = new_a.to(a.dtype).contiguous()
        out[module + LORA_B_SUFFIX] = new_b.to(b.dtype).contiguous()
    return out, (math.sqrt(dropped / total) if total > 0 else 0.0)


def alpha_for_scaling(config: Mapping, scaling: float, rank: int) -> int | float:
    """The ``lora_alpha`` that gives ``scaling`` at ``rank`` (alpha/r, or alpha/sqrt(r)
    with rsLoRA, as ``config`` says); an int when it is whole."""
    alpha = scaling * (math.sqrt(rank) if config.get("use_rslora") else rank)
    return int(alpha) if float(alpha).is_integer() else alpha


def crossover_config(config_a: Mapping, config_b: Mapping) -> tuple[dict, dict[str, float]]:
    """The ``cat`` child's config (parent a's, with ``r = r_a + r_b`` and parent a's
    scaling) and the scalings :func:`crossover` folds into the B blocks."""
    r_out = int(config_a["r"]) + int(config_b["r"])
    scaling_a = lora_scaling(config_a)
    config = {**config_a, "r": r_out, "lora_alpha": alpha_for_scaling(config_a, scaling_a, r_out)}
    scalings = {
        "scaling_a": scaling_a,
        "scaling_b": lora_scaling(config_b),
        "scaling_out": lora_scaling(config),  # what PEFT will compute from the written config
    }
    return config, scalings


# ----- mutation -------------------------------------------------------------------------


def mutate(state: Mapping[str, torch.Tensor], scale: float, seed: int) -> dict[str, torch.Tensor]:
    """Add N(0, scale²) noise to every LoRA weight, A and B alike.

    B too: a fresh adapter has B = 0, so noise in A alone would leave its delta
    ``s·B A`` at zero and the mutation a no-op. ``scale`` is in the factors' units; the
    delta moves by ``s·(dB·A + B·dA + dB·dA)``. Each tensor's noise comes from its own
    ``torch.Generator`` seeded by (seed, key), so it does not depend on which other
    modules the state holds or their order. ``scale == 0`` returns a bitwise copy.
    """
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"scale={scale!r}; must be a finite number >= 0 (noise std)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}; must be a non-negative integer")
    lora_factors(state)  # only LoRA factors, paired and chained
    if scale == 0:
        return {k: v.clone() for k, v in state.items()}
    out = {}
    for key, value in state.items():
        generator = torch.Generator().manual_seed(_key_seed(int(seed), key))
        noise = torch.randn(value.shape, generator=generator, dtype=torch.float32)
        out[key] = (value.float() + scale * noise).to(value.dtype)
    return out


def _key_seed(seed: int, key: str) -> int:
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1  # 63 bits: torch seeds are int64
