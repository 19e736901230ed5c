"""The naming game of Ashery, Aiello & Baronchelli (Science Advances, 2025).

Two agents simultaneously name one of W items; both score +100 if they match and
−50 otherwise. Each agent sees only its own last H interactions (what it said, what
its partner said, its payoff); the list of names is shuffled in every prompt
(the embedded model has a strong first-option bias, FACTS.md). Population-level
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

from societies.records import Message

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
    """Prompts and payoffs of the naming game; stateless apart from its rules."""

    name = GAME_NAME

    def __init__(self, rules: NamingGameRules) -> None:
        self.rules = rules

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
