"""Read a run directory's JSON records, checked: an error names the file.

Summaries and probes are written by the generation loop and read back by resume,
``report`` and ``release``; a file from another folkways version (another schema) or a
damaged one is a :class:`SchemaError` naming the file, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

from societies.records import AgentPrior, SchemaError, check_record
from trainer.run_dir import RunLayout, read_json
from trainer.summary import (
    READABLE_SUMMARY_VERSIONS,
    SUMMARY_SCHEMA_VERSION,
    GenerationSummary,
)


def read_summary(layout: RunLayout, g: int) -> GenerationSummary:
    """Generation ``g``'s summary; a :class:`SchemaError` names the file if it does not read."""
    path = layout.summary(g)
    data = read_json(path)
    found = data.get("schema_version") if isinstance(data, dict) else None
    # An older readable version is checked as itself; anything else against the current
    # one, so the error names the version this folkways writes.
    version = found if found in READABLE_SUMMARY_VERSIONS else SUMMARY_SCHEMA_VERSION
    try:
        check_record("summary", GenerationSummary, data, version)
    except SchemaError as err:
        raise SchemaError(f"{path}: {err}") from None
    try:
        return GenerationSummary.from_dict(data)
    except ValueError as err:  # e.g. a tie recorded beside a majority option
        raise SchemaError(f"{path}: {err}") from None


def read_probes(layout: RunLayout, g: int) -> dict[str, dict[str, AgentPrior]]:
    """Generation ``g``'s priors, ``{"before"|"after": {agent: prior}}``, checked like records."""
    path = layout.probes(g)
    data = read_json(path)
    try:
        return {
            phase: {agent: AgentPrior.from_dict(p) for agent, p in data[phase].items()}
            for phase in ("before", "after")
        }
    except SchemaError as err:
        raise SchemaError(f"{path}: {err}") from None
    except (KeyError, TypeError, AttributeError):
        raise SchemaError(
            f'{path}: expected {{"before": {{agent: prior}}, "after": {{agent: prior}}, ...}}'
        ) from None


def read_priors(path: Path) -> dict[str, AgentPrior]:
    """``{agent: prior}`` from a file like ``probe_before.json``."""
    data = read_json(path)
    try:
        return {agent: AgentPrior.from_dict(p) for agent, p in data.items()}
    except SchemaError as err:
        raise SchemaError(f"{path}: {err}") from None
    except (KeyError, TypeError, AttributeError):
        raise SchemaError(f"{path}: expected {{agent: prior}}") from None
