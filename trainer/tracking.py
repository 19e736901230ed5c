"""Metric records: ``metrics.jsonl`` always (DESIGN.md, decision 8).

Each generation writes its own ``generation_XXX/metrics.jsonl``; the run-level
``metrics.jsonl`` is rebuilt from the completed generations, so a resumed run never
holds a duplicated or half-written record.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from societies.records import check_record, read_jsonl_records
from trainer.run_dir import RunLayout, atomic_write_text

METRICS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class MetricRecord:
    """One number: ``name`` at ``generation`` (and optionally for one agent or round).

    ``phase`` says when it was measured: "rollout", "probe_before", "probe_after",
    "distill", "weights" (adapter weight-space metrics), "evolution" (fitness), "drift"
    (probe distributions against generation 0 and the population mean), "traits_before"
    / "traits_after" (Big-Five scores) or "information" (transfer entropy between agents,
    partners' mutual information).
    """

    generation: int
    name: str
    value: float
    phase: str
    agent: str | None = None
    round: int | None = None
    schema_version: int = METRICS_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricRecord:
        check_record("metric", cls, data, METRICS_SCHEMA_VERSION)
        return cls(**data)


def write_generation_metrics(path: Path, records: list[MetricRecord]) -> None:
    atomic_write_text(
        path, "".join(json.dumps(r.to_dict(), sort_keys=True) + "\n" for r in records)
    )


def read_metrics(path: Path) -> list[MetricRecord]:
    """Every record of a metrics file; an error names file:line if one does not read."""
    if not path.exists():
        return []
    return read_jsonl_records(path, MetricRecord.from_dict, "metric")


def rebuild_run_metrics(layout: RunLayout) -> None:
    """Concatenate the completed generations' metrics into the run-level file.

    Idempotent and cheap when nothing changed, so a resumed run calls it on start: a
    kill between a generation's COMPLETE and this rebuild leaves the file behind.
    """
    lines = []
    completed = layout.completed_generations()
    for g in completed:
        path = layout.generation_metrics(g)
        if path.exists():
            lines.append(path.read_text())
    text = "".join(lines)
    if not layout.metrics.exists() or layout.metrics.read_text() != text:
        atomic_write_text(layout.metrics, text, moment=f"generations {completed}")
