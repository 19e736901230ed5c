"""Typed records for everything that crosses a boundary: prompts, decisions, probes.

Transcripts are the source of truth (DESIGN.md, decision 5): datasets, metrics and
reports are derived from these records, never from in-memory state. Each record is
a frozen dataclass with ``to_dict``/``from_dict`` and a schema version so that old
run directories stay readable.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SCHEMA_VERSION = 1


class Scoring(str, Enum):
    """How a decision's action was produced (``Decision.scoring``)."""

    NEXT_TOKEN = "next_token"  # every option one token: one next-token distribution
    SEQUENCE = "sequence"  # some option longer: summed (teacher-forced) token log-probs
    SCRIPTED = "scripted"  # a scripted policy's distribution; no model call
    GENERATE = "generate"  # free text, generated and parsed


class SchemaError(ValueError):
    """A serialized record does not match the schema this code reads."""


def check_record(kind: str, cls: type, data: Any, version: int) -> None:
    """Raise :class:`SchemaError` unless ``data`` is a ``cls`` record at ``version``.

    Checks the schema version first (a record from another folkways version usually
    differs in its fields too, and the version is what the reader needs to know), then
    unknown and missing fields. Callers add the file (and line) to the message.
    """
    if not isinstance(data, dict):
        raise SchemaError(f"{kind} record is a JSON {type(data).__name__}; expected an object")
    found = data.get("schema_version")
    if found != version:
        raise SchemaError(
            f"{kind} record has schema_version={found!r}; this folkways reads schema_version "
            f"{version} (the file was written by another folkways version)"
        )
    declared = fields(cls)
    unknown = sorted(set(data) - {f.name for f in declared})
    if unknown:
        raise SchemaError(
            f"{kind} record has unknown fields {unknown}; known: {sorted(f.name for f in declared)}"
        )
    missing = [
        f.name
        for f in declared
        if f.name not in data and f.default is MISSING and f.default_factory is MISSING
    ]
    if missing:
        raise SchemaError(f"{kind} record lacks required fields {missing}")


def read_jsonl_records(path: Path, from_dict: Callable[[Any], T], kind: str) -> list[T]:
    """Every record of a JSON-lines file, each built by ``from_dict``; blank lines are
    skipped. An error names ``file:line`` and what the line should have been."""
    records = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(from_dict(json.loads(line)))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SchemaError(
                f"{path}:{number}: not JSON ({err}); expected one {kind} record per line"
            ) from None
        except (SchemaError, TypeError) as err:
            raise SchemaError(f"{path}:{number}: {err}") from None
    return records


def _check_schema(kind: str, data: Any) -> None:
    check_record(kind, _KINDS[kind], data, SCHEMA_VERSION)


@dataclass(frozen=True)
class Message:
    """One chat message, as given to the tokenizer's chat template."""

    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ("system", "user", "assistant"):
            raise ValueError(
                f"Message.role={self.role!r}; expected 'system', 'user' or 'assistant'"
            )

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Message:
        return cls(role=data["role"], content=data["content"])


@dataclass(frozen=True)
class Decision:
    """One agent's decision in one interaction, with what it saw and what followed.

    Attributes:
        run: run name.
        generation: generation index (0-based).
        round: round index within the generation.
        pair: index of the interaction within the round.
        agent: the deciding agent's id (also its adapter's name).
        partner: the other agent in the interaction (None in games without one).
        game: the game's name.
        messages: the prompt exactly as given to the chat template.
        options: the options in the order shown in the prompt (shuffled per call);
            empty for a free-text reply.
        option_probs: the agent's renormalised probability of each option at
            temperature 1, aligned with ``options`` (its belief).
        option_mass: total probability the options had before renormalising.
        action: the sampled option, or the answer parsed from a free-text reply.
        partner_action: what the partner did in the same interaction (None if no partner).
        payoff: this agent's payoff.
        seed_streams: the named seed streams that produced this record's randomness.
        role: the seat's role in the game ("player", "donor", "debater", ...).
        scoring: how the action was produced: "next_token", "sequence" (multi-token
            options), "scripted" (a scripted seat: no model call) or "generate" (free text).
        policy: the scripted policy's name; None for an LLM agent.
        text: a free-text reply as generated; None for choices.
        valid: False for a free-text reply no answer could be parsed from.
    """

    run: str
    generation: int
    round: int
    pair: int
    agent: str
    partner: str | None
    game: str
    messages: tuple[Message, ...]
    options: tuple[str, ...]
    option_probs: tuple[float, ...]
    option_mass: float
    action: str
    partner_action: str | None
    payoff: float
    seed_streams: dict[str, int] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    role: str = "player"
    scoring: str = "next_token"
    policy: str | None = None
    text: str | None = None
    valid: bool = True

    def __post_init__(self) -> None:
        if len(self.options) != len(self.option_probs):
            raise ValueError(
                f"Decision has {len(self.options)} options but {len(self.option_probs)} probabilities"
            )
        if self.options and self.action not in self.options:
            raise ValueError(f"Decision.action={self.action!r} is not one of {self.options}")

    @property
    def success(self) -> bool:
        """Both sides of an interaction did the same (the naming game's success)."""
        return self.partner_action is not None and self.action == self.partner_action

    @property
    def scripted(self) -> bool:
        return self.policy is not None

    def prob_of(self, option: str) -> float:
        return self.option_probs[self.options.index(option)]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["messages"] = [m.to_dict() for m in self.messages]
        data["options"] = list(self.options)
        data["option_probs"] = list(self.option_probs)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        _check_schema("decision", data)
        values = dict(data)
        values["messages"] = tuple(Message.from_dict(m) for m in data["messages"])
        values["options"] = tuple(data["options"])
        values["option_probs"] = tuple(float(p) for p in data["option_probs"])
        return cls(**values)


@dataclass(frozen=True)
class AgentPrior:
    """One agent's empty-memory distribution over the options (the prior probe).

    ``probs`` maps each option to its probability averaged over option orders;
    ``option_mass`` is the mean next-token mass the options had before renormalising.
    """

    agent: str
    probs: dict[str, float]
    option_mass: float
    orders: int
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        # One order for every copy, computed or read back from JSON (written with sorted
        # keys): a sum over the probabilities then rounds the same way in a resumed run.
        object.__setattr__(self, "probs", dict(sorted(self.probs.items())))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentPrior:
        _check_schema("prior", data)
        return cls(**data)


_KINDS = {"decision": Decision, "prior": AgentPrior}
