"""Read a sweep's run directories into :class:`~trainer.sweep_aggregates.RunOutcome` records.

Everything comes from the run directory's checked records (``summary.json`` and
``probes.json`` through ``trainer.run_records``; for summaries before schema 3, which
broke ties alphabetically, each option's choices in the window from
``transcripts.jsonl``; the committed option from ``generation_NNN/interventions.jsonl``),
so aggregates can be rebuilt at any time, from
run directories of any age.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from societies.transcripts import iter_decisions
from trainer.run_dir import RunLayout, open_run_dir
from trainer.run_records import read_probes, read_summary
from trainer.summary import GenerationSummary
from trainer.sweep_aggregates import GenerationOutcome, RunOutcome

INTERVENTIONS_FILE = "interventions.jsonl"
COMMITTED_KIND = "committed_minority"


def committed_option(run_dir: Path) -> str | None:
    """The option a run's committed minority held, from its intervention records.

    Reads every ``generation_NNN/interventions.jsonl`` (one JSON record per line) for
    records ``{"kind": "committed_minority", "option": ...}``; other kinds are ignored.

    Returns:
        The option, or None when no run generation recorded a committed minority.

    Raises:
        ValueError: a line is not a JSON object, or two records name different options.
    """
    found: tuple[str, Path] | None = None
    for path in sorted(Path(run_dir).glob(f"generation_*/{INTERVENTIONS_FILE}")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}:{lineno}: not JSON ({err}); expected one intervention record "
                    'per line, e.g. {"kind": "committed_minority", "option": "A"}'
                ) from None
            if not isinstance(record, dict) or record.get("kind") != COMMITTED_KIND:
                continue
            option = record.get("option")
            if not isinstance(option, str):
                raise ValueError(
                    f"{path}:{lineno}: committed_minority record has option={option!r}; "
                    "expected the option's name (a string)"
                )
            if found is not None and found[0] != option:
                raise ValueError(
                    f"{path}:{lineno}: committed option {option!r} differs from {found[0]!r} "
                    f"in {found[1]}; expected one committed option per run"
                )
            found = (option, path)
    return found[0] if found else None


def window_choices(
    layout: RunLayout, summary: GenerationSummary
) -> tuple[dict[str, int] | None, bool]:
    """How often each option was chosen in the summary's window (rounds >= rounds -
    window, the games' own ``majority_option`` rule), counted from the generation's
    transcript only where the summary cannot tell a tie from a win.

    A schema-3 ``summary.json`` records a tie (``majority_tied``): it is taken as
    written, and only the transcript's first decision is read, for whether the agents
    chose among options at all. A schema-2 one gave a tie to the alphabetically first
    option: the counts tell. Free-text replies (``Decision.options`` empty: debate) are
    not choices and are not counted.

    Returns:
        ``({option: count} or None (not counted), free_text)``: free_text when the
        generation's decisions are free-text replies; ``(None, False)`` when it has no
        transcript file.

    Raises:
        ValueError: a schema-2 summary's majority option is not among the options chosen
            most.
    """
    path = layout.transcripts(summary.generation)
    if not path.is_file():
        return None, False
    if summary.schema_version >= 3:
        first = next(iter_decisions(path), None)
        return None, first is not None and not first.options
    counts: dict[str, int] = {}
    free_text = False
    for d in iter_decisions(path):
        free_text |= not d.options
        if d.options and d.round >= summary.rounds - summary.window:
            counts[d.action] = counts.get(d.action, 0) + 1
    most = max(counts.values(), default=0)
    if counts and counts.get(str(summary.majority_option)) != most:
        raise ValueError(
            f"{layout.summary(summary.generation)}: majority_option "
            f"{summary.majority_option!r} is not among the options chosen most in rounds >= "
            f"{summary.rounds - summary.window} of {path} ({counts}); expected the records "
            "of one generation"
        )
    return dict(sorted(counts.items())), free_text


def read_run_outcome(
    run_dir: Path,
    *,
    point: dict[str, Any],
    seed: int,
    options: Sequence[str],
    committed: Callable[[Path], str | None] = committed_option,
) -> RunOutcome:
    """The outcome of one run: its complete generations' summaries and generation 0's prior.

    Args:
        run_dir: the run directory.
        point, seed: the run's grid values and ``run.seed``, as the sweep planned them.
        options: the game's options in this run (from its config).
        committed: reads the committed option of a run directory (None: none).
    """
    layout = open_run_dir(run_dir)
    generations = []
    for g in layout.completed_generations():
        summary = read_summary(layout, g)
        choices, free_text = window_choices(layout, summary)
        generations.append(
            GenerationOutcome(
                g,
                summary.majority_option,
                dict(summary.game_metrics),
                choices,
                free_text,
                majority_tied=tuple(summary.majority_tied),
            )
        )
    prior: dict[str, float] = {}
    if layout.is_complete(0):
        before = read_probes(layout, 0)["before"]
        if before:
            prior = {
                o: sum(p.probs.get(o, 0.0) for p in before.values()) / len(before) for o in options
            }
    return RunOutcome(
        run=layout.root.name,
        point=dict(point),
        seed=seed,
        options=tuple(options),
        prior=prior,
        generations=tuple(generations),
        committed_option=committed(layout.root),
    )
