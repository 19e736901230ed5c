"""The donor game of Vallinder & Hughes (2024): indirect reciprocity with reputations.

A. Vallinder and E. Hughes, "Cultural Evolution of Cooperation among LLM Agents",
arXiv:2412.10270 (2024). Every player starts with an endowment (10 units). In each
round half the players are donors and half recipients; a donor gives a share of its
current resources and its recipient receives ``multiplier`` (2) times the gift. Roles
alternate every round, and before deciding a donor reads a trace of what its recipient
last did as a donor, what that agent's own recipient had done before, and so on for up
to three steps (:mod:`societies.games.donor_history`). The paper's costly-punishment
variant lets a donor spend x units to remove 2x from its recipient instead of giving.

This module holds the pure rules (no model): options, the schedule of pairings,
resource updates, metrics and scripted policies; the event records, trace and prompt
text are in :mod:`societies.games.donor_history` (re-exported here). Decisions made
here and not fixed by the paper:

- Pairings are drawn between two fixed seeded halves (:func:`game_schedule`), not fully
  at random; see its docstring.
- Donations in a round are resolved simultaneously from start-of-round resources
  (:meth:`DonorGame.resolve_round`); since each agent is in one pairing per round the
  order would not matter anyway.
- A punisher pays its full spend even when the target holds less than ``ratio`` times
  that; the target's resources stop at 0.
- Options are shares of the donor's resources, labelled ``"0%"`` .. ``"100%"``; with
  punishment on, ``"punish 10%"`` .. ``"punish 100%"`` follow (``"punish 0%"`` would
  be the same act as ``"0%"``, so it is not offered).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from societies.games.donor_history import (
    ActionKind,
    DonationEvent,
    DonorView,
    donor_prompt,
    fraction_label,
    last_as_donor,
)
from societies.games.donor_history import history_text as history_text
from societies.games.donor_history import parse_fraction_label as parse_fraction_label
from societies.records import Message

GAME_NAME = "donor_game"
DEFAULT_FRACTIONS: tuple[float, ...] = tuple(i / 10 for i in range(11))
PUNISH_PREFIX = "punish "


@dataclass(frozen=True)
class Choice:
    """What a donor does: give (or, with punishment on, spend) ``fraction`` of its resources."""

    fraction: float
    kind: ActionKind = ActionKind.DONATE

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"Choice.fraction={self.fraction!r}; expected a share in [0, 1]")
        object.__setattr__(self, "kind", ActionKind(self.kind))


@dataclass(frozen=True)
class DonorAction:
    """One donor's choice towards its recipient in one round."""

    donor: str
    recipient: str
    choice: Choice

    def __post_init__(self) -> None:
        if self.donor == self.recipient:
            raise ValueError(f"DonorAction has {self.donor!r} as both donor and recipient")


