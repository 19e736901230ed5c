"""Questions asked in several option orders, every agent at once, answers averaged over orders.

The prior probe's method (:mod:`societies.probes`) for any question: each order of the
options is one prompt, every (agent, question, order) is one row of a single batched
:meth:`PopulationModel.score` call (per-row adapters), and an agent's distribution over a
question's answers is the mean over orders of the renormalised option probabilities.
Averaging over orders in which every answer takes every position once (cyclic rotations)
cancels a position bias such as the small models' first-option bias.

What the model is scored on need not be the answer itself: a Likert item shows letters
"A".."E" labelled with its anchors, so ``meanings`` says which answer each shown option
stands for in each order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from societies.choices import ChoiceRequest
from societies.games.protocol import ProbeItem
from societies.records import AgentPrior


@dataclass(frozen=True)
class OrderedQuestion:
    """One question in several orders.

    Attributes:
        key: names the question in the results; unique within one call.
        answers: the answer space, in a fixed order (the result's keys).
        items: one prompt per order; ``items[i].options`` are the texts scored.
        meanings: per item, the answer each of its options stands for (a permutation
            of ``answers``).
    """

    key: str
    answers: tuple[str, ...]
    items: tuple[ProbeItem, ...]
    meanings: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if not self.items:
            raise ValueError(f"question {self.key!r} has no items; expected one per order")
        if len(self.meanings) != len(self.items):
            raise ValueError(
                f"question {self.key!r}: {len(self.items)} items but {len(self.meanings)} meanings"
            )
        for i, (item, meaning) in enumerate(zip(self.items, self.meanings, strict=True)):
            if len(item.options) != len(meaning) or sorted(meaning) != sorted(self.answers):
                raise ValueError(
                    f"question {self.key!r}: meanings[{i}]={meaning} for options "
                    f"{item.options}; expected one answer per option, a permutation of "
                    f"{self.answers}"
                )


def average_over_orders(
    answers: Sequence[str],
    meanings: Sequence[Sequence[str]],
    rows: Sequence[Sequence[float]],
) -> dict[str, float]:
    """Each answer's probability averaged over orders.

    Args:
        answers: the answer space.
        meanings: per order, the answer at each shown position.
        rows: per order, the renormalised probability of each shown position.

    Returns:
        ``{answer: mean over orders of its probability}``; independent of the order in
        which the orders are listed.
    """
    per_answer: dict[str, list[float]] = {a: [] for a in answers}
    for meaning, row in zip(meanings, rows, strict=True):
        for answer, p in zip(meaning, row, strict=True):
            per_answer[answer].append(p)
    # fsum: exactly rounded, so listing the orders differently gives the same floats.
    return {a: math.fsum(ps) / len(rows) for a, ps in per_answer.items()}


def ask_ordered(
    population, agents: Sequence[str], questions: Sequence[OrderedQuestion]
) -> dict[str, dict[str, AgentPrior]]:
    """Every agent's averaged answer distribution for every question, one batched call.

    Args:
        population: a :class:`societies.population.PopulationModel` (anything with its
            ``score(requests) -> list[OptionScores]``).
        agents: agents (adapters) to ask.
        questions: distinct keys.

    Returns:
        ``{agent: {question key: AgentPrior}}``; ``AgentPrior.probs`` maps each answer to
        its probability averaged over the question's orders, ``option_mass`` is the mean
        mass the shown options had before renormalising, ``orders`` the number of orders.
    """
    keys = [q.key for q in questions]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"question keys {duplicates} repeat; expected distinct keys")
    requests = [
        ChoiceRequest(agent, item.messages, item.options)
        for agent in agents
        for q in questions
        for item in q.items
    ]
    scores = iter(population.score(requests))
    results: dict[str, dict[str, AgentPrior]] = {}
    for agent in agents:
        results[agent] = {}
        for q in questions:
            rows = [next(scores) for _ in q.items]
            results[agent][q.key] = AgentPrior(
                agent=agent,
                probs=average_over_orders(q.answers, q.meanings, [r.probs for r in rows]),
                option_mass=math.fsum(r.option_mass for r in rows) / len(rows),
                orders=len(rows),
            )
    return results
