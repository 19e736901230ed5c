"""Scheduled interventions: who is taken over, whose adapter is replaced, and when.

Everything here is a pure function of the config, the seeds and the transcripts, so a
resumed round sees exactly the interventions an uninterrupted run applied (DESIGN.md,
decision 6). Three kinds (``interventions:`` in the config):

- ``committed_minority`` (Centola, Becker, Brackbill & Baronchelli, Science 2018;
  Ashery et al., Sci. Adv. 2025): a share of the seats, drawn by the ``intervention``
  seed stream, play a scripted policy (naming game: always the same name) from a round
  on; with no name given, the name least played in the rounds before, so the minority
  pushes against a settled convention;
- ``ablation``: agents' adapters reset to the base model (their initial adapter, whose
  delta is zero) for the rest of the generation;
- ``transplant``: agents get another agent's adapter of the generation's start.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from societies.records import Decision
from societies.seeding import Stream, rng


@dataclass(frozen=True)
class InterventionEvent:
    """An intervention as applied in one generation (``interventions.jsonl``)."""

    index: int  # position in the config's interventions list
    kind: str
    generation: int
    round: int  # first round of this generation it applies to
    agents: tuple[str, ...]
    option: str | None = None  # committed_minority: the option held
    policy: str | None = None
    donor: str | None = None
    adapter: str | None = None  # ablation/transplant: the adapter swapped in (run-relative)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["agents"] = list(self.agents)
        return data


def committed_seats(
    index: int, share: float, population_size: int, llm_agents: Sequence[str], root_seed: int
) -> tuple[str, ...]:
    """The ``round(share × size)`` LLM seats a committed minority takes, drawn by the
    ``intervention`` stream keyed by the intervention's index, in population order."""
    count = round(share * population_size)
    order = rng(root_seed, Stream.INTERVENTION, index).permutation(len(llm_agents))
    chosen = {llm_agents[i] for i in order[:count]}
    return tuple(a for a in llm_agents if a in chosen)


def least_played(options: Sequence[str], decisions: Sequence[Decision]) -> str:
    """The option chosen least often in ``decisions`` (ties: the first in ``options``)."""
    counts = Counter(d.action for d in decisions)
    return min(options, key=lambda o: (counts.get(o, 0), options.index(o)))


def committed_option(
    intervention, options: Sequence[str], transcripts: Callable[[int], Sequence[Decision]]
) -> str:
    """The option a committed minority holds: its ``name``, or the one least played
    before it started (the rounds of its start generation before its round; at round 0,
    the previous generation's whole transcript)."""
    if intervention.name is not None:
        return intervention.name
    g, r = intervention.generation, intervention.round
    before = [d for d in transcripts(g) if d.round < r] if r > 0 else list(transcripts(g - 1))
    if not before:
        raise ValueError(
            f"committed minority at generation {g} round {r} has no name and no earlier rounds "
            "to find the least played option in; give interventions[].name"
        )
    return least_played(options, before)


def adapter_swaps(
    interventions: Sequence, generation: int, round_index: int
) -> dict[str, tuple[int, Any]]:
    """Agent -> (index, intervention) of the ablations and transplants of ``generation``
    applied by ``round_index`` (a later one overrides an earlier one for the same agent)."""
    swaps: dict[str, tuple[int, Any]] = {}
    for index, iv in enumerate(interventions):
        kind = getattr(iv.kind, "value", iv.kind)
        if kind == "committed_minority" or iv.generation != generation or iv.round > round_index:
            continue
        for agent in iv.agents:
            swaps[agent] = (index, iv)
    return swaps


def adapters_at(
    interventions: Sequence,
    generation: int,
    round_index: int,
    start: Mapping[str, Path],
    initial: Callable[[str], Path],
) -> dict[str, Path]:
    """The adapter folders in play at (generation, round): the generation's ``start``
    adapters with its ablations (-> the agent's ``initial`` adapter) and transplants
    (-> the donor's start adapter) applied."""
    current = dict(start)
    for agent, (_, iv) in adapter_swaps(interventions, generation, round_index).items():
        kind = getattr(iv.kind, "value", iv.kind)
        current[agent] = initial(agent) if kind == "ablation" else start[iv.donor]
    return current