@dataclass(frozen=True)
class DonorGameRules:
    """Endowment, multiplier, donation levels, trace depth, punishment and game length.

    Defaults are the paper's: 10 units each, gifts doubled, 12 rounds, traces of 3 steps,
    punishment off (spend x to remove 2x when on). The paper lets donors give any amount;
    ``fractions`` are the discrete levels offered as options here.
    """

    endowment: float = 10.0
    multiplier: float = 2.0
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    history_hops: int = 3
    punishment: bool = False
    punishment_cost_ratio: float = 2.0
    rounds: int = 12

    def __post_init__(self) -> None:
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))
        if not (np.isfinite(self.endowment) and self.endowment > 0):
            raise ValueError(f"endowment={self.endowment!r}; expected a finite number > 0")
        if not (np.isfinite(self.multiplier) and self.multiplier >= 0):
            raise ValueError(f"multiplier={self.multiplier!r}; expected a finite number >= 0")
        fr = self.fractions
        if len(fr) < 2 or any(not 0.0 <= f <= 1.0 for f in fr):
            raise ValueError(f"fractions={fr}; expected >= 2 shares, each in [0, 1]")
        if any(a >= b for a, b in zip(fr[:-1], fr[1:], strict=True)):
            raise ValueError(f"fractions={fr}; expected distinct shares in increasing order")
        if len({fraction_label(f) for f in fr}) != len(fr):
            raise ValueError(f"fractions={fr}; two shares round to the same percentage label")
        if not isinstance(self.history_hops, int) or self.history_hops < 0:
            raise ValueError(f"history_hops={self.history_hops}; expected an integer >= 0")
        if not (np.isfinite(self.punishment_cost_ratio) and self.punishment_cost_ratio >= 0):
            raise ValueError(
                f"punishment_cost_ratio={self.punishment_cost_ratio!r}; expected a finite "
                "number >= 0 (units removed from the target per unit spent)"
            )
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise ValueError(f"rounds={self.rounds}; expected an integer >= 1")

    @property
    def choices(self) -> tuple[Choice, ...]:
        """Every option's meaning: the gifts, then (with punishment on) the punishments."""
        gifts = tuple(Choice(f) for f in self.fractions)
        if not self.punishment:
            return gifts
        return gifts + tuple(Choice(f, ActionKind.PUNISH) for f in self.fractions if f > 0)

    @property
    def options(self) -> tuple[str, ...]:
        """Option labels aligned with :attr:`choices` (``"30%"``, ``"punish 30%"``)."""
        return tuple(option_label(c) for c in self.choices)

    def parse_option(self, label: str) -> Choice:
        """The :class:`Choice` an option label stands for; errors on a label not offered."""
        for option, choice in zip(self.options, self.choices, strict=True):
            if option == label.strip():
                return choice
        raise ValueError(f"option {label!r} is not one of {self.options}")


def option_label(choice: Choice) -> str:
    """``Choice(0.3)`` -> ``"30%"``; ``Choice(0.3, PUNISH)`` -> ``"punish 30%"``."""
    label = fraction_label(choice.fraction)
    return PUNISH_PREFIX + label if choice.kind is ActionKind.PUNISH else label


class Pairing(NamedTuple):
    """One donor and its recipient in one round."""

    donor: str
    recipient: str


def max_rounds(num_agents: int) -> int:
    """Most rounds :func:`game_schedule` can fill without repeating a donor->recipient pair.

    Each half has ``N/2`` members, so each direction has ``N/2`` distinct cyclic shifts;
    alternating directions gives ``N`` rounds in all.
    """
    return num_agents


