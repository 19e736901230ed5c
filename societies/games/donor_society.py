"""The donor game as a society plays it: the game protocol over the donor game's rules.

Vallinder & Hughes (2024), "Cultural evolution of cooperation among LLM agents": each
round half the agents donate to the other half, roles alternating, and a donor never
meets the same recipient twice (schedule: ``donor_game.game_schedule``, seeded per
generation). Only donors act; a donor's decision records its donation level, and its
payoff is its change in resources (minus what it gave). Resources and the giving history
a donor sees are replayed from the generation's decisions, never kept in memory, so a
resumed round sees exactly what it saw the first time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from societies import seeding
from societies.games.donor_game import (
    Choice,
    DonationEvent,
    DonorAction,
    DonorGame,
    DonorGameRules,
    DonorView,
    Pairing,
    fixed_fraction,
    game_schedule,
    nearest_level,
    option_label,
    reciprocator,
    resource_stats,
)
from societies.games.protocol import (
    GenerationMetrics,
    Move,
    Outcome,
    ProbeItem,
    RoundContext,
    ScriptedSeat,
    Turn,
    one_hot,
)
from societies.metrics import majority
from societies.records import Decision
from societies.seeding import Stream


@dataclass(frozen=True)
class DonorState:
    """Start-of-round resources and the donation events of the rounds before."""

    resources: dict[str, float]
    events: tuple[DonationEvent, ...]


class DonorSocietyGame(DonorGame):
    """The donor game behind the protocol of :mod:`societies.games.protocol`.

    Args:
        rules: endowment, multiplier, levels, trace depth, punishment, rounds.
        survivors: share of agents, by final resources, whose donations are the
            behaviour distilled (the paper keeps the top half each generation).
    """

    policies = ("fixed_fraction", "reciprocator")

    def __init__(self, rules: DonorGameRules, survivors: float = 0.5) -> None:
        super().__init__(rules)
        if not 0 < survivors <= 1:
            raise ValueError(f"survivors={survivors}; expected 0 < survivors <= 1")
        self.survivors = survivors

    # ----- state, replayed from decisions -----------------------------------------------
    def schedule(
        self, agents: Sequence[str], root_seed: int, generation: int
    ) -> tuple[tuple[Pairing, ...], ...]:
        rng = seeding.rng(root_seed, Stream.PAIRING, generation)
        return game_schedule(list(agents), self.rules.rounds, rng)

    def replay(self, agents: Sequence[str], history: Sequence[Decision]) -> DonorState:
        """Resources and events after the decisions in ``history`` (whole rounds)."""
        resources = {a: float(self.rules.endowment) for a in agents}
        events: list[DonationEvent] = []
        by_round: dict[int, list[Decision]] = {}
        for d in history:
            by_round.setdefault(d.round, []).append(d)
        for r in sorted(by_round):
            actions = [
                DonorAction(d.agent, d.partner, self.rules.parse_option(d.action))
                for d in by_round[r]
            ]
            outcome = self.resolve_round(r, resources, actions)
            resources = outcome.resources
            events.extend(outcome.events)
        return DonorState(resources, tuple(events))

    def view(self, turn: Turn, history: Sequence[Decision]) -> DonorView:
        """What the donor of ``turn`` sees, replayed from ``history`` (agents absent from
        it still hold the endowment, so they need not be listed)."""
        agents = sorted(set(_agents_of(history)) | {turn.agent, turn.partner})
        state = self.replay(agents, history)
        return self._view(turn.agent, turn.partner, len(_rounds(history)), state)

    def _view(self, donor: str, recipient: str, round_index: int, state: DonorState):
        return DonorView(
            donor,
            recipient,
            round_index,
            state.resources[donor],
            state.resources[recipient],
            history=state.events,
        )

    # ----- the game protocol ------------------------------------------------------------
    def turns(
        self, agents: Sequence[str], history: Sequence[Decision], ctx: RoundContext
    ) -> list[Turn]:
        pairings = self.schedule(agents, ctx.root_seed, ctx.generation)[ctx.round]
        state = self.replay(agents, history)
        turns = []
        for index, (donor, recipient) in enumerate(pairings):
            options = self.shuffled_options(ctx.rng(Stream.OPTIONS, donor))
            view = self._view(donor, recipient, ctx.round, state)
            turns.append(
                Turn(
                    donor,
                    self.prompt(view, options),
                    options,
                    role="donor",
                    group=index,
                    partner=recipient,
                )
            )
        return turns

    def outcomes(
        self,
        turns: Sequence[Turn],
        moves: Sequence[Move],
        history: Sequence[Decision],
        ctx: RoundContext,
    ) -> list[Outcome]:
        agents = sorted({t.agent for t in turns} | {t.partner for t in turns})
        state = self.replay(agents, history)
        actions = [
            DonorAction(t.agent, t.partner, self.rules.parse_option(m.action))
            for t, m in zip(turns, moves, strict=True)
        ]
        result = self.resolve_round(ctx.round, state.resources, actions)
        return [Outcome(result.payoffs[t.agent]) for t in turns]

    def decisions_per_round(self, num_agents: int) -> int:
        return num_agents // 2

    def scripted_policy(self, seat: ScriptedSeat):
        levels = self.rules.fractions
        if seat.policy == "fixed_fraction":
            if seat.fraction is None or not 0 <= seat.fraction <= 1:
                raise ValueError(
                    f"scripted policy fixed_fraction needs fraction: a share in [0, 1], got "
                    f"{seat.fraction!r}"
                )
            level = nearest_level(seat.fraction, levels)
            return ScriptedDonor(f"fixed_fraction:{level:g}", self, fixed_fraction(level))
        if seat.policy == "reciprocator":
            return ScriptedDonor("reciprocator", self, reciprocator(levels))
        raise ValueError(
            f"donor game has no scripted policy {seat.policy!r}; accepted: {list(self.policies)}"
        )

    def probe_items(self, orders: Sequence[tuple[str, ...]]) -> list[ProbeItem]:
        return [ProbeItem(self.empty_history_prompt(order), tuple(order)) for order in orders]

    def probe_metrics(self, before, after) -> dict[str, float]:
        return {}

    def round_metrics(self, decisions: Sequence[Decision]) -> dict[str, float]:
        return {"mean_donation_fraction": self._mean_fraction(decisions)}

    def generation_metrics(
        self, decisions: Sequence[Decision], *, rounds: int, window: int, population_size: int
    ) -> GenerationMetrics:
        agents = _agents_of(decisions)
        final = self.replay(agents, decisions).resources if agents else {}
        stats = resource_stats(final) if final else None
        last = [d for d in decisions if d.round >= rounds - window]
        # Levels tied at the top leave no majority level (none is preferred by its name).
        top = majority(last)
        nan = float("nan")
        return GenerationMetrics(
            majority_option=top.option,
            majority_share=top.share,
            majority_tied=top.tied,
            values={
                "mean_donation_fraction": self._mean_fraction(decisions),
                "mean_donation_fraction_last": self._mean_fraction(last),
                "mean_final_resources": stats.mean if stats else nan,
                "min_final_resources": stats.min if stats else nan,
                "max_final_resources": stats.max if stats else nan,
                "gini_final_resources": stats.gini if stats else nan,
                "majority_level": top.option,
            },
        )

    def distill_turns(self, decisions: Sequence[Decision]) -> list[Decision]:
        """The donations of the agents that end in the top ``survivors`` share by final
        resources (ties: agent id order), the paper's survivors."""
        agents = _agents_of(decisions)
        if not agents:
            return []
        final = self.replay(agents, decisions).resources
        ranked = sorted(agents, key=lambda a: (-final[a], a))
        keep = set(ranked[: max(1, round(self.survivors * len(agents)))])
        return [d for d in decisions if d.agent in keep]

    def fitness(self, agents: Sequence[str], decisions: Sequence[Decision]) -> dict[str, float]:
        """Final resources, the paper's criterion for survival."""
        final = self.replay(sorted(set(agents) | set(_agents_of(decisions))), decisions)
        return {a: final.resources[a] for a in agents}

    def _mean_fraction(self, decisions: Sequence[Decision]) -> float:
        """Mean share given; a punishment counts as giving 0."""
        shares = [
            c.fraction if c.kind.value == "donate" else 0.0
            for c in (self.rules.parse_option(d.action) for d in decisions)
        ]
        return sum(shares) / len(shares) if shares else float("nan")


@dataclass(frozen=True)
class ScriptedDonor:
    """A donor policy of ``donor_game`` (a function of what a donor sees) as a seat."""

    name: str
    game: DonorSocietyGame
    policy: object  # DonorPolicy: DonorView -> Choice

    def probs(self, turn: Turn, history: Sequence[Decision]) -> tuple[float, ...]:
        view = self.game.view(turn, history)
        choice: Choice = self.policy(view)
        return one_hot(turn.options, option_label(choice))


def _rounds(history: Sequence[Decision]) -> set[int]:
    return {d.round for d in history}


def _agents_of(decisions: Sequence[Decision]) -> list[str]:
    return sorted({d.agent for d in decisions} | {d.partner for d in decisions if d.partner})
