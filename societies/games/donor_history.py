"""The donor game's records and text: donation events, the reputation trace, the prompt.

Vallinder & Hughes (2024, arXiv:2412.10270) show each donor what its recipient did the
last time it was a donor, then what *that* donation's recipient had done before it,
and so on for up to three steps. The trace lets a donor tell a defector from someone
who withheld from a defector. :func:`history_text` writes that trace from typed
:class:`DonationEvent` records and :func:`donor_prompt` puts it in the donor's prompt;
the rules, schedule and payoffs live in :mod:`societies.games.donor_game`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from societies.records import Message, check_record

if TYPE_CHECKING:
    from societies.games.donor_game import DonorGameRules

SCHEMA_VERSION = 1

SYSTEM_PROMPT = (
    "You are a player in a society playing a repeated donor game. In each round every "
    "player is paired with another player: one is the donor and the other the recipient."
)


class ActionKind(str, Enum):
    """A donor either gives or (in the costly-punishment variant) punishes."""

    DONATE = "donate"
    PUNISH = "punish"


def fraction_label(fraction: float) -> str:
    """``0.3`` -> ``"30%"``; percentages are shown to at most 6 significant digits."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction!r}; expected a share between 0 and 1")
    return f"{round(fraction * 100, 6):g}%"


def parse_fraction_label(label: str) -> float:
    """``"30%"`` -> ``0.3`` (the inverse of :func:`fraction_label` on its labels)."""
    text = label.strip()
    try:
        if not text.endswith("%"):
            raise ValueError
        percent = float(text[:-1])
    except ValueError:
        raise ValueError(f"fraction label {label!r}; expected a percentage like '30%'") from None
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"fraction label {label!r}; expected a percentage from 0% to 100%")
    return percent / 100


def units_text(x: float) -> str:
    """Resources as text: at most two decimals, no trailing zeros (``12.5``, ``10``)."""
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


@dataclass(frozen=True)
class DonationEvent:
    """One donor's action in one round, with the amounts it moved.

    Attributes:
        round: 0-based round index (text shows ``round + 1``).
        donor, recipient: the pairing.
        kind: gave or punished.
        fraction: the share of the donor's resources given (or spent punishing).
        amount: units the donor gave or spent, ``fraction * donor_resources``.
        donor_resources: the donor's resources at the start of the round.
        recipient_change: what the recipient gained (``multiplier * amount``) or, for a
            punishment, minus what it lost.
    """

    round: int
    donor: str
    recipient: str
    kind: ActionKind
    fraction: float
    amount: float
    donor_resources: float
    recipient_change: float
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ActionKind(self.kind))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DonationEvent:
        check_record("donation event", cls, data, SCHEMA_VERSION)
        return cls(**data)


def last_as_donor(
    agent: str, events: Sequence[DonationEvent], before: int | None = None
) -> DonationEvent | None:
    """``agent``'s latest event as a donor (in a round < ``before``, if given), else None."""
    latest = None
    for event in events:
        if event.donor != agent or (before is not None and event.round >= before):
            continue
        if latest is None or event.round >= latest.round:
            latest = event
    return latest


def _sentence(event: DonationEvent) -> str:
    share = fraction_label(event.fraction)
    held = units_text(event.donor_resources)
    amount = units_text(event.amount)
    if event.kind is ActionKind.PUNISH:
        return (
            f"{event.donor} spent {share} of its {held} units ({amount} units) to punish "
            f"{event.recipient}, who lost {units_text(-event.recipient_change)} units."
        )
    return f"{event.donor} gave {share} of its {held} units ({amount} units) to {event.recipient}."


