"""What a population is made of, without the model: each agent's LoRA shape and the
engine that serves the population. Kept free of torch so that configs import it cheaply;
:mod:`societies.population` holds the model."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class LoraSpec:
    """The LoRA shape every agent's adapter has."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("all-linear",)

    def peft_config(self):
        from peft import LoraConfig

        targets = self.target_modules
        target = "all-linear" if targets == ("all-linear",) else list(targets)
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=target,
            task_type="CAUSAL_LM",
        )


class Engine(str, Enum):
    MULTI_LORA = "multi_lora"
    PEFT = "peft"
    # vLLM on a GPU (societies.vllm_engine.VllmPopulation, optional install), rollouts and
    # probes only; PopulationModel serves the two torch engines above.
    VLLM = "vllm"


def agent_names(size: int) -> list[str]:
    """The names of a population's ``size`` agents, ``agent_00 ...``: every run, baseline
    and environment uses them, and a seed's graph (``NetworkSpec.graph``) is drawn over
    them, so that all of them play the same graph."""
    return [f"agent_{i:02d}" for i in range(size)]
