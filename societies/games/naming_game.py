"""The naming game of Ashery, Aiello & Baronchelli (Science Advances, 2025).

Two agents simultaneously name one of W items; both score +100 if they match and
−50 otherwise. Each agent sees only its own last H interactions (what it said, what
its partner said, its payoff); the list of names is shuffled in every prompt
(the embedded model puts 0.48 on the first of 10 names). Population-level
conventions emerge from these pairwise, memory-limited interactions.

The prompt follows the paper's structure (rules, payoffs, own history, the names)
but asks for a single letter, because actions are read off the next-token
distribution over the names rather than parsed from free text.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from societies import metrics
from societies.games.protocol import (
    GenerationMetrics,
    Move,
    Outcome,
    ProbeItem,
    RoundContext,
    ScriptedSeat,
    Turn,
    mean_payoff,
    one_hot,
    uniform_probs,
)
from societies.records import Decision, Message
from societies.seeding import Stream
from societies.topology import InteractionGraph, Topology, sample_pairs

GAME_NAME = "naming_game"

SYSTEM_PROMPT = (
    "You are playing a repeated coordination game. In each round you are paired with "
    "another player and you both pick one name from the same list at the same time, "
    "without talking."
)


@dataclass(frozen=True)
class NamingGameRules:
    """Names, memory length and payoffs.

    Defaults are the paper's: W=10 names, memory H=5, +100 match / −50 mismatch.
    """

    names: tuple[str, ...]
    memory: int = 5
    payoff_match: float = 100.0
    payoff_mismatch: float = -50.0

    def __post_init__(self) -> None:
        if len(self.names) < 2 or len(set(self.names)) != len(self.names):
            raise ValueError(f"naming game needs >= 2 distinct names, got {self.names}")
        if self.memory < 0:
            raise ValueError(f"memory={self.memory}; expected an integer >= 0")


@dataclass(frozen=True)
class Interaction:
    """One remembered interaction, from the remembering agent's side."""

    own: str
    partner: str
    payoff: float


def draw_letter_names(count: int, rng: np.random.Generator) -> tuple[str, ...]:
    """``count`` distinct capital letters, as in the paper's letter-name condition."""
    if not 2 <= count <= 26:
        raise ValueError(f"num_names={count}; expected 2..26 capital letters")
    letters = rng.choice(list(string.ascii_uppercase), size=count, replace=False)
    return tuple(str(letter) for letter in letters)


