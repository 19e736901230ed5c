"""Where every adapter came from: its parents, the operations that made it, its data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from societies.records import SchemaError, check_record
from trainer.run_dir import RunLayout, atomic_write_json, read_json

LINEAGE_SCHEMA_VERSION = 2


@dataclass(frozen=True)
class LineageEntry:
    """One adapter folder. Paths are relative to the run directory.

    Attributes:
        agent: the seat the adapter belongs to.
        generation: -1 for the initial adapters.
        adapter: the folder, e.g. ``generation_001/adapters/agent_03``.
        operations: what made it from its parents, in order: ``init``, ``sft``, ``dpo``,
            ``carried_over`` (nothing to learn from), ``community`` (a copy of the shared
            adapter), ``survive``, ``inherit``, ``crossover``, ``truncate``, ``mutate``,
            ``immigrant``; the arguments of each are in ``details``.
        parents: the folders it was made from (two for a crossover), first parent first.
        examples: training rows (turns or preference pairs) it was trained on.
        data_sha256: hash of those rows as JSON (rebuild them from the transcripts of
            ``data_generations`` and compare); "" when it was not trained.
        data_generations: the generations whose transcripts the rows come from.
        training: the training record (losses, tokens, seconds, DPO metrics).
        details: per operation, its arguments (weights, noise scale, seed, fitness).
    """

    agent: str
    generation: int
    adapter: str
    operations: list[str]
    parents: list[str] = field(default_factory=list)
    examples: int = 0
    data_sha256: str = ""
    data_generations: list[int] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    schema_version: int = LINEAGE_SCHEMA_VERSION

    @property
    def operation(self) -> str:
        """The operations as one label, e.g. ``inherit+crossover+mutate``."""
        return "+".join(self.operations)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LineageEntry:
        if isinstance(data, dict) and data.get("schema_version") == 1:
            data = _upgrade_v1(data)
        check_record("lineage", cls, data, LINEAGE_SCHEMA_VERSION)
        return cls(**data)


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 (one ``operation`` string, no data or training record) read as version 2,
    so a run directory written before evolution resumes."""
    data = dict(data)
    data["operations"] = [data.pop("operation", "")]
    data["schema_version"] = LINEAGE_SCHEMA_VERSION
    return data


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
    ordered = sorted(entries, key=lambda e: (e.generation, e.agent, e.adapter))
    moment = f"up to generation {ordered[-1].generation}" if ordered else ""
    atomic_write_json(layout.lineage, {"adapters": [e.to_dict() for e in ordered]}, moment=moment)


def record(layout: RunLayout, new_entries: list[LineageEntry]) -> None:
    """Add or replace the entries for the adapter folders in ``new_entries``."""
    keep = {e.adapter: e for e in read_lineage(layout)}
    for entry in new_entries:
        keep[entry.adapter] = entry
    write_lineage(layout, list(keep.values()))
