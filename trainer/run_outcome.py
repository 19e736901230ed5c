"""A generation's outcome under the one convergence definition, read from its run directory.

Every method's run directory (a society run, a baseline seed, an online-RL seed) is read
the same way (issue #12): after each round, every agent's most probable choice;
consensus and the converged round follow :mod:`societies.baselines.convergence`. Where
the choices come from:

- ``generation_NNN/consensus.jsonl``, one :class:`RoundConsensus` per round, when the
  run wrote one: the baselines, whose policies live outside the transcripts (a
  learner's table in the empty-history state, an inventory of words, the adapters'
  prior probe after each online update);
- otherwise the transcripts (a society run): an agent's most probable choice after a
  round is the argmax of the option probabilities of its latest decision so far (its
  in-context policy); an agent that has not played yet has none, a tie counts as none.

``final_success`` is the mean of the per-round ``success_rate`` metrics over the
generation's last ``window`` rounds (``summary.json``'s window), as the baselines
compute it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from societies.baselines import convergence
from societies.baselines.records import final_success
from societies.population_spec import agent_names
from societies.records import Decision, check_record, read_jsonl_records
from societies.transcripts import read_decisions
from trainer.run_dir import RunLayout, atomic_write_text, open_run_dir
from trainer.run_records import read_summary
from trainer.tracking import read_metrics

CONSENSUS_FILE = "consensus.jsonl"
CONSENSUS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RoundConsensus:
    """The option every agent's most probable choice was after ``round`` (None: none)."""

    round: int
    option: str | None
    schema_version: int = CONSENSUS_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundConsensus:
        check_record("consensus", cls, data, CONSENSUS_SCHEMA_VERSION)
        return cls(**data)


@dataclass(frozen=True)
class RunOutcome:
    rounds: int
    converged_round: int | None
    """First round from which one consensus held to the end of the generation; None if
    it ended without consensus."""
    winner: str | None
    final_success: float | None
    """None when the game has no success (the donor game)."""


def consensus_path(layout: RunLayout, g: int) -> Path:
    return layout.generation(g) / CONSENSUS_FILE


def write_consensus(path: Path, rows: Sequence[RoundConsensus]) -> None:
    atomic_write_text(path, "".join(json.dumps(r.to_dict()) + "\n" for r in rows))


def read_consensus(path: Path) -> list[RoundConsensus]:
    """Every record of a consensus file; an error names file:line if one does not read."""
    return read_jsonl_records(path, RoundConsensus.from_dict, "consensus")


def consensus_from_decisions(
    decisions: Sequence[Decision], agents: Sequence[str]
) -> list[RoundConsensus]:
    """The consensus after each round of a society's decisions (see the module docstring)."""
    options = sorted({o for d in decisions for o in d.options})
    index = {a: i for i, a in enumerate(agents)}
    latest = np.zeros((len(agents), len(options)))  # all tied: no choice yet
    by_round: dict[int, list[Decision]] = {}
    for d in decisions:
        by_round.setdefault(d.round, []).append(d)
    rows = []
    for r in sorted(by_round):
        for d in by_round[r]:
            probs = dict(zip(d.options, d.option_probs, strict=True))
            latest[index[d.agent]] = [probs.get(o, 0.0) for o in options]
        held = int(convergence.consensus(convergence.most_probable(latest)))
        rows.append(RoundConsensus(r, None if held == convergence.NO_CHOICE else options[held]))
    return rows


def outcome_of(
    rows: Sequence[RoundConsensus], success_by_round: Sequence[float] | None, window: int
) -> RunOutcome:
    """Converged round and winner of a consensus series; success over its last rounds."""
    options = sorted({r.option for r in rows if r.option is not None})
    held = np.array(
        [convergence.NO_CHOICE if r.option is None else options.index(r.option) for r in rows]
    )
    at = convergence.converged_round(held)
    return RunOutcome(
        rounds=len(rows),
        converged_round=None if at is None else rows[at].round,
        winner=None if at is None else rows[-1].option,
        final_success=None
        if success_by_round is None
        else final_success(np.array(success_by_round), window),
    )


def run_outcome(run_dir: str | Path, generation: int = 0) -> RunOutcome:
    """The outcome of a complete ``generation`` of the run directory ``run_dir``."""
    layout = open_run_dir(run_dir)
    if not layout.is_complete(generation):
        raise FileNotFoundError(
            f"{layout.generation(generation)} is not a complete generation (no COMPLETE); "
            f"complete: {layout.completed_generations()}"
        )
    summary = read_summary(layout, generation)
    path = consensus_path(layout, generation)
    if path.exists():
        rows = read_consensus(path)
    else:
        config = yaml.safe_load(layout.config.read_text())
        agents = agent_names(config["population"]["size"])
        rows = consensus_from_decisions(read_decisions(layout.transcripts(generation)), agents)
    success = sorted(
        (m.round, m.value)
        for m in read_metrics(layout.generation_metrics(generation))
        if m.name == "success_rate" and m.phase == "rollout" and m.round is not None
    )
    return outcome_of(rows, [v for _, v in success] if success else None, summary.window)