class NamingGame:
    """Prompts and payoffs of the naming game; stateless apart from its rules.

    Each round ``pairs_per_round`` disjoint pairs, a random matching of ``graph`` (the
    complete graph when None), play at once (one batched model call); the paper plays
    one pair at a time on the complete graph.
    """

    name = GAME_NAME
    policies = ("fixed_name", "uniform")

    def __init__(
        self,
        rules: NamingGameRules,
        pairs_per_round: int = 1,
        graph: InteractionGraph | None = None,
    ) -> None:
        self.rules = rules
        self.pairs_per_round = pairs_per_round
        self.graph = graph

    @property
    def options(self) -> tuple[str, ...]:
        return self.rules.names

    def shuffled_options(self, rng: np.random.Generator) -> tuple[str, ...]:
        order = rng.permutation(len(self.rules.names))
        return tuple(self.rules.names[i] for i in order)

    def payoff(self, own: str, partner: str) -> float:
        return self.rules.payoff_match if own == partner else self.rules.payoff_mismatch

    def prompt(self, memory: Sequence[Interaction], options: Sequence[str]) -> tuple[Message, ...]:
        """The messages an agent sees: rules, its last ``memory`` interactions, the names.

        ``memory`` is oldest first; only the last ``rules.memory`` items are shown.
        """
        unknown = [o for o in options if o not in self.rules.names]
        if unknown or len(options) != len(self.rules.names):
            raise ValueError(f"options {list(options)} are not a permutation of {self.rules.names}")
        r = self.rules
        lines = [
            f"If you both pick the same name, you each get {r.payoff_match:+g} points. "
            f"If you pick different names, you each get {r.payoff_mismatch:+g} points. "
            "Your goal is to score as many points as possible.",
            "",
        ]
        shown = list(memory)[-r.memory :] if r.memory else []
        if shown:
            lines.append(f"Your last {len(shown)} rounds (oldest first):")
            total = 0.0
            for item in shown:
                total += item.payoff
                outcome = "match" if item.own == item.partner else "no match"
                lines.append(
                    f"- you picked {item.own}, your partner picked {item.partner}: "
                    f"{outcome}, {item.payoff:+g} points"
                )
            lines.append(f"Points over these rounds: {total:+g}.")
        else:
            lines.append("You have not played any rounds yet.")
        lines += [
            "",
            "Names: " + ", ".join(options) + ".",
            "Which name do you pick? Answer with the name only.",
        ]
        return (Message("system", SYSTEM_PROMPT), Message("user", "\n".join(lines)))

    # ----- the game protocol (societies.games.protocol.Game) -----------------------------
    def turns(
        self, agents: Sequence[str], history: Sequence[Decision], ctx: RoundContext
    ) -> list[Turn]:
        """Both seats of every pair, in pair order: (a, b), (b, a), ..."""
        rng = ctx.rng(Stream.PAIRING)
        if self.graph is None or self.graph.complete:
            pairs = sample_pairs(Topology.COMPLETE, agents, self.pairs_per_round, rng)
        else:
            pairs = self.graph.matching(self.pairs_per_round, rng)
        memory = memories(history, agents)
        turns = []
        for index, (a, b) in enumerate(pairs):
            for me, other in ((a, b), (b, a)):
                options = self.shuffled_options(ctx.rng(Stream.OPTIONS, me))
                turns.append(
                    Turn(me, self.prompt(memory[me], options), options, group=index, partner=other)
                )
        return turns

    def outcomes(
        self,
        turns: Sequence[Turn],
        moves: Sequence[Move],
        history: Sequence[Decision],
        ctx: RoundContext,
    ) -> list[Outcome]:
        # Seats come in pairs: 2k and 2k+1 are each other's partners.
        result = []
        for i, move in enumerate(moves):
            partner = moves[i ^ 1].action
            result.append(Outcome(self.payoff(move.action, partner), partner_action=partner))
        return result

    def decisions_per_round(self, num_agents: int) -> int:
        return 2 * self.pairs_per_round

    def scripted_policy(self, seat: ScriptedSeat):
        if seat.policy == "fixed_name":
            if seat.name not in self.rules.names:
                raise ValueError(
                    f"scripted policy fixed_name needs name: one of {list(self.rules.names)}, "
                    f"got {seat.name!r}"
                )
            return FixedName(seat.name)
        if seat.policy == "uniform":
            return UniformName()
        raise ValueError(
            f"naming game has no scripted policy {seat.policy!r}; accepted: {list(self.policies)}"
        )

    def probe_items(self, orders: Sequence[tuple[str, ...]]) -> list[ProbeItem]:
        return [ProbeItem(self.prompt([], order), tuple(order)) for order in orders]

    def probe_metrics(self, before, after) -> dict[str, float]:
        return {}

    def round_metrics(self, decisions: Sequence[Decision]) -> dict[str, float]:
        return {"success_rate": metrics.success_rate(decisions)}

    def generation_metrics(
        self, decisions: Sequence[Decision], *, rounds: int, window: int, population_size: int
    ) -> GenerationMetrics:
        """Success over the generation and its last ``window`` rounds; convergence is 3N
        successful interactions in a row (Ashery et al. 2025). The majority name is the
        one named most in the last ``window`` rounds; names tied at the top are recorded
        as ``majority_tied``, with no majority name (``majority_name`` None)."""
        last = [d for d in decisions if d.round >= rounds - window]
        top = metrics.majority(last)
        return GenerationMetrics(
            majority_option=top.option,
            majority_share=top.share,
            majority_tied=top.tied,
            values={
                "success_rate": metrics.success_rate(decisions),
                "success_rate_last": metrics.success_rate(last),
                "majority_name": top.option,
                "majority_share": top.share,
                "convergence_round": metrics.convergence_round(
                    decisions, streak=3 * population_size
                ),
            },
        )

    def distill_turns(self, decisions: Sequence[Decision]) -> list[Decision]:
        """Successful turns: both players named the same item."""
        return [d for d in decisions if d.success]

    def fitness(self, agents: Sequence[str], decisions: Sequence[Decision]) -> dict[str, float]:
        """Mean payoff per interaction."""
        return mean_payoff(agents, decisions)


def memories(history: Sequence[Decision], agents: Sequence[str]) -> dict[str, list[Interaction]]:
    """Each agent's interactions in transcript order (oldest first)."""
    memory: dict[str, list[Interaction]] = {a: [] for a in agents}
    for d in history:
        memory[d.agent].append(Interaction(own=d.action, partner=d.partner_action, payoff=d.payoff))
    return memory


@dataclass(frozen=True)
class FixedName:
    """Always says one name: the committed agent of Centola et al. (2018)."""

    committed: str

    @property
    def name(self) -> str:
        return f"fixed_name:{self.committed}"

    def probs(self, turn: Turn, history: Sequence[Decision]) -> tuple[float, ...]:
        return one_hot(turn.options, self.committed)


class UniformName:
    """Picks a name uniformly at random (a null model of the naming game)."""

    name = "uniform"

    def probs(self, turn: Turn, history: Sequence[Decision]) -> tuple[float, ...]:
        return uniform_probs(turn.options)
