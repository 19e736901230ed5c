"""The sections of the config tree that shape the society beyond one game: cultural
evolution between generations (``evolution:``), who meets whom (``network:``) and
scheduled interventions (``interventions:``). Part of
:class:`trainer.config.ExperimentConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from societies.topology import NetworkSpec
from trainer.config_loader import require as _require
from trainer.selection import ParentRule, survivor_count


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


# Who meets whom: defined beside the graphs (societies/topology.py), where the baselines'
# args take it too; the naming game pairs agents along its edges.
NetworkConfig = NetworkSpec


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
    run's end); share 0 takes no seat (a tipping sweep's control). ``ablation``: ``agents``' adapters become the base model for the rest of
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
            # share 0 is the control: no seat is taken, but the option the minority would
            # hold is still chosen and recorded, so a tipping sweep counts how often the
            # population ends on it unpushed.
            _require(0 <= self.share < 1, "interventions[].share", self.share, "0 <= share < 1")
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
