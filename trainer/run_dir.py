"""The run directory (DESIGN.md, decision 6); writes into it are atomic (societies.atomic)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from societies.atomic import atomic_write_json, atomic_write_text

__all__ = [
    "RunDirError",
    "RunLayout",
    "adapter_is_saved",
    "open_run_dir",
    "atomic_write_json",
    "atomic_write_text",
    "read_json",
]

COMPLETE = "COMPLETE"
_ACCEPTED = "expected a run directory written by `folkways run` (runs/<name>, holding config.yaml)"


class RunDirError(FileNotFoundError):
    """A path given as a run directory is not one; the message says what is expected."""


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path}: not valid JSON ({err}); expected the JSON file folkways wrote there: "
            "the run directory is damaged, restore the file from a copy"
        ) from None


class RunLayout:
    """Paths inside one run directory.

    ```
    runs/<name>/
      config.yaml                      resolved config, as run
      graph.json                       the interaction graph (networkx node-link)
      initial_adapters/<agent>/        fresh adapters generation 0 starts from
      generation_000/
        transcripts.jsonl              one Decision per line
        interventions.jsonl            interventions applied in this generation, if any
        probe_before.json              priors of the adapters the generation started with
        probes.json                    priors before and after distillation
        adapters/<agent>/              the adapter the next generation starts from
                                       (+ training.json): distilled, then evolved
        distilled/<agent>/             with evolution on: the adapter as distilled,
                                       before selection, crossover and mutation
        community/                     with distill.scope=community: the shared adapter
        distill_plans/<key>.json       the batched backend's agent groups of a pass
        summary.json                   the generation's headline numbers
        COMPLETE                       written last
      metrics.jsonl                    one record per (generation, metric, agent?, round?)
      lineage.json                     parents, operations and data of every adapter
      environment.jsonl                CPU, libraries and commit of each process that worked
    ```
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def lineage(self) -> Path:
        return self.root / "lineage.json"

    @property
    def environment(self) -> Path:
        return self.root / "environment.jsonl"

    def initial_adapter(self, agent: str) -> Path:
        return self.root / "initial_adapters" / agent

    def generation(self, g: int) -> Path:
        return self.root / f"generation_{g:03d}"

    def transcripts(self, g: int) -> Path:
        return self.generation(g) / "transcripts.jsonl"

    def probe_before(self, g: int) -> Path:
        return self.generation(g) / "probe_before.json"

    def probes(self, g: int) -> Path:
        return self.generation(g) / "probes.json"

    def summary(self, g: int) -> Path:
        return self.generation(g) / "summary.json"

    def generation_metrics(self, g: int) -> Path:
        return self.generation(g) / "metrics.jsonl"

    def adapter(self, g: int, agent: str) -> Path:
        return self.generation(g) / "adapters" / agent

    @property
    def graph(self) -> Path:
        return self.root / "graph.json"

    def interventions(self, g: int) -> Path:
        return self.generation(g) / "interventions.jsonl"

    def distilled(self, g: int, agent: str) -> Path:
        return self.generation(g) / "distilled" / agent

    def distill_plan(self, g: int, agents: Sequence[str]) -> Path:
        """The batched backend's memory-budget groups for one distillation pass over
        ``agents`` (a Slurm task's pass covers a subset: each pass has its own file)."""
        key = hashlib.sha1("\n".join(agents).encode()).hexdigest()[:12]
        return self.generation(g) / "distill_plans" / f"{key}.json"

    def community_adapter(self, g: int) -> Path:
        return self.generation(g) / "community"

    def relative(self, path: Path) -> str:
        """``path`` relative to the run directory, as lineage and records name folders."""
        return str(Path(path).relative_to(self.root))

    def complete(self, g: int) -> Path:
        return self.generation(g) / COMPLETE

    def is_complete(self, g: int) -> bool:
        return self.complete(g).is_file()

    def completed_generations(self) -> list[int]:
        found = []
        for path in sorted(self.root.glob("generation_*")):
            try:
                g = int(path.name.split("_")[1])
            except (IndexError, ValueError):
                continue
            if self.is_complete(g):
                found.append(g)
        return found


def open_run_dir(run_dir: str | Path) -> RunLayout:
    """The layout of an existing run directory; a clear error if ``run_dir`` is not one."""
    layout = RunLayout(Path(run_dir))
    if not layout.root.exists():
        raise RunDirError(f"run directory {run_dir} does not exist; {_ACCEPTED}")
    if not layout.root.is_dir():
        raise RunDirError(f"{run_dir} is a file, not a run directory; {_ACCEPTED}")
    if not layout.config.is_file():
        raise RunDirError(
            f"{run_dir} is not a folkways run directory (no config.yaml); {_ACCEPTED}"
        )
    return layout


def adapter_is_saved(path: Path) -> bool:
    """A finished adapter folder (adapter folders are renamed into place whole)."""
    return (path / "adapter_config.json").is_file() and (
        path / "adapter_model.safetensors"
    ).is_file()
