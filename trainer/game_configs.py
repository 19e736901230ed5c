"""The ``game:`` section of an experiment config: one typed section per game.

``game.name`` picks the section (trainer.config_loader tells the sections of a union
apart by their ``name``), so each game has its own keys and an unknown key for the
chosen game is an error naming that game's keys. Every key is in the README.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from societies.topology import Topology
from trainer.config_loader import require


class GameName(str, Enum):
    NAMING_GAME = "naming_game"
    DONOR_GAME = "donor_game"
    DEBATE = "debate"


@dataclass(frozen=True)
class NamingGameConfig:
    """Naming game after Ashery, Aiello & Baronchelli (Sci. Adv. 2025)."""

    name: GameName = GameName.NAMING_GAME
    names: list[str] = field(default_factory=list)
    """The names to coordinate on; empty: draw num_names capital letters from the seed."""
    num_names: int = 10
    memory: int = 5
    """How many of an agent's own last interactions its prompt shows."""
    payoff_match: float = 100.0
    payoff_mismatch: float = -50.0
    rounds: int = 10
    """Rounds per generation; each round plays pairs_per_round interactions in one batch."""
    pairs_per_round: int = 3
    temperature: float = 0.5
    """Sampling temperature over the renormalised option probabilities (0 = greedy)."""
    topology: Topology = Topology.COMPLETE
    """Kept so run directories written before ``network:`` load; only 'complete'."""

    def __post_init__(self) -> None:
        require(
            self.topology is Topology.COMPLETE,
            "game.topology",
            self.topology.value,
            "'complete' (set the graph with network.topology)",
        )
        if self.names:
            require(
                len(set(self.names)) == len(self.names), "game.names", self.names, "distinct names"
            )
            require(len(self.names) >= 2, "game.names", self.names, "at least 2 names")
        else:
            require(
                2 <= self.num_names <= 26,
                "game.num_names",
                self.num_names,
                "2 <= num_names <= 26 (capital letters)",
            )
        require(self.memory >= 0, "game.memory", self.memory, "an integer >= 0")
        require(self.rounds >= 1, "game.rounds", self.rounds, "an integer >= 1")
        require(
            self.pairs_per_round >= 1,
            "game.pairs_per_round",
            self.pairs_per_round,
            "an integer >= 1",
        )
        require(self.temperature >= 0, "game.temperature", self.temperature, "a number >= 0")

    @property
    def num_options(self) -> int:
        return len(self.names) if self.names else self.num_names

    def check_population(self, size: int) -> None:
        most = size // 2
        require(
            self.pairs_per_round <= most,
            "game.pairs_per_round",
            self.pairs_per_round,
            f"1..{most} (disjoint pairs among population.size={size})",
        )


@dataclass(frozen=True)
class DonorGameConfig:
    """Donor game after Vallinder & Hughes (2024), "Cultural evolution of cooperation
    among LLM agents"; the defaults are the paper's (12 agents, endowment 10, donations
    doubled, 12 rounds, up to 3 hops of the recipient's history)."""

    name: GameName = GameName.DONOR_GAME
    rounds: int = 12
    """Rounds per generation (the paper: 12); at most population.size (no repeated pair)."""
    temperature: float = 0.5
    endowment: float = 10.0
    multiplier: float = 2.0
    """The recipient receives multiplier x the donation."""
    fractions: list[float] = field(default_factory=lambda: [i / 10 for i in range(11)])
    """The donation levels a donor chooses from (shares of its resources)."""
    history_hops: int = 3
    """How far back a donor sees its recipient's giving (the paper: 3 hops)."""
    punishment: bool = False
    """Costly punishment: a donor may spend x to remove punishment_cost_ratio * x."""
    punishment_cost_ratio: float = 2.0
    survivors: float = 0.5
    """Share of agents, by final resources, whose donations count as good behaviour to
    distil (the paper's top half survive each generation)."""

    def __post_init__(self) -> None:
        require(self.rounds >= 1, "game.rounds", self.rounds, "an integer >= 1")
        require(self.temperature >= 0, "game.temperature", self.temperature, "a number >= 0")
        require(0 < self.survivors <= 1, "game.survivors", self.survivors, "0 < survivors <= 1")
        # The rules' own checks (levels, endowment, multiplier) run when the game is built;
        # build it here so a bad value is a config error before anything is written.
        try:
            self.rules()
        except ValueError as err:
            from trainer.config_loader import ConfigError

            raise ConfigError(f"game: {err}") from None

    def rules(self):
        from societies.games.donor_game import DonorGameRules

        return DonorGameRules(
            endowment=self.endowment,
            multiplier=self.multiplier,
            fractions=tuple(self.fractions),
            history_hops=self.history_hops,
            punishment=self.punishment,
            punishment_cost_ratio=self.punishment_cost_ratio,
            rounds=self.rounds,
        )

    @property
    def num_options(self) -> int:
        return len(self.rules().options)

    def check_population(self, size: int) -> None:
        require(size % 2 == 0, "population.size", size, "an even number (donors and recipients)")
        require(
            self.rounds <= size,
            "game.rounds",
            self.rounds,
            f"1..{size} (a donor never meets the same recipient twice among {size} agents)",
        )


@dataclass(frozen=True)
class DebateConfig:
    """Debate on arithmetic after Du et al. (2023) and Subramaniam et al. (2025)."""

    name: GameName = GameName.DEBATE
    questions_per_generation: int = 4
    """Train questions debated per generation (never repeated across generations)."""
    rounds_per_question: int = 2
    """Revision rounds after every agent's first answer (Du et al.: 2)."""
    heldout_questions: int = 8
    """Held-out questions answered greedily after each generation (never distilled)."""
    min_steps: int = 2
    max_steps: int = 3
    """Operations per question."""
    max_operand: int = 10
    operators: list[str] = field(default_factory=lambda: ["+", "-", "*"])
    max_new_tokens: int = 48
    """Reply length limit (tokens)."""
    max_shown_chars: int = 300
    """Longest reply quoted to the other agents in a revision round."""
    temperature: float = 0.7
    """Sampling temperature of the replies (0 = greedy)."""

    def __post_init__(self) -> None:
        require(self.temperature >= 0, "game.temperature", self.temperature, "a number >= 0")
        try:
            self.rules()
        except ValueError as err:
            from trainer.config_loader import ConfigError

            raise ConfigError(f"game: {err}") from None

    def rules(self):
        from societies.games.debate import ArithmeticDifficulty, DebateRules

        return DebateRules(
            rounds_per_question=self.rounds_per_question,
            questions_per_generation=self.questions_per_generation,
            heldout_questions=self.heldout_questions,
            difficulty=ArithmeticDifficulty(
                min_steps=self.min_steps,
                max_steps=self.max_steps,
                max_operand=self.max_operand,
                operators=tuple(self.operators),
            ),
            max_new_tokens=self.max_new_tokens,
            max_shown_chars=self.max_shown_chars,
        )

    @property
    def rounds(self) -> int:
        return self.questions_per_generation * (self.rounds_per_question + 1)

    @property
    def num_options(self) -> int:
        return 2  # the held-out probe: correct or not

    def check_population(self, size: int) -> None:
        require(size >= 2, "population.size", size, ">= 2 debaters")
