"""Personas: per-agent text put before the game's system message.

The same game, told to agents with different self-descriptions, is the "situation"
varied across the population (after the persona prompting of Park et al., "Generative
Agents", UIST 2023). The persona is part of every prompt the agent sees — rounds and
probes alike — so transcripts record it in the messages themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

from societies.records import Message


def with_persona(messages: Sequence[Message], persona: str | None) -> tuple[Message, ...]:
    """``messages`` with ``persona`` and a blank line before the first system message's
    text (or as a new system message first, when there is none); unchanged without one."""
    messages = tuple(messages)
    if not persona:
        return messages
    for i, m in enumerate(messages):
        if m.role == "system":
            updated = Message("system", f"{persona}\n\n{m.content}")
            return messages[:i] + (updated,) + messages[i + 1 :]
    return (Message("system", persona), *messages)
