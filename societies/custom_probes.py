"""Probes written in YAML, no code: a question, its options, optionally a system message.

Each probe is asked like the game's prior probe (:mod:`societies.probes`): with an empty
history, in several option orders (evenly spaced cyclic rotations of one shuffled
order, :func:`societies.probes.probe_orders`), every agent in one batched call, and the
renormalised option probabilities averaged over the orders. Example config section::

    probe:
      custom:
        - name: trust_strangers
          system: You are one of several agents in a village.
          prompt: "A stranger asks to borrow your tools. Do you lend them? {options}"
          options: ["Yes", "No"]

The options are shown in the prompt in each order's sequence: where the prompt has
``{options}`` they replace it (as "Yes, No"); otherwise a line
``Options: Yes, No. Answer with one of the options only.`` is appended. Options of
several tokens are scored by sequence (:mod:`societies.option_scoring`); note that
their summed log-probabilities favour shorter options.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from societies.games.protocol import ProbeItem
from societies.ordered_questions import OrderedQuestion, ask_ordered
from societies.probes import probe_orders
from societies.records import AgentPrior, Message

OPTIONS_PLACEHOLDER = "{options}"


@dataclass(frozen=True)
class CustomProbe:
    """One question with a fixed set of options.

    Attributes:
        name: names the probe in results and metrics (letters, digits, ``_``, ``-``).
        prompt: the user message; ``{options}`` marks where the options go.
        options: two or more distinct, non-empty answers without surrounding whitespace.
        system: a system message, or None for the chat template's default.
    """

    name: str
    prompt: str
    options: tuple[str, ...]
    system: str | None = None

    def __post_init__(self) -> None:
        where = f"custom probe {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"custom probe name={self.name!r}; expected a non-empty string")
        if not all(c.isalnum() or c in "_-" for c in self.name):
            raise ValueError(
                f"custom probe name={self.name!r}; accepted: letters, digits, '_' and '-' "
                "(it becomes part of metric names)"
            )
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError(f"{where}: prompt={self.prompt!r}; expected non-empty text")
        if self.system is not None and not isinstance(self.system, str):
            raise ValueError(f"{where}: system={self.system!r}; expected text or null")
        if isinstance(self.options, str) or not isinstance(self.options, Sequence):
            raise ValueError(f"{where}: options={self.options!r}; expected a list of texts")
        object.__setattr__(self, "options", tuple(self.options))
        if len(self.options) < 2:
            raise ValueError(f"{where}: options={list(self.options)}; expected at least 2")
        for option in self.options:
            if not isinstance(option, str) or not option or option != option.strip():
                raise ValueError(
                    f"{where}: option {option!r}; expected non-empty text without leading "
                    "or trailing whitespace (a leading space merges with the prompt's last token)"
                )
        if len(set(self.options)) != len(self.options):
            raise ValueError(f"{where}: options={list(self.options)} repeat; expected distinct")

    def to_dict(self) -> dict[str, Any]:
        data = {"name": self.name, "prompt": self.prompt, "options": list(self.options)}
        if self.system is not None:
            data["system"] = self.system
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "custom probe") -> CustomProbe:
        """A probe from a YAML mapping; errors name ``where`` and the bad key."""
        known = [f.name for f in fields(cls)]
        if not isinstance(data, Mapping):
            raise ValueError(
                f"{where} is a {type(data).__name__}; expected a mapping with keys {known}"
            )
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; accepted: {known}")
        missing = [k for k in ("name", "prompt", "options") if k not in data]
        if missing:
            raise ValueError(f"{where}: missing key(s) {missing}; required: name, prompt, options")
        try:
            return cls(**data)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None


def custom_probes_from_list(data: Any, where: str = "probe.custom") -> list[CustomProbe]:
    """Probes from a YAML list; an error names the entry (``probe.custom[2]``)."""
    if data is None:
        return []
    if not isinstance(data, Sequence) or isinstance(data, str):
        raise ValueError(f"{where} is a {type(data).__name__}; expected a list of probes")
    probes = [CustomProbe.from_dict(d, f"{where}[{i}]") for i, d in enumerate(data)]
    names = [p.name for p in probes]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{where}: probe names {repeated} repeat; expected distinct names")
    return probes


def render_prompt(probe: CustomProbe, order: Sequence[str]) -> tuple[Message, ...]:
    """The probe's messages with the options shown in ``order``."""
    listed = ", ".join(order)
    if OPTIONS_PLACEHOLDER in probe.prompt:
        text = probe.prompt.replace(OPTIONS_PLACEHOLDER, listed)
    else:
        text = f"{probe.prompt}\n\nOptions: {listed}.\nAnswer with one of the options only."
    user = Message("user", text)
    return (user,) if probe.system is None else (Message("system", probe.system), user)


def custom_questions(
    probes: Sequence[CustomProbe], orders: int, rng: np.random.Generator
) -> list[OrderedQuestion]:
    """Each probe in ``min(orders, len(options))`` orders, drawn from ``rng`` probe by probe."""
    if orders < 1:
        raise ValueError(f"orders={orders}; expected >= 1")
    questions = []
    for probe in probes:
        shown = probe_orders(probe.options, min(orders, len(probe.options)), rng)
        questions.append(
            OrderedQuestion(
                key=probe.name,
                answers=probe.options,
                items=tuple(ProbeItem(render_prompt(probe, o), tuple(o)) for o in shown),
                meanings=tuple(shown),
            )
        )
    return questions


def custom_probe(
    population,
    agents: Sequence[str],
    probes: Sequence[CustomProbe],
    orders: int,
    rng: np.random.Generator,
) -> dict[str, dict[str, AgentPrior]]:
    """``{agent: {probe name: AgentPrior}}`` for every probe, in one batched call.

    With ``orders == len(options)`` every option sits in every position once; a probe
    with fewer options than ``orders`` is asked in all its rotations.
    """
    return ask_ordered(population, agents, custom_questions(probes, orders, rng))
