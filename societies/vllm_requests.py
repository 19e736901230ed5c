"""The pure halves of the vLLM engine (:mod:`societies.vllm_engine`): one LoRA id per
adapter folder version going into vLLM's requests, and vLLM's log-probability outputs
coming back as option scores. No vLLM import: these are what the CPU tests can run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from societies.choices import OptionScores
from societies.records import Scoring

# vllm/config/lora.py: MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# vllm/sampling_params.py: MAX_LOGPROB_TOKEN_IDS = 128
MAX_LOGPROB_TOKEN_IDS = 128


def vllm_max_lora_rank(r: int) -> int:
    """The smallest rank vLLM accepts as ``max_lora_rank`` that holds rank ``r`` adapters."""
    for rank in VLLM_LORA_RANKS:
        if rank >= r:
            return rank
    raise ValueError(f"LoRA rank {r}; vLLM supports ranks up to {VLLM_LORA_RANKS[-1]}")


# ----- per-agent LoRA requests -------------------------------------------------------
@dataclass(frozen=True)
class LoraSlot:
    """The arguments of one ``vllm.lora.request.LoRARequest``."""

    lora_name: str
    lora_int_id: int
    lora_path: str


class LoraRegistry:
    """One LoRA id per adapter *folder version*, for the lifetime of one vLLM engine.

    vLLM keeps loaded adapters by ``lora_int_id`` (a request whose id is loaded is not
    reloaded) and compares ``LoRARequest`` s by ``lora_name``. An agent's adapter changes
    every generation, and a resumed run may rewrite a folder in place, so the id is keyed
    by (resolved path, size and modification time of ``adapter_model.safetensors``): a new
    version gets a new id and name, never the weights cached under an old one.
    """

    def __init__(self) -> None:
        self._ids: dict[tuple[str, int, int], int] = {}

    def slot(self, agent: str, folder: str | Path) -> LoraSlot:
        path = Path(folder).resolve()
        weights = path / "adapter_model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(
                f"adapter folder {path} for {agent!r} has no adapter_model.safetensors; "
                "expected a PEFT LoRA folder"
            )
        stat = weights.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        lora_id = self._ids.setdefault(key, len(self._ids) + 1)  # vLLM requires ids >= 1
        return LoraSlot(f"{agent}@{lora_id}", lora_id, str(path))


# ----- vLLM outputs -> option scores -------------------------------------------------
def next_token_option_logprobs(
    position: Mapping[int, object], option_ids: Sequence[int]
) -> np.ndarray:
    """Option log-probabilities (float64) from one generated position's logprobs.

    ``position`` is ``RequestOutput.outputs[0].logprobs[0]``: token id -> ``Logprob``
    (``.logprob``), holding every id asked for in ``logprob_token_ids``.
    """
    missing = [t for t in option_ids if t not in position]
    if missing:
        raise ValueError(
            f"vLLM returned no logprob for option token ids {missing} (got {sorted(position)}); "
            "expected every id passed as logprob_token_ids"
        )
    return np.array([float(position[t].logprob) for t in option_ids], dtype=np.float64)


def sequence_option_logprob(rows: np.ndarray, option_ids: Sequence[int]) -> float:
    """``sum_j log p(o_j | prompt, o_<j)`` from ``RequestOutput.prompt_token_id_logprobs``.

    ``rows`` has one row per option token and one column (its own id), as requested by
    ``prompt_logprob_token_ids=[[o_1], ..., [o_k]]``, ``prompt_logprob_start=len(prompt)-1``.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.shape != (len(option_ids), 1):
        raise ValueError(
            f"prompt_token_id_logprobs has shape {rows.shape}; expected ({len(option_ids)}, 1): "
            "one row per option token"
        )
    if not np.isfinite(rows).all():
        raise ValueError(f"prompt_token_id_logprobs holds non-finite values: {rows.ravel()}")
    return float(rows.sum())


def option_scores(option_lp: np.ndarray, scoring: Scoring) -> OptionScores:
    import torch

    return OptionScores.from_logprobs(torch.from_numpy(option_lp), scoring)
