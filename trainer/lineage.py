"""Where every adapter came from: parent adapters and the operation that made it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from societies.records import SchemaError, check_record
from trainer.run_dir import RunLayout, atomic_write_json, read_json

LINEAGE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class LineageEntry:
    """One adapter. Paths are relative to the run directory.

    ``generation`` is -1 for the initial adapters; ``operation`` is "init", "sft" or
    "carried_over"; ``examples`` counts the distilled turns.
    """

    agent: str
    generation: int
    adapter: str
    operation: str
    parents: list[str] = field(default_factory=list)
    examples: int = 0
    schema_version: int = LINEAGE_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LineageEntry:
        check_record("lineage", cls, data, LINEAGE_SCHEMA_VERSION)
        return cls(**data)


def read_lineage(layout: RunLayout) -> list[LineageEntry]:
    """The run's lineage entries; a :class:`SchemaError` names the file if they do not read."""
    if not layout.lineage.exists():
        return []
    data = read_json(layout.lineage)
    if not isinstance(data, dict) or not isinstance(data.get("adapters"), list):
        raise SchemaError(f'{layout.lineage}: expected {{"adapters": [lineage records]}}')
    try:
        return [LineageEntry.from_dict(e) for e in data["adapters"]]
    except SchemaError as err:
        raise SchemaError(f"{layout.lineage}: {err}") from None


def write_lineage(layout: RunLayout, entries: list[LineageEntry]) -> None:
    ordered = sorted(entries, key=lambda e: (e.generation, e.agent))
    moment = f"up to generation {ordered[-1].generation}" if ordered else ""
    atomic_write_json(layout.lineage, {"adapters": [e.to_dict() for e in ordered]}, moment=moment)


def record(layout: RunLayout, new_entries: list[LineageEntry]) -> None:
    """Add or replace the entries for (agent, generation) pairs in ``new_entries``."""
    keep = {(e.agent, e.generation): e for e in read_lineage(layout)}
    for entry in new_entries:
        keep[(entry.agent, entry.generation)] = entry
    write_lineage(layout, list(keep.values()))
