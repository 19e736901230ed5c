"""The protocol every game implements, and the typed pieces that cross it.

A game knows nothing of models (DESIGN.md): each round it says who acts, in which role,
with which prompt and which request (a choice over options, or free text), and it turns
the actions taken into payoffs; it measures its own rounds and generations. The loop
(``societies.society.play_round``), the probes, the summaries and the report speak to
games only through :class:`Game`. A seat may be held by an LLM agent (scored by the
population model) or by a scripted policy (:class:`ScriptedSeat`), which acts without a
model call: the game turns the policy into a distribution over the turn's options, and
the same seeded draw that samples an LLM's choice samples the policy's.

Game state (memories, resources, whose answer was what) is always rebuilt from the
generation's decisions so far, never carried in memory: a round replayed after a resume
sees exactly what it saw in an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import numpy as np

from societies import seeding
from societies.records import AgentPrior, Decision, Message, Scoring
from societies.seeding import Stream

# The outcomes of a free-text probe item (debate's held-out questions).
CORRECT, INCORRECT = "correct", "incorrect"


class RequestKind(str, Enum):
    CHOICE = "choice"  # pick one of the turn's options (read off log-probabilities)
    TEXT = "text"  # free text, parsed by the game


@dataclass(frozen=True)
class RoundContext:
    """Where a round sits in the run; every random draw of the round comes from here."""

    run: str
    generation: int
    round: int
    root_seed: int
    temperature: float

    def rng(self, stream: Stream, *keys: int | str) -> np.random.Generator:
        return seeding.rng(self.root_seed, stream, self.generation, self.round, *keys)

    def stream_seed(self, stream: Stream) -> int:
        return seeding.stream_seed(self.root_seed, stream, self.generation, self.round)


@dataclass(frozen=True)
class Turn:
    """One seat's move in a round: who acts, in which role, and what it is asked.

    Attributes:
        agent: the acting agent.
        messages: the prompt, exactly as given to the chat template.
        options: for a choice, the options in the order shown; empty for free text.
        kind: a choice or free text.
        role: the seat's role in the game ("player", "donor", "debater", ...).
        group: which interaction of the round the turn belongs to (a pair's index).
        partner: the other agent of the interaction, if there is one.
        max_new_tokens: free text only: the reply's length limit.
    """

    agent: str
    messages: tuple[Message, ...]
    options: tuple[str, ...] = ()
    kind: RequestKind = RequestKind.CHOICE
    role: str = "player"
    group: int = 0
    partner: str | None = None
    max_new_tokens: int = 0


@dataclass(frozen=True)
class Move:
    """What the seat of a :class:`Turn` did.

    Attributes:
        action: the chosen option, or the answer parsed from free text ("" if none).
        option_probs: the belief over the turn's options at temperature 1 (empty for text).
        option_mass: model probability mass on the options before renormalising (1 for a
            scripted policy; 0 for free text).
        scoring: how the action was produced.
        text: the raw reply, for free text.
        valid: False when a free-text reply could not be parsed.
        policy: the scripted policy's name, or None for an LLM agent.
    """

    action: str
    option_probs: tuple[float, ...]
    option_mass: float
    scoring: Scoring
    text: str | None = None
    valid: bool = True
    policy: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What a turn earned, and what its partner did (if it had one)."""

    payoff: float
    partner_action: str | None = None


@dataclass(frozen=True)
class ScriptedSeat:
    """A scripted policy holding ``count`` seats (the last seats of the population).

    ``name`` and ``fraction`` are the policies' arguments (``fixed_name`` needs ``name``,
    ``fixed_fraction`` needs ``fraction``); each game checks what its policies need.
    """

    policy: str
    count: int = 1
    name: str | None = None
    fraction: float | None = None


class ScriptedPolicy(Protocol):
    """A scripted seat's behaviour: a distribution over the turn's options."""

    name: str

    def probs(self, turn: Turn, history: Sequence[Decision]) -> tuple[float, ...]: ...


@dataclass(frozen=True)
class ProbeItem:
    """One empty-history question of a game's prior probe.

    A choice item (one option order) is scored over its options; a free-text item
    (debate's held-out questions) is answered greedily and parsed, and counts as correct
    when the parsed answer equals ``answer``.
    """

    messages: tuple[Message, ...]
    options: tuple[str, ...]
    kind: RequestKind = RequestKind.CHOICE
    answer: str | None = None
    max_new_tokens: int = 0


@dataclass(frozen=True)
class GenerationMetrics:
    """A game's headline numbers for one generation.

    ``majority_option`` is the option the society chose most in the window (the prior
    probe reports each agent's mass on it); ``majority_tied``: the options tied at the
    top instead (sorted; :class:`societies.metrics.Majority`), and then there is no
    majority option and ``majority_share`` is the share each of them holds. ``values``
    are the game's own metrics, as printed under ``"game_metrics"``.
    """

    majority_option: str | None
    majority_share: float
    values: dict[str, float | int | str | None] = field(default_factory=dict)
    majority_tied: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.majority_tied and self.majority_option is not None:
            raise ValueError(
                f"majority_option={self.majority_option!r} with majority_tied="
                f"{self.majority_tied!r}; a tie at the top has no majority option (None)"
            )


class Game(Protocol):
    """What the loop, the probes and the report need from a game."""

    name: str

    @property
    def options(self) -> tuple[str, ...]:
        """Every option a choice can take (the prior probe's support); () for text games."""

    def turns(
        self, agents: Sequence[str], history: Sequence[Decision], ctx: RoundContext
    ) -> list[Turn]:
        """Who acts this round and what each is asked; ``history`` is this generation's
        decisions so far, oldest first."""

    def outcomes(
        self,
        turns: Sequence[Turn],
        moves: Sequence[Move],
        history: Sequence[Decision],
        ctx: RoundContext,
    ) -> list[Outcome]:
        """Payoffs (and partners' actions) of the round's moves, aligned with ``turns``."""

    def decisions_per_round(self, num_agents: int) -> int:
        """How many decisions a complete round writes (a resumed run checks it)."""

    def scripted_policy(self, seat: ScriptedSeat) -> ScriptedPolicy:
        """The policy a scripted seat plays; errors name unknown policies and arguments."""

    def probe_items(self, orders: Sequence[tuple[str, ...]]) -> list[ProbeItem]:
        """The empty-history prior probe's questions, one per option order."""

    def probe_metrics(
        self, before: Mapping[str, AgentPrior], after: Mapping[str, AgentPrior]
    ) -> dict[str, float]:
        """Game metrics read off the probes (debate: held-out accuracy); often none."""

    def parse(self, turn: Turn, text: str) -> str | None:
        """Free-text games: the action a reply states, or None if it states none."""

    def round_metrics(self, decisions: Sequence[Decision]) -> dict[str, float]:
        """The game's per-round curves (one value per name for this round's decisions)."""

    def generation_metrics(
        self, decisions: Sequence[Decision], *, rounds: int, window: int, population_size: int
    ) -> GenerationMetrics:
        """The generation's headline numbers, from its decisions alone."""

    def distill_turns(self, decisions: Sequence[Decision]) -> list[Decision]:
        """The decisions that count as good behaviour worth learning (e.g. successes)."""

    def fitness(self, agents: Sequence[str], decisions: Sequence[Decision]) -> dict[str, float]:
        """Each agent's fitness in one generation's decisions, for selection between
        generations (``trainer.selection.select``)."""


def mean_payoff(agents: Sequence[str], decisions: Sequence[Decision]) -> dict[str, float]:
    """Each agent's mean payoff over its decisions; 0.0 for an agent that never played."""
    totals = {a: [0.0, 0] for a in agents}
    for d in decisions:
        if d.agent in totals:
            totals[d.agent][0] += d.payoff
            totals[d.agent][1] += 1
    return {a: (total / n if n else 0.0) for a, (total, n) in totals.items()}


def sampled_option(
    options: Sequence[str], probs: Sequence[float], uniform: float, temperature: float
) -> str:
    """The option a seat takes, by the same inverse-CDF draw for LLM and scripted seats."""
    from societies.choices import sample_index

    with np.errstate(divide="ignore"):
        logprobs = np.log(np.asarray(probs, dtype=np.float64))
    return options[sample_index(logprobs, temperature, uniform)]


def one_hot(options: Sequence[str], chosen: str) -> tuple[float, ...]:
    if chosen not in options:
        raise ValueError(f"{chosen!r} is not one of the options {list(options)}")
    return tuple(1.0 if o == chosen else 0.0 for o in options)


def uniform_probs(options: Sequence[str]) -> tuple[float, ...]:
    return tuple(1.0 / len(options) for _ in options)


def seats(agents: Sequence[str], scripted: Sequence[ScriptedSeat]) -> Mapping[str, ScriptedSeat]:
    """Which agents the scripted seats hold: the last ``count`` seats, in list order."""
    total = sum(s.count for s in scripted)
    if total > len(agents):
        raise ValueError(
            f"population.scripted holds {total} seats but population.size is {len(agents)}"
        )
    held: dict[str, ScriptedSeat] = {}
    start = len(agents) - total
    for seat in scripted:
        for agent in agents[start : start + seat.count]:
            held[agent] = seat
        start += seat.count
    return held
