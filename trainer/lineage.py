"""Where every adapter came from: parent adapters and the operation that made it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

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
        return cls(**data)


def read_lineage(layout: RunLayout) -> list[LineageEntry]:
    if not layout.lineage.exists():
        return []
    return [LineageEntry.from_dict(e) for e in read_json(layout.lineage)["adapters"]]


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
