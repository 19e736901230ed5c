"""The ``distill:`` section of the config tree: how each generation's transcripts are
written back into the adapters (method, backend, turn selection, data policy, training
hyper-parameters). Part of :class:`trainer.config.ExperimentConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from trainer.config_loader import require as _require
from trainer.data_policies import DataPolicy
from trainer.datasets import Selection


class DistillMethod(str, Enum):
    SFT = "sft"  # TRL SFTTrainer on the selected turns
    DPO = "dpo"  # TRL DPOTrainer on preference pairs, the previous adapter as reference


class AdapterScope(str, Enum):
    PER_AGENT = "per_agent"  # every agent distils its own data into its own adapter
    COMMUNITY = "community"  # one adapter trained on everyone's data, shared by all


class DistillBackend(str, Enum):
    TRL = "trl"  # TRL SFTTrainer, one agent at a time in its own model copy
    BATCHED = "batched"  # all agents in one pass over the stacked multi-LoRA engine


@dataclass(frozen=True)
class DistillConfig:
    method: DistillMethod = DistillMethod.SFT
    """'sft' (imitate the selected turns) or 'dpo' (preference pairs; distill.backend=trl)."""
    backend: DistillBackend = DistillBackend.TRL
    """'trl' (SFTTrainer per agent) or 'batched' (all agents in one pass; whole epochs only)."""
    selection: Selection = Selection.COMMUNITY_SUCCESSES
    """SFT: 'own_successes', 'community_successes' or 'top_payoff' (distill.top_share of
    every turn by payoff); DPO: own or community pairs (top_payoff is SFT only)."""
    top_share: float = 0.25
    """selection=top_payoff: the share of the generation's turns kept, best paid first."""
    scope: AdapterScope = AdapterScope.PER_AGENT
    """'per_agent' adapters, or one 'community' adapter trained on everyone's rows and
    shared by all agents."""
    data_policy: DataPolicy = DataPolicy.REPLACE
    """Rows across generations: 'replace' (this generation's), 'accumulate' (every
    generation's so far) or 'anchor' (this generation's plus distill.anchor_share of
    generation 0's per row)."""
    anchor_share: float = 0.25
    """data_policy=anchor: generation-0 rows added per current row."""
    max_examples: int = 16
    """Most recent selected rows per agent and generation (the newest reflect the
    convention reached)."""
    epochs: float = 2.0
    learning_rate: float = 1e-3
    batch_size: int = 8
    max_length: int = 512
    dpo_beta: float = 0.1
    """method=dpo: DPO's beta, the strength of the pull towards the reference adapter."""
    memory_budget_gb: float = 8.0
    """distill.backend=batched: peak memory the distillation process may use (GB); agents
    are trained in groups that fit it. 8 leaves room on a 24 GB machine."""

    def __post_init__(self) -> None:
        _require(
            self.memory_budget_gb >= 1,
            "distill.memory_budget_gb",
            self.memory_budget_gb,
            "a number of GB >= 1",
        )
        _require(
            self.max_examples >= 1, "distill.max_examples", self.max_examples, "an integer >= 1"
        )
        _require(self.epochs > 0, "distill.epochs", self.epochs, "a number > 0")
        _require(
            0 < self.learning_rate < 1, "distill.learning_rate", self.learning_rate, "0 < lr < 1"
        )
        _require(self.batch_size >= 1, "distill.batch_size", self.batch_size, "an integer >= 1")
        _require(self.max_length >= 16, "distill.max_length", self.max_length, "an integer >= 16")
        _require(0 < self.top_share <= 1, "distill.top_share", self.top_share, "0 < share <= 1")
        _require(
            0 <= self.anchor_share <= 10,
            "distill.anchor_share",
            self.anchor_share,
            "0 <= share <= 10 (generation-0 rows per current row)",
        )
        _require(0 < self.dpo_beta <= 10, "distill.dpo_beta", self.dpo_beta, "0 < beta <= 10")
        if self.backend is DistillBackend.BATCHED:
            _require(
                self.epochs == int(self.epochs),
                "distill.epochs",
                self.epochs,
                "a whole number with distill.backend=batched",
            )
            _require(
                self.method is DistillMethod.SFT,
                "distill.method",
                self.method.value,
                "'sft' with distill.backend=batched (DPO runs on distill.backend=trl)",
            )
        if self.method is DistillMethod.DPO:
            _require(
                self.selection is not Selection.TOP_PAYOFF,
                "distill.selection",
                self.selection.value,
                "'own_successes' or 'community_successes' with distill.method=dpo "
                "(own or everyone's preference pairs)",
            )
