"""Probes of the agents' priors: what an agent does with an empty memory.

The prior probe asks each agent the game's question with no history, once for each of
several option orders, and averages the renormalised option probabilities. The orders
are evenly spaced cyclic rotations of one shuffled order, so when their number equals
the number of names each name sits in each position exactly once: the first-option
bias of small models (the embedded model: 0.48 on the first of 10 names) cancels out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from societies.choices import ChoiceRequest
from societies.games.protocol import CORRECT, INCORRECT, Game, ProbeItem, RequestKind
from societies.personas import with_persona
from societies.records import AgentPrior

if TYPE_CHECKING:
    from societies.population import PopulationModel


def probe_orders(
    names: Sequence[str], orders: int, rng: np.random.Generator
) -> list[tuple[str, ...]]:
    """``orders`` evenly spaced cyclic rotations of a shuffled ``names``."""
    if not 1 <= orders <= len(names):
        raise ValueError(f"orders={orders}; expected 1..{len(names)}")
    base = [names[i] for i in rng.permutation(len(names))]
    offsets = sorted({round(k * len(names) / orders) % len(names) for k in range(orders)})
    return [tuple(base[o:] + base[:o]) for o in offsets]


def prior_probe(
    population: PopulationModel,
    game: Game,
    agents: Sequence[str],
    orders: Sequence[tuple[str, ...]],
    personas: Mapping[str, str] | None = None,
) -> dict[str, AgentPrior]:
    """Every agent's empty-history distribution over the game's options, in one batched
    call; an agent with a persona is asked with it (societies.personas)."""
    items = game.probe_items(orders)
    personas = personas or {}
    if items and items[0].kind is RequestKind.TEXT:
        return _answer_probe(population, game, agents, items, personas)
    requests = [
        ChoiceRequest(agent, with_persona(item.messages, personas.get(agent)), item.options)
        for agent in agents
        for item in items
    ]
    scores = population.score(requests)
    priors: dict[str, AgentPrior] = {}
    for i, agent in enumerate(agents):
        rows = scores[i * len(orders) : (i + 1) * len(orders)]
        totals = dict.fromkeys(game.options, 0.0)
        for order, row in zip(orders, rows, strict=True):
            for name, p in zip(order, row.probs, strict=True):
                totals[name] += p
        priors[agent] = AgentPrior(
            agent=agent,
            probs={name: total / len(orders) for name, total in totals.items()},
            option_mass=float(np.mean([row.option_mass for row in rows])),
            orders=len(orders),
        )
    return priors


def _answer_probe(
    population: PopulationModel,
    game: Game,
    agents: Sequence[str],
    items: Sequence[ProbeItem],
    personas: Mapping[str, str],
) -> dict[str, AgentPrior]:
    """Free-text items (debate's held-out questions), answered greedily in one batch:
    each agent's "prior" is its share of correct answers; ``option_mass`` holds the share
    of replies that stated an answer at all."""
    from societies.text_generation import TextRequest, generate_replies

    requests = [
        TextRequest(agent, with_persona(item.messages, personas.get(agent)), item.max_new_tokens)
        for agent in agents
        for item in items
    ]
    replies = generate_replies(population, requests, temperature=0.0, seed=0)
    priors: dict[str, AgentPrior] = {}
    for i, agent in enumerate(agents):
        rows = replies[i * len(items) : (i + 1) * len(items)]
        parsed = [game.parse(None, text) for text in rows]
        right = sum(
            p is not None and p == item.answer for p, item in zip(parsed, items, strict=True)
        )
        accuracy = right / len(items)
        priors[agent] = AgentPrior(
            agent=agent,
            probs={CORRECT: accuracy, INCORRECT: 1.0 - accuracy},
            option_mass=sum(p is not None for p in parsed) / len(items),
            orders=len(items),
        )
    return priors
