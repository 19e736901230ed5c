"""Likert self-report questionnaires for agents: the IPIP Big-Five markers and kin.

The shipped questionnaire is the public-domain 50-item IPIP Big-Five Factor Markers
(``societies/data/ipip_big_five_50.json``; items and keying from https://ipip.ori.org),
markers of L. R. Goldberg (1992), "The development of markers for the Big-Five factor
structure", Psychological Assessment 4(1):26-42. Ten items per trait: Extraversion,
Agreeableness, Conscientiousness, Emotional Stability (Neuroticism reversed),
Intellect/Imagination. Scoring follows the IPIP key: responses 1 (Very inaccurate) to 5
(Very accurate); a "-" keyed item scores 6 - response; a trait is the mean of its items
(the IPIP sums them; the mean keeps the 1..5 scale).

How an agent answers (one prompt per item and option order):

- **Options are letters** "A".."E", each labelled with an anchor in the prompt. They are
  single tokens, so they are scored from one next-token distribution: no length bias
  (sequence scoring sums log-probs, so "Neither accurate nor inaccurate", 4 tokens,
  would lose to "Very accurate", 2 tokens, for its length alone) and no option that is
  a prefix of another ("Accurate" / "Accurate enough"; see
  :mod:`societies.option_scoring`).
- **Orders** (:class:`LikertOrders`): ``rotations`` (default) assigns the anchors to
  the letters in all 5 cyclic rotations of the scale, so every anchor sits under every
  letter and in every position once and a letter or position bias adds the same to
  each anchor; ``reversed`` asks the ascending and the descending scale only (2 prompts
  instead of 5; a position bias then moves mass between the scale's ends symmetrically,
  which leaves the expected score unbiased only if the bias is symmetric).
- **Expected score**: the anchors' probabilities are averaged over the orders
  (:func:`societies.ordered_questions.average_over_orders`) and the item's score is the
  expectation ``sum_k k p(anchor_k)`` on 1..5, not the argmax: it moves smoothly as an
  adapter changes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from societies.games.protocol import ProbeItem
from societies.ordered_questions import OrderedQuestion, ask_ordered
from societies.records import Message, check_record

IPIP_BIG_FIVE_50 = Path(__file__).parents[1] / "data" / "ipip_big_five_50.json"
PROFILE_SCHEMA_VERSION = 1
LETTERS = "ABCDEFGHIJ"


class Keying(str, Enum):
    """Whether agreeing with an item raises (+) or lowers (-) its trait."""

    PLUS = "+"
    MINUS = "-"


class LikertOrders(str, Enum):
    """Which orders of the anchors an item is asked in (see the module docstring)."""

    ROTATIONS = "rotations"  # every cyclic rotation of the scale: one per anchor
    REVERSED = "reversed"  # the ascending scale and its reverse


@dataclass(frozen=True)
class LikertItem:
    number: int
    text: str
    trait: str
    keyed: Keying

    @property
    def key(self) -> str:
        return str(self.number)


@dataclass(frozen=True)
class Questionnaire:
    """A Likert questionnaire: instructions, ascending anchors, keyed items per trait."""

    name: str
    instructions: str
    anchors: tuple[str, ...]
    traits: dict[str, str]  # trait key -> display name
    items: tuple[LikertItem, ...]
    source: str = ""
    licence: str = ""

    def __post_init__(self) -> None:
        if not 2 <= len(self.anchors) <= len(LETTERS):
            raise ValueError(
                f"questionnaire {self.name!r} has {len(self.anchors)} anchors; expected 2.."
                f"{len(LETTERS)}"
            )
        if not self.items:
            raise ValueError(f"questionnaire {self.name!r} has no items; expected at least one")
        numbers = [i.number for i in self.items]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"questionnaire {self.name!r} repeats item numbers")
        for item in self.items:
            if item.trait not in self.traits:
                raise ValueError(
                    f"questionnaire {self.name!r}: item {item.number} has trait "
                    f"{item.trait!r}; accepted: {sorted(self.traits)}"
                )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "questionnaire") -> Questionnaire:
        items = []
        for i, raw in enumerate(data["items"]):
            missing = [k for k in ("number", "text", "trait", "keyed") if k not in raw]
            if missing:
                raise ValueError(f"{where}: items[{i}] lacks {missing}")
            try:
                keyed = Keying(raw["keyed"])
            except ValueError:
                raise ValueError(
                    f"{where}: items[{i}].keyed={raw['keyed']!r}; accepted: '+', '-'"
                ) from None
            items.append(LikertItem(int(raw["number"]), raw["text"], raw["trait"], keyed))
        return cls(
            name=data["name"],
            instructions=data["instructions"],
            anchors=tuple(data["anchors"]),
            traits=dict(data["traits"]),
            items=tuple(items),
            source=data.get("source", ""),
            licence=data.get("licence", ""),
        )


def load_questionnaire(path: str | Path = IPIP_BIG_FIVE_50) -> Questionnaire:
    """A questionnaire from its JSON file (default: the IPIP 50-item Big-Five markers)."""
    path = Path(path)
    try:
        return Questionnaire.from_dict(json.loads(path.read_text()), where=str(path))
    except KeyError as err:
        raise ValueError(f"{path}: missing key {err}") from None


# ----- scoring (pure) --------------------------------------------------------------------


def expected_level(probs: Mapping[str, float], anchors: Sequence[str]) -> float:
    """``sum_k k p(anchors[k-1])``: the expected response on 1..len(anchors)."""
    if set(probs) != set(anchors):
        raise ValueError(f"probs has answers {sorted(probs)}; expected exactly {list(anchors)}")
    total = math.fsum(probs.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"probs sums to {total!r}; expected 1")
    return math.fsum(k * probs[a] for k, a in enumerate(anchors, start=1)) / total


def keyed_level(level: float, keyed: Keying, points: int) -> float:
    """A response as its trait counts it: ``points + 1 - level`` for a "-" item."""
    return level if Keying(keyed) is Keying.PLUS else points + 1 - level


@dataclass(frozen=True)
class TraitProfile:
    """One agent's questionnaire scores.

    Attributes:
        traits: trait -> mean keyed item score (1..len(anchors); higher = more of it).
        items: item number (as text) -> keyed expected score.
        option_mass: mean probability the letters had before renormalising, over all
            prompts (low = the agent mostly wanted to say something else).
        orders: prompts per item.
    """

    agent: str
    questionnaire: str
    traits: dict[str, float]
    items: dict[str, float]
    option_mass: float
    orders: int
    schema_version: int = field(default=PROFILE_SCHEMA_VERSION)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "questionnaire": self.questionnaire,
            "traits": dict(self.traits),
            "items": dict(self.items),
            "option_mass": self.option_mass,
            "orders": self.orders,
            "schema_version": self.schema_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraitProfile:
        check_record("trait profile", cls, data, PROFILE_SCHEMA_VERSION)
        return cls(**data)


def score_profile(
    agent: str,
    questionnaire: Questionnaire,
    item_probs: Mapping[str, Mapping[str, float]],
    option_mass: float = float("nan"),
    orders: int = 1,
) -> TraitProfile:
    """Trait scores from each item's distribution over the anchors.

    Args:
        item_probs: item key (its number as text) -> {anchor: probability}; every item
            of the questionnaire must be present.
    """
    missing = [i.key for i in questionnaire.items if i.key not in item_probs]
    if missing:
        raise ValueError(f"item_probs lacks items {missing[:5]} of {questionnaire.name!r}")
    points = len(questionnaire.anchors)
    items = {
        i.key: keyed_level(
            expected_level(item_probs[i.key], questionnaire.anchors), i.keyed, points
        )
        for i in questionnaire.items
    }
    traits = {}
    for trait in questionnaire.traits:
        scores = [items[i.key] for i in questionnaire.items if i.trait == trait]
        if scores:
            traits[trait] = math.fsum(scores) / len(scores)
    return TraitProfile(agent, questionnaire.name, traits, items, option_mass, orders)


# ----- prompts and the batched run -------------------------------------------------------


def anchor_orders(anchors: Sequence[str], orders: LikertOrders | str) -> list[tuple[str, ...]]:
    """The anchor orders an item is shown in, ascending scale first."""
    try:
        how = LikertOrders(orders)
    except ValueError:
        raise ValueError(
            f"orders={orders!r}; accepted: {[o.value for o in LikertOrders]}"
        ) from None
    up = tuple(anchors)
    if how is LikertOrders.REVERSED:
        return [up, up[::-1]]
    return [up[k:] + up[:k] for k in range(len(up))]


def item_prompt(
    questionnaire: Questionnaire, item: LikertItem, order: Sequence[str], system: str | None
) -> ProbeItem:
    """One item with the anchors in ``order`` under the letters A, B, ..."""
    letters = tuple(LETTERS[: len(order)])
    lines = [
        questionnaire.instructions,
        "",
        f'Statement: "{item.text}"',
        "",
        "How accurately does this statement describe you?",
        *(f"{letter}. {anchor}" for letter, anchor in zip(letters, order, strict=True)),
        "",
        f"Answer with one letter ({', '.join(letters)}) only.",
    ]
    messages = (Message("user", "\n".join(lines)),)
    if system is not None:
        messages = (Message("system", system), *messages)
    return ProbeItem(messages, letters)


def questionnaire_questions(
    questionnaire: Questionnaire,
    orders: LikertOrders | str = LikertOrders.ROTATIONS,
    system: str | None = None,
) -> list[OrderedQuestion]:
    """Every item as an :class:`OrderedQuestion` over the anchors."""
    shown = anchor_orders(questionnaire.anchors, orders)
    return [
        OrderedQuestion(
            key=item.key,
            answers=questionnaire.anchors,
            items=tuple(item_prompt(questionnaire, item, order, system) for order in shown),
            meanings=tuple(shown),
        )
        for item in questionnaire.items
    ]


def administer(
    population,
    agents: Sequence[str],
    questionnaire: Questionnaire | None = None,
    orders: LikertOrders | str = LikertOrders.ROTATIONS,
    system: str | None = None,
) -> dict[str, TraitProfile]:
    """Every agent's trait profile from one batched scoring call.

    Args:
        population: the :class:`societies.population.PopulationModel` of the adapters.
        agents: agents to ask.
        questionnaire: default :func:`load_questionnaire` (IPIP 50 Big-Five markers).
        orders: anchor orders per item (:class:`LikertOrders`); 50 items x 5 rotations
            = 250 rows per agent.
        system: a system message before each item, or None for the chat template's
            default.
    """
    questionnaire = questionnaire or load_questionnaire()
    questions = questionnaire_questions(questionnaire, orders, system)
    answers = ask_ordered(population, agents, questions)
    profiles = {}
    for agent in agents:
        priors = answers[agent]
        profiles[agent] = score_profile(
            agent,
            questionnaire,
            {key: prior.probs for key, prior in priors.items()},
            option_mass=math.fsum(p.option_mass for p in priors.values()) / len(priors),
            orders=len(questions[0].items),
        )
    return profiles
