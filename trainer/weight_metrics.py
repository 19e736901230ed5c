"""Weight-space metrics of a population: how big, how alike and how far its adapters are.

An adapter changes each targeted weight by ``ΔW = s · B @ A`` (``A`` [r, in], ``B``
[out, r], ``s`` = alpha/r, or alpha/sqrt(r) with rsLoRA). Flattened over all modules
these deltas are one vector per agent; its norm, the mean pairwise cosine
(homogenisation: 1 when every agent moved the same way) and the distance from an earlier
adapter (drift from generation 0) are tracked per generation (issue 8, item 7).

The vectors are never built. A delta of a 135M model with all-linear LoRA has ~10^8
entries (400 MB per agent in float32); every quantity here is an inner product, and the
Frobenius inner product of two low-rank products needs only r×r matrices:

    <B1 A1, B2 A2>_F = trace((B1ᵀB2)(A2A1ᵀ))          (cyclic trace)
    ||B A||_F^2      = trace((AAᵀ)(BᵀB))

which costs O(r1·r2·(in+out)) per module instead of O(in·out·r). All of it runs in
float64: the float32 factors convert exactly, and distances computed as
``sqrt(|a|² + |b|² - 2<a,b>)`` lose relative accuracy only ~u64·|a|²/d² (u64 ~ 1e-16),
negligible unless two deltas agree to ~7 digits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

LORA_A_SUFFIX = ".lora_A.weight"
LORA_B_SUFFIX = ".lora_B.weight"


def lora_factors(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Pair a PEFT LoRA state dict into ``{module key: (A [r, in], B [out, r])}``.

    ``state`` is keyed as ``adapter_model.safetensors`` and ``get_peft_model_state_dict``
    key it: ``<module>.lora_A.weight`` / ``<module>.lora_B.weight``; the module key is
    everything before the suffix.

    Raises:
        ValueError: a key that is neither (DoRA magnitudes, LoRA biases, embedding LoRA,
            modules_to_save), a module with only one factor, or shapes that do not chain.
    """
    halves: dict[str, list] = {}
    for key, value in state.items():
        for suffix, slot in ((LORA_A_SUFFIX, 0), (LORA_B_SUFFIX, 1)):
            if key.endswith(suffix):
                halves.setdefault(key[: -len(suffix)], [None, None])[slot] = value
                break
        else:
            raise ValueError(
                f"state key {key!r} is not a LoRA factor; accepted: keys ending in "
                f"{LORA_A_SUFFIX!r} or {LORA_B_SUFFIX!r} (plain LoRA: no DoRA, biases, "
                "embedding LoRA or modules_to_save)"
            )
    factors = {}
    for module, (a, b) in sorted(halves.items()):
        if a is None or b is None:
            missing = LORA_A_SUFFIX if a is None else LORA_B_SUFFIX
            raise ValueError(f"module {module!r} has no {missing!r} tensor; each needs A and B")
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise ValueError(
                f"module {module!r}: lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)} do not "
                "chain; expected A [r, in] and B [out, r]"
            )
        factors[module] = (a, b)
    return factors


@dataclass(frozen=True)
class LoraDelta:
    """One adapter's ``ΔW = scaling · B @ A`` over all its modules: a vector kept factored.

    A module that one adapter lacks counts as a zero block of the other's vector.
    """

    factors: Mapping[str, tuple[torch.Tensor, torch.Tensor]]  # module -> (A [r,in], B [out,r])
    scaling: float

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor], scaling: float) -> LoraDelta:
        """From a PEFT state dict and the adapter's scaling (``lora_folders.lora_scaling``)."""
        if not np.isfinite(scaling):
            raise ValueError(f"scaling={scaling!r}; must be a finite number (alpha/r)")
        return cls(lora_factors(state), float(scaling))

    @classmethod
    def from_folder(cls, path: str | Path) -> LoraDelta:
        """From a PEFT folder; the scaling comes from its ``adapter_config.json``."""
        from safetensors.torch import load_file

        from societies.lora_folders import check_adapter_folder, lora_scaling

        config = check_adapter_folder(path)
        state = load_file(str(Path(path) / "adapter_model.safetensors"))
        return cls.from_state(state, lora_scaling(config))

    def materialize(self) -> dict[str, torch.Tensor]:
        """Every module's ΔW in float64 (big for real models: for tests and small ones)."""
        return {m: self.scaling * (b.double() @ a.double()) for m, (a, b) in self.factors.items()}


def inner(a: LoraDelta, b: LoraDelta) -> float:
    """The Frobenius inner product of two flattened deltas, from r×r products."""
    total = 0.0
    for module in a.factors.keys() & b.factors.keys():
        a1, b1 = (t.double() for t in a.factors[module])
        a2, b2 = (t.double() for t in b.factors[module])
        _check_same_shape(module, a1, b1, a2, b2)
        # trace((B1ᵀB2)(A2A1ᵀ)) = sum((B1ᵀB2) ∘ (A1A2ᵀ)): trace(XY) = Σ_ij X_ij Y_ji
        total += float(((b1.T @ b2) * (a1 @ a2.T)).sum())
    return a.scaling * b.scaling * total


def delta_norm(delta: LoraDelta) -> float:
    """The Frobenius norm of the flattened delta: ``sqrt(Σ_modules ||s·B A||_F²)``."""
    return float(np.sqrt(max(inner(delta, delta), 0.0)))


def distance(a: LoraDelta, b: LoraDelta) -> float:
    """``||Δa - Δb||_F`` over all modules, e.g. an agent's drift from generation 0.

    ``sqrt(|a|² + |b|² - 2<a,b>)`` in float64; clamped at 0 against rounding.
    """
    squared = inner(a, a) + inner(b, b) - 2.0 * inner(a, b)
    return float(np.sqrt(max(squared, 0.0)))