def game_schedule(
    agents: Sequence[str], rounds: int, rng: np.random.Generator
) -> tuple[tuple[Pairing, ...], ...]:
    """The pairings of every round of one game, a pure function of its arguments.

    A seeded permutation splits the agents into halves A and B. Even rounds (0, 2, ...)
    A donates to B, odd rounds B donates to A, so every agent alternates roles. The k-th
    round in a direction pairs ``donors[i]`` with ``recipients[(i + s_k) % (N/2)]`` for
    a seeded permutation ``s`` of the shifts 0..N/2-1, so no donor->recipient pair repeats.

    Departure from the paper, which pairs agents at random each round subject to no
    repeated meeting: here a donor only ever meets the other half. With the paper's N=12,
    R=12 each agent gives once to each of the six agents of the other half. The draws do
    not depend on ``rounds``, so a shorter game's schedule is a prefix of a longer one's.

    Raises:
        ValueError: agents not distinct or not an even number >= 2, or ``rounds`` outside
            ``1..max_rounds(len(agents))``.
    """
    n = len(agents)
    if len(set(agents)) != n:
        raise ValueError(f"agents must be distinct, got {list(agents)}")
    if n < 2 or n % 2:
        raise ValueError(f"donor game needs an even number >= 2 of agents, got {n}")
    if not 1 <= rounds <= max_rounds(n):
        raise ValueError(
            f"rounds={rounds} cannot be scheduled for {n} agents without a donor meeting the "
            f"same recipient twice; expected 1..{max_rounds(n)} rounds"
        )
    half = n // 2
    order = [agents[i] for i in rng.permutation(n)]
    halves = (order[:half], order[half:])
    shifts = (rng.permutation(half), rng.permutation(half))
    schedule = []
    for r in range(rounds):
        direction = r % 2  # 0: A gives to B; 1: B gives to A
        donors, recipients = halves[direction], halves[1 - direction]
        s = int(shifts[direction][r // 2])
        schedule.append(tuple(Pairing(donors[i], recipients[(i + s) % half]) for i in range(half)))
    return tuple(schedule)


@dataclass(frozen=True)
class RoundOutcome:
    """Resources after a round, each agent's change in resources, and the round's events."""

    resources: dict[str, float]
    payoffs: dict[str, float]
    events: tuple[DonationEvent, ...]


class DonorGame:
    """Prompts and resource updates of the donor game; stateless apart from its rules."""

    name = GAME_NAME

    def __init__(self, rules: DonorGameRules) -> None:
        self.rules = rules

    @property
    def options(self) -> tuple[str, ...]:
        return self.rules.options

    def shuffled_options(self, rng: np.random.Generator) -> tuple[str, ...]:
        return tuple(self.options[i] for i in rng.permutation(len(self.options)))

    def resolve_round(
        self, round_index: int, resources: Mapping[str, float], actions: Sequence[DonorAction]
    ) -> RoundOutcome:
        """Apply one round's actions simultaneously, from start-of-round ``resources``.

        A gift of share f by a donor holding R moves f*R out of the donor and adds
        ``multiplier``*f*R to the recipient. A punishment spends f*R and removes
        ``punishment_cost_ratio``*f*R from the recipient, stopping at 0. Payoffs are each
        agent's change in resources (0 for agents without an action). ``resources`` is
        not modified.
        """
        r = self.rules
        start = {agent: float(units) for agent, units in resources.items()}
        bad = {a: u for a, u in start.items() if not (np.isfinite(u) and u >= 0)}
        if bad:
            raise ValueError(f"resources {bad} are not finite and >= 0")
        seen: set[str] = set()
        for action in actions:
            for agent in (action.donor, action.recipient):
                if agent not in start:
                    raise ValueError(f"agent {agent!r} in {action} has no resources entry")
                if agent in seen:
                    raise ValueError(f"agent {agent!r} is in more than one action this round")
                seen.add(agent)
            if action.choice.kind is ActionKind.PUNISH and not r.punishment:
                raise ValueError(f"{action} punishes, but these rules have punishment off")
        new = dict(start)
        events = []
        for action in actions:
            donor_units = start[action.donor]
            amount = action.choice.fraction * donor_units
            if action.choice.kind is ActionKind.DONATE:
                change = r.multiplier * amount
            else:
                # + 0.0 turns -0.0 (punishing an agent with nothing) into 0.0
                change = -min(r.punishment_cost_ratio * amount, start[action.recipient]) + 0.0
            new[action.donor] = donor_units - amount
            new[action.recipient] = start[action.recipient] + change
            events.append(
                DonationEvent(
                    round=round_index,
                    donor=action.donor,
                    recipient=action.recipient,
                    kind=action.choice.kind,
                    fraction=action.choice.fraction,
                    amount=amount,
                    donor_resources=donor_units,
                    recipient_change=change,
                )
            )
        payoffs = {agent: new[agent] - start[agent] for agent in start}
        return RoundOutcome(new, payoffs, tuple(events))

    def apply_round(
        self, resources: Mapping[str, float], actions: Sequence[DonorAction]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """``(new_resources, payoffs)`` of :meth:`resolve_round` (without the events)."""
        outcome = self.resolve_round(0, resources, actions)
        return outcome.resources, outcome.payoffs

    def prompt(
        self, view: DonorView, options: Sequence[str], keys: Sequence[str] | None = None
    ) -> tuple[Message, ...]:
        """The messages a donor sees: rules, round, both resources, the trace, the options.

        ``options`` must be a permutation of :attr:`options` (the caller shuffles them).
        With ``keys`` (single letters, for models scored on one-token answers) each option
        is listed as ``"A: 30%"`` and the answer asked for is the letter.
        """
        if sorted(options) != sorted(self.options):
            raise ValueError(f"options {list(options)} are not a permutation of {self.options}")
        return donor_prompt(self.rules, view, options, keys)

    def empty_history_prompt(
        self,
        options: Sequence[str],
        keys: Sequence[str] | None = None,
        donor: str = "agent_00",
        recipient: str = "agent_01",
    ) -> tuple[Message, ...]:
        """The prior probe: round 1, both at the endowment, the recipient has no history."""
        e = self.rules.endowment
        return self.prompt(DonorView(donor, recipient, 0, e, e), options, keys)


# ---- metrics --------------------------------------------------------------------------


def mean_fraction_by_round(events: Sequence[DonationEvent]) -> dict[int, float]:
    """Mean share given per round; a punishment counts as giving 0."""
    by_round: dict[int, list[float]] = {}
    for e in events:
        given = e.fraction if e.kind is ActionKind.DONATE else 0.0
        by_round.setdefault(e.round, []).append(given)
    return {r: float(np.mean(v)) for r, v in sorted(by_round.items())}


def gini(values: Sequence[float]) -> float:
    """Gini coefficient (mean absolute difference / twice the mean), population form.

    0 when all values are equal (including all zero); ``(n-1)/n`` when one of n holds all.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size == 0 or np.any(x < 0) or not np.all(np.isfinite(x)):
        raise ValueError(f"gini needs a non-empty list of finite values >= 0, got {list(values)}")
    total = x.sum()
    if total == 0:
        return 0.0
    n = x.size
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(2.0 * np.dot(ranks, x) / (n * total) - (n + 1) / n)


def total_welfare(resources: Mapping[str, float]) -> float:
    """The society's total resources."""
    return float(np.sum(np.fromiter(resources.values(), dtype=np.float64)))


@dataclass(frozen=True)
class ResourceStats:
    mean: float
    min: float
    max: float
    total: float
    gini: float


def resource_stats(resources: Mapping[str, float]) -> ResourceStats:
    """Mean, min, max, total and Gini of (typically final) resources."""
    x = np.fromiter(resources.values(), dtype=np.float64)
    return ResourceStats(
        float(x.mean()), float(x.min()), float(x.max()), float(x.sum()), gini(x.tolist())
    )


# ---- scripted policies ----------------------------------------------------------------

DonorPolicy = Callable[[DonorView], Choice]


def nearest_level(fraction: float, levels: Sequence[float]) -> float:
    """The level closest to ``fraction``; an exact tie goes to the lower level."""
    levels = sorted(levels)
    return float(levels[int(np.argmin([abs(level - fraction) for level in levels]))])


def fixed_fraction(fraction: float) -> DonorPolicy:
    """Always give ``fraction`` (which should be one of the rules' levels)."""
    choice = Choice(fraction)
    return lambda view: choice


def reciprocator(levels: Sequence[float] = DEFAULT_FRACTIONS, default: float = 1.0) -> DonorPolicy:
    """Give what the recipient gave the last time it was a donor, snapped to ``levels``.

    A recipient that last punished gave nothing, so it gets 0. A recipient that has not
    been a donor yet gets ``default`` (1.0: open by cooperating, like tit-for-tat). Reads
    only the recipient's latest event, the first line of its trace.
    """
    Choice(default)  # validates the share

    def policy(view: DonorView) -> Choice:
        last = last_as_donor(view.recipient, view.history)
        if last is None:
            given = default
        else:
            given = last.fraction if last.kind is ActionKind.DONATE else 0.0
        return Choice(nearest_level(given, levels))

    return policy
