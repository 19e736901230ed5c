"""Debate as a society plays it: the game protocol over the debate rules.

After Du et al. (2023) and Subramaniam et al. (2025, multiagent fine-tuning): a
generation debates ``questions_per_generation`` train questions; each question takes
``rounds_per_question + 1`` rounds — every agent answers alone, then revises after
seeing the other agents' previous replies. Replies are free text, generated in one
batch per round with per-row adapters and parsed (an unparseable reply is recorded as
invalid with its text, never an error). The society's answer is the majority of the
final answers.

What is distilled follows multiagent fine-tuning: each agent learns from its own
replies only — its first answers that agree with the final majority (generator data)
and its final answers that moved to the majority from a first answer that did not
(critic data). Held-out questions are never debated nor distilled: they are the prior
probe, answered greedily after each generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from societies.games import debate
from societies.games.debate import ArithmeticQuestion, DebateRules
from societies.games.protocol import (
    CORRECT,
    INCORRECT,
    GenerationMetrics,
    Move,
    Outcome,
    ProbeItem,
    RequestKind,
    RoundContext,
    ScriptedSeat,
    Turn,
    mean_payoff,
)
from societies.records import AgentPrior, Decision
from societies.topology import InteractionGraph


class DebateSocietyGame:
    """Debate behind the protocol of :mod:`societies.games.protocol`."""

    name = debate.GAME_NAME
    policies: tuple[str, ...] = ()
    options = (CORRECT, INCORRECT)  # the held-out probe's outcomes

    def __init__(
        self, rules: DebateRules, root_seed: int, graph: InteractionGraph | None = None
    ) -> None:
        self.rules = rules
        self.root_seed = root_seed
        self.graph = graph  # who sees whom in revision rounds; None: everyone

    @property
    def steps(self) -> int:
        """Rounds per question: a first answer and the revisions."""
        return self.rules.rounds_per_question + 1

    @property
    def rounds(self) -> int:
        return self.rules.questions_per_generation * self.steps

    def question(self, generation: int, round_index: int) -> ArithmeticQuestion:
        return _questions(self.root_seed, generation, self.rules)[round_index // self.steps]

    # ----- the game protocol ------------------------------------------------------------
    def turns(
        self, agents: Sequence[str], history: Sequence[Decision], ctx: RoundContext
    ) -> list[Turn]:
        q = self.question(ctx.generation, ctx.round)
        step = ctx.round % self.steps
        previous = {d.agent: d.text or "" for d in history if d.round == ctx.round - 1}
        turns = []
        for agent in agents:
            if step == 0:
                messages = debate.first_prompt(q)
            else:
                seen = set(self.graph.neighbours(agent)) if self.graph else set(agents)
                others = [
                    (f"Agent {i + 1}", previous[other])
                    for i, other in enumerate(agents)
                    if other != agent and other in seen
                ]
                messages = debate.revision_prompt(
                    q, previous[agent], others, self.rules.max_shown_chars
                )
            turns.append(
                Turn(
                    agent,
                    messages,
                    kind=RequestKind.TEXT,
                    role="debater",
                    group=ctx.round // self.steps,
                    max_new_tokens=self.rules.max_new_tokens,
                )
            )
        return turns

    def parse(self, turn: Turn, text: str) -> str | None:
        answer = debate.parse_answer(text)
        return None if answer is None else str(answer)

    def outcomes(
        self,
        turns: Sequence[Turn],
        moves: Sequence[Move],
        history: Sequence[Decision],
        ctx: RoundContext,
    ) -> list[Outcome]:
        truth = self.question(ctx.generation, ctx.round).answer
        return [Outcome(debate.payoff(_answer(m.action), truth)) for m in moves]

    def decisions_per_round(self, num_agents: int) -> int:
        return num_agents

    def scripted_policy(self, seat: ScriptedSeat):
        raise ValueError(f"debate has no scripted policies (got {seat.policy!r}); accepted: []")

    def probe_items(self, orders: Sequence[tuple[str, ...]]) -> list[ProbeItem]:
        """The held-out questions, answered alone and greedily (``orders`` is unused)."""
        return [
            ProbeItem(
                debate.first_prompt(q),
                (),
                kind=RequestKind.TEXT,
                answer=str(q.answer),
                max_new_tokens=self.rules.max_new_tokens,
            )
            for q in debate.heldout_bank(self.root_seed, self.rules)
        ]

    def probe_metrics(
        self, before: dict[str, AgentPrior], after: dict[str, AgentPrior]
    ) -> dict[str, float]:
        if not after:
            return {}
        return {"heldout_accuracy": sum(p.probs[CORRECT] for p in after.values()) / len(after)}

    def round_metrics(self, decisions: Sequence[Decision]) -> dict[str, float]:
        m = self._metrics(decisions)
        return {
            "accuracy": m.accuracy,
            "agreement": m.agreement,
            "distinct_answers": float(m.distinct),
            "invalid_rate": m.invalid_rate,
        }

    def generation_metrics(
        self, decisions: Sequence[Decision], *, rounds: int, window: int, population_size: int
    ) -> GenerationMetrics:
        """Accuracy of first and final answers and of the final majority, per question."""
        firsts, finals, majority_right, invalid, agreement, distinct = [], [], [], [], [], []
        for _, ds in sorted(_by_question(decisions, self.steps).items()):
            first = [d for d in ds if d.round % self.steps == 0]
            final = [d for d in ds if d.round % self.steps == self.steps - 1]
            if not first or not final:
                continue
            firsts.append(self._metrics(first).accuracy)
            last = self._metrics(final)
            finals.append(last.accuracy)
            majority_right.append(float(last.majority_correct))
            agreement.append(last.agreement)
            distinct.append(last.distinct)
            invalid.append(self._metrics(ds).invalid_rate)
        share = _mean(majority_right)
        return GenerationMetrics(
            majority_option=CORRECT,
            majority_share=share,
            values={
                "accuracy_first": _mean(firsts),
                "accuracy_final": _mean(finals),
                "accuracy_majority": share,
                "invalid_rate": _mean(invalid),
                "agreement_final": _mean(agreement),
                "distinct_answers_final": _mean(distinct),
            },
        )

    def distill_turns(self, decisions: Sequence[Decision]) -> list[Decision]:
        """Multiagent fine-tuning's data, per agent: first answers that agree with the
        final majority, and final answers that moved to it."""
        chosen = []
        for ds in _by_question(decisions, self.steps).values():
            final = [d for d in ds if d.round % self.steps == self.steps - 1]
            majority = debate.majority_answer([_answer(d.action) for d in final])
            if majority is None:
                continue
            firsts = {d.agent: d for d in ds if d.round % self.steps == 0}
            for d in firsts.values():
                if d.valid and _answer(d.action) == majority:
                    chosen.append(d)
            if self.steps > 1:
                for d in final:
                    first = firsts.get(d.agent)
                    moved = first is not None and _answer(first.action) != majority
                    if d.valid and moved and _answer(d.action) == majority:
                        chosen.append(d)
        return sorted(chosen, key=lambda d: (d.round, d.agent))

    def fitness(self, agents: Sequence[str], decisions: Sequence[Decision]) -> dict[str, float]:
        """Mean payoff per reply (the rules pay correct answers)."""
        return mean_payoff(agents, decisions)

    def _metrics(self, decisions: Sequence[Decision]) -> debate.RoundMetrics:
        truth = self.question(decisions[0].generation, decisions[0].round).answer
        return debate.round_metrics([_answer(d.action) for d in decisions], truth)


@lru_cache(maxsize=64)
def _questions(root_seed: int, generation: int, rules: DebateRules) -> list[ArithmeticQuestion]:
    questions = debate.generation_questions(root_seed, generation, rules)
    debate.check_distillable(q.id for q in questions)  # debated questions are train only
    return questions


def _answer(action: str) -> int | None:
    return int(action) if action else None


def _by_question(decisions: Sequence[Decision], steps: int) -> dict[int, list[Decision]]:
    grouped: dict[int, list[Decision]] = {}
    for d in decisions:
        grouped.setdefault(d.round // steps, []).append(d)
    return grouped


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")
