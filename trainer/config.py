"""The experiment config tree: one dataclass per section, loaded from YAML.

``folkways run configs/naming_game/quickstart.yaml population.size=8`` builds an
``ExperimentConfig`` with :func:`load_experiment`. Unknown keys, wrong types and
out-of-range values raise :class:`ConfigError` naming the key, the value and what
is accepted. Every key is documented in the README's config table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path

from societies.custom_probes import CustomProbe
from societies.games.protocol import ScriptedSeat
from societies.population_spec import Engine, agent_names
from societies.topology import Topology
from trainer import config_loader
from trainer.config_loader import ConfigError
from trainer.distill_config import AdapterScope, DistillBackend, DistillConfig, DistillMethod
from trainer.game_configs import DebateConfig, DonorGameConfig, GameName, NamingGameConfig
from trainer.model_configs import LoraConfig, ModelConfig
from trainer.slurm_config import Launcher, SlurmConfig
from trainer.society_configs import (
    EvolutionConfig,
    InterventionConfig,
    InterventionKind,
    NetworkConfig,
)

# The sections defined elsewhere are importable from here, as they were before the split.
__all__ = [
    "AdapterScope",
    "ConfigError",
    "DistillBackend",
    "DistillConfig",
    "DistillMethod",
    "EvolutionConfig",
    "ExperimentConfig",
    "GameName",
    "InterventionConfig",
    "InterventionKind",
    "LoraConfig",
    "ModelConfig",
    "NetworkConfig",
    "load_experiment",
]


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
class PopulationConfig:
    size: int = 6
    scripted: list[ScriptedSeat] = field(default_factory=list)
    """Scripted seats: [{policy: NAME, count: K, ...args}], filling the last seats; they act
    without a model call and are never distilled (policies per game in the README)."""
    personas: list[str] = field(default_factory=list)
    """Per-agent text put before the game's system message, agent i gets personas[i];
    agents beyond the list have none."""
    personas_file: str | None = None
    """A file with one persona per line (agent i: line i), instead of ``personas``."""

    def persona_list(self) -> list[str]:
        """The personas, from the list or the file (read here, so errors name the file)."""
        if self.personas_file is None:
            return list(self.personas)
        path = Path(self.personas_file)
        if not path.is_file():
            raise ConfigError(
                f"population.personas_file={self.personas_file!r} is not a file; expected a "
                "text file with one persona per line"
            )
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]

    def __post_init__(self) -> None:
        _require(
            not (self.personas and self.personas_file),
            "population.personas_file",
            self.personas_file,
            "null when population.personas is given (one source of personas)",
        )
        _require(2 <= self.size <= 4096, "population.size", self.size, "2 <= size <= 4096")
        for i, seat in enumerate(self.scripted):
            _require(seat.count >= 1, f"population.scripted[{i}].count", seat.count, ">= 1")
        _require(
            len(self.persona_list()) <= self.size,
            "population.personas",
            f"{len(self.persona_list())} personas",
            f"at most population.size={self.size}",
        )
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

    questionnaire: bool = False
    """Also ask the IPIP 50-item Big-Five markers after every generation (and before
    generation 0): trait scores per agent (societies/measures/questionnaire.py)."""
    questionnaire_orders: str = "rotations"
    """Likert anchor orders per item: 'rotations' (5 prompts per item) or 'reversed' (2)."""
    custom: list[CustomProbe] = field(default_factory=list)
    """Probes declared without code: [{name, prompt, options, system?}]; each agent's
    distribution over the options, averaged over option orders (societies/custom_probes.py)."""

    def __post_init__(self) -> None:
        _require(
            self.orders is None or self.orders >= 1,
            "probe.orders",
            self.orders,
            "null or an integer >= 1",
        )
        _require(
            self.questionnaire_orders in ("rotations", "reversed"),
            "probe.questionnaire_orders",
            self.questionnaire_orders,
            "'rotations' or 'reversed'",
        )
        names = [p.name for p in self.custom]
        _require(len(set(names)) == len(names), "probe.custom", names, "probes with distinct names")


@dataclass(frozen=True)
class MetricsConfig:
    window: int = 3
    """The last `window` rounds of a generation define its success rate and majority name."""

    def __post_init__(self) -> None:
        _require(self.window >= 1, "metrics.window", self.window, "an integer >= 1")


@dataclass(frozen=True)
class TrackingConfig:
    wandb: WandbMode = WandbMode.DISABLED
    """W&B mode; files go to <run_dir>/wandb (offline: `folkways wandb sync` them later)."""
    project: str = "folkways"
    group: str | None = None
    """W&B group: one experiment (several seeds, a sweep); null = run.name. `folkways
    sweep` sets it to the experiment directory's name for every run it launches."""
    differs: list[str] | None = None
    """The config keys that differ between the runs of the group (`folkways sweep` sets
    its grid keys and run.seed), logged as the W&B config field `folkways/differs`."""

    def __post_init__(self) -> None:
        _require(
            self.group is None or (bool(self.group.strip()) and self.group == self.group.strip()),
            "tracking.group",
            self.group,
            "null (= run.name) or a non-empty name without surrounding spaces",
        )
        keys = self.differs or []
        _require(
            all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", k) for k in keys)
            and len(set(keys)) == len(keys),
            "tracking.differs",
            self.differs,
            "null or distinct dotted config keys, e.g. [game.num_names, run.seed]",
        )


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
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    interventions: list[InterventionConfig] = field(default_factory=list)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)

    def __post_init__(self) -> None:
        # Checks that span sections.
        self.game.check_population(self.population.size)
        _require(
            self.probe.orders is None or self.probe.orders <= self.game.num_options,
            "probe.orders",
            self.probe.orders,
            f"1..{self.game.num_options} (the number of options)",
        )
        # The debate game's rounds follow from two keys; the other games set game.rounds.
        rounds_from = (
            "game.rounds"
            if "rounds" in {f.name for f in fields(self.game)}
            else "the game's rounds: game.questions_per_generation x (game.rounds_per_question + 1)"
        )
        _require(
            self.metrics.window <= self.game.rounds,
            "metrics.window",
            self.metrics.window,
            f"1..{self.game.rounds} ({rounds_from})",
        )
        self._check_evolution()
        self._check_network_and_interventions()
        _require(
            self.slurm.launcher is Launcher.NONE or self.distill.backend is DistillBackend.TRL,
            "slurm.launcher",
            self.slurm.launcher.value,
            "'none' with distill.backend=batched (multi-process training runs the TRL path)",
        )

    def _check_network_and_interventions(self) -> None:
        if self.network.topology is not Topology.COMPLETE:
            _require(
                self.game.name is not GameName.DONOR_GAME,
                "network.topology",
                self.network.topology.value,
                f"'complete' for game.name={self.game.name.value} (graphs pair agents in the "
                "naming game and choose whom debaters see; the donor game's schedule is the "
                "paper's)",
            )
        agents = set(agent_names(self.population.size))
        llm = self.population.size - self.population.num_scripted
        for i, iv in enumerate(self.interventions):
            key = f"interventions[{i}]"
            _require(
                iv.round < self.game.rounds, f"{key}.round", iv.round, f"0..{self.game.rounds - 1}"
            )
            unknown = sorted(set(iv.agents) - agents) + (
                [iv.donor] if iv.donor is not None and iv.donor not in agents else []
            )
            _require(
                not unknown,
                f"{key}.agents",
                unknown,
                f"agents of the population (agent_00..agent_{self.population.size - 1:02d})",
            )
            if iv.kind is InterventionKind.COMMITTED_MINORITY:
                seats = round(iv.share * self.population.size)
                _require(
                    iv.share == 0 or 1 <= seats <= llm,
                    f"{key}.share",
                    iv.share,
                    f"0 (the control: no seat) or a share giving 1..{llm} seats of "
                    f"population.size={self.population.size} (round(share x size) = {seats})",
                )
                _require(
                    iv.name is not None or (iv.generation, iv.round) > (0, 0),
                    f"{key}.name",
                    None,
                    "an option when the intervention starts at generation 0 round 0 (null "
                    "means the option least played before it)",
                )

    def _check_evolution(self) -> None:
        evo = self.evolution
        if not evo.active:
            return
        _require(
            self.distill.scope is AdapterScope.PER_AGENT,
            "distill.scope",
            self.distill.scope.value,
            "'per_agent' when evolution is on (a shared community adapter has nothing to select)",
        )
        n = self.population.size - self.population.num_scripted
        survivors, immigrants = evo.num_survivors(n), evo.num_immigrants(n)
        _require(
            survivors + immigrants <= n,
            "evolution.immigrants",
            evo.immigrants,
            f"a share leaving room for the {survivors} survivors of evolution.survive="
            f"{evo.survive} among the {n} LLM agents",
        )
        if evo.crossover:
            _require(
                survivors >= 2 or survivors + immigrants == n,
                "evolution.crossover",
                True,
                f"at least 2 survivors to cross (evolution.survive={evo.survive} keeps "
                f"{survivors} of {n} LLM agents)",
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