def history_text(recipient: str, events: Sequence[DonationEvent], hops: int = 3) -> str:
    """What a donor is told about ``recipient``: a trace of up to ``hops`` donations.

    The first line is the recipient's latest donation; each further line is what that
    donation's recipient had done as a donor before it. ``events`` are those of earlier
    rounds only (a round's donations are simultaneous). Example with ``hops=2``::

        In round 3, B gave 50% of its 20 units (10 units) to C.
        Before that, in round 2, C gave 0% of its 10 units (0 units) to D.
    """
    if hops == 0:
        return f"You are told nothing about what {recipient} has done before."
    event = last_as_donor(recipient, events)
    if event is None:
        return f"{recipient} has not been a donor yet."
    lines = [f"In round {event.round + 1}, {_sentence(event)}"]
    while len(lines) < hops:
        earlier = last_as_donor(event.recipient, events, before=event.round)
        if earlier is None:
            lines.append(f"{event.recipient} had not been a donor before round {event.round + 1}.")
            break
        lines.append(f"Before that, in round {earlier.round + 1}, {_sentence(earlier)}")
        event = earlier
    return "\n".join(lines)


@dataclass(frozen=True)
class DonorView:
    """What a donor can see when it decides; both prompts and scripted policies read it.

    Attributes:
        donor, recipient: the pairing.
        round: 0-based round index (prompts show ``round + 1``).
        donor_resources, recipient_resources: both agents' start-of-round resources.
        history: donation events of earlier rounds (any agents; oldest first). A prompt
            shows only the recipient's trace of ``history_hops`` steps.
    """

    donor: str
    recipient: str
    round: int
    donor_resources: float
    recipient_resources: float
    history: tuple[DonationEvent, ...] = field(default_factory=tuple)


def donor_prompt(
    rules: DonorGameRules,
    view: DonorView,
    options: Sequence[str],
    keys: Sequence[str] | None = None,
) -> tuple[Message, ...]:
    """The messages a donor sees: rules, round, both resources, the trace, the options.

    ``options`` are shown in the given order. With ``keys`` (single letters, for models
    scored on one-token answers) each option is listed as ``"A: 30%"`` and the answer
    asked for is the letter. Use :meth:`DonorGame.prompt`, which checks the options.
    """
    if keys is not None and (len(keys) != len(options) or len(set(keys)) != len(keys)):
        raise ValueError(f"keys {list(keys)}; expected {len(options)} distinct keys")
    r, you, them = rules, view.donor, view.recipient
    m = f"{r.multiplier:g}"
    lines = [
        f"Every player starts with {units_text(r.endowment)} units of resources. In each "
        "round the donor chooses what share of its current resources to give to its "
        f"recipient, and the recipient receives {m} times the amount given. Donor and "
        "recipient roles alternate from round to round, and a donor never meets the same "
        f"recipient twice. The game lasts {r.rounds} rounds.",
    ]
    if r.punishment:
        lines.append(
            "Instead of giving, a donor may punish its recipient: each unit the donor spends "
            f"removes {r.punishment_cost_ratio:g} units from the recipient (never below 0)."
        )
    lines += [
        "Your score is the resources you hold after the last round. Giving also grows the "
        f"society's total resources: every unit given is worth {m} units to its recipient.",
        "",
        f"This is round {view.round + 1} of {r.rounds}. You are {you}, the donor; your "
        f"recipient is {them}.",
        f"You have {units_text(view.donor_resources)} units; {them} has "
        f"{units_text(view.recipient_resources)} units.",
        "",
        f"What you know about {them}:",
        history_text(them, view.history, r.history_hops),
        "",
    ]
    if keys is None:
        lines.append("Options: " + ", ".join(options) + ".")
    else:
        lines += ["Options:"] + [f"{k}: {o}" for k, o in zip(keys, options, strict=True)]
    meaning = f"A percentage is the share of your resources you give to {them}."
    if r.punishment:
        meaning += f' "punish X%" spends X% of your resources to punish {them} instead.'
    answer = "option" if keys is None else "letter of your option"
    lines += [meaning, f"What do you do? Answer with the {answer} only."]
    return (Message("system", SYSTEM_PROMPT), Message("user", "\n".join(lines)))