def gram_matrix(deltas: Mapping[str, LoraDelta]) -> np.ndarray:
    """All pairwise inner products ``G[i, j] = <Δi, Δj>``, agents in ``deltas``' order.

    Per module, the agents' factors are stacked (A_all [Σr, in], B_all [out, Σr]) so one
    pair of GEMMs gives every pair's r×r blocks; each block's elementwise product summed
    is the pair's inner product (the identity in the module docstring). 24 agents × 210
    modules of the embedded model at r=8: ~2·10^10 float64 flops.
    """
    names = list(deltas)
    gram = np.zeros((len(names), len(names)))
    modules = sorted(set().union(*(d.factors.keys() for d in deltas.values())))
    for module in modules:
        members = [i for i, n in enumerate(names) if module in deltas[n].factors]
        a_parts, b_parts, owner = [], [], []
        for i in members:
            a, b = deltas[names[i]].factors[module]
            a_parts.append(a.double())
            b_parts.append(deltas[names[i]].scaling * b.double())
            owner += [i] * a.shape[0]
        first = members[0]
        for i, a, b in zip(members, a_parts, b_parts, strict=True):
            _check_same_shape(module, a_parts[0], b_parts[0], a, b, names[first], names[i])
        a_all, b_all = torch.cat(a_parts, 0), torch.cat(b_parts, 1)
        blocks = (b_all.T @ b_all) * (a_all @ a_all.T)  # [Σr, Σr]
        # Sum each (agent i rows, agent j columns) block: Mᵀ blocks M, M one-hot [Σr, N].
        onehot = torch.zeros(len(owner), len(names), dtype=torch.float64)
        onehot[torch.arange(len(owner)), torch.tensor(owner)] = 1.0
        gram += (onehot.T @ blocks @ onehot).numpy()
    return gram


def pairwise_cosine(deltas: Mapping[str, LoraDelta]) -> float:
    """The mean cosine similarity of the flattened deltas over all unordered agent pairs.

    Raises:
        ValueError: fewer than two agents, or an agent whose delta is zero (a fresh
            adapter has B = 0, so its direction is undefined: leave such agents out).
    """
    if len(deltas) < 2:
        raise ValueError(f"pairwise_cosine needs at least 2 agents, got {list(deltas)}")
    gram = gram_matrix(deltas)
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    zero = [name for name, n in zip(deltas, norms, strict=True) if n == 0.0]
    if zero:
        raise ValueError(
            f"agents {zero} have a zero delta (fresh adapters, B = 0): their cosine is "
            "undefined; leave them out of pairwise_cosine"
        )
    cosine = gram / np.outer(norms, norms)
    upper = np.triu_indices(len(deltas), k=1)
    return float(cosine[upper].mean())


def _check_same_shape(module, a1, b1, a2, b2, name1="first", name2="second") -> None:
    if a1.shape[1] != a2.shape[1] or b1.shape[0] != b2.shape[0]:
        raise ValueError(
            f"module {module!r}: {name1} adapts a [{b1.shape[0]}, {a1.shape[1]}] weight, "
            f"{name2} a [{b2.shape[0]}, {a2.shape[1]}] one; deltas of different base models "
            "cannot be compared"
        )


def generation_weight_records(
    generation: int, adapters: Mapping[str, Path], origins: Mapping[str, Path]
) -> list:
    """A generation's weight-space metrics as metric records (phase ``"weights"``).

    Per agent: ``adapter_delta_norm`` (``||ΔW||_F`` over all modules) and
    ``adapter_distance_from_gen0`` (from the same seat's generation-0 adapter in
    ``origins``); for the population: ``adapter_delta_norm_mean`` and
    ``adapter_pairwise_cosine``, the mean cosine of the agents' deltas (1 when every
    agent holds the same adapter: homogenisation). The cosine is NaN with fewer than two
    agents of non-zero delta. One Gram matrix gives all of them.
    """
    from trainer.tracking import MetricRecord

    agents = list(adapters)
    deltas = {a: LoraDelta.from_folder(adapters[a]) for a in agents}
    if generation > 0:
        deltas.update({("origin", a): LoraDelta.from_folder(origins[a]) for a in agents})
    gram = gram_matrix(deltas)
    index = {key: i for i, key in enumerate(deltas)}
    records = []
    norms = {}
    for a in agents:
        i = index[a]
        norms[a] = float(np.sqrt(max(gram[i, i], 0.0)))
        if generation > 0:
            j = index[("origin", a)]
            moved = float(np.sqrt(max(gram[i, i] + gram[j, j] - 2 * gram[i, j], 0.0)))
        else:
            moved = 0.0
        records.append(MetricRecord(generation, "adapter_delta_norm", norms[a], "weights", agent=a))
        records.append(
            MetricRecord(generation, "adapter_distance_from_gen0", moved, "weights", agent=a)
        )
    live = [a for a in agents if norms[a] > 0]
    cosines = [
        gram[index[a], index[b]] / (norms[a] * norms[b])
        for k, a in enumerate(live)
        for b in live[k + 1 :]
    ]
    records.append(
        MetricRecord(
            generation, "adapter_delta_norm_mean", float(np.mean(list(norms.values()))), "weights"
        )
    )
    if cosines:  # fewer than two moved adapters have no pair: no record (not NaN: strict JSON)
        records.append(
            MetricRecord(generation, "adapter_pairwise_cosine", float(np.mean(cosines)), "weights")
        )
    return records
