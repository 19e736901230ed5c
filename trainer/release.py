"""``folkways release``: one evolved adapter as a self-contained PEFT folder.

A release is what ``PeftModel.from_pretrained(base, folder)`` loads with no folkways
installed (DESIGN.md, decision 10): the adapter weights, its ``adapter_config.json``
with ``base_model_name_or_path`` rewritten from the local cache path to the base
model's hub id, and a model card (``README.md``) naming the base model, the adapter's
lineage back to its initial weights, and its measured prior.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from societies.atomic import atomic_directory
from societies.lora_folders import check_adapter_folder
from societies.metrics import entropy_bits
from trainer.distill_sft import TRAINING_RECORD
from trainer.generation_loop import Experiment
from trainer.lineage import LineageEntry, read_lineage
from trainer.run_dir import adapter_is_saved
from trainer.run_records import read_probes, read_summary

# What a release folder holds; an existing --out holding only these is a previous release.
RELEASE_FILES = frozenset(
    {
        "adapter_model.safetensors",
        "adapter_config.json",
        TRAINING_RECORD,
        "lineage.json",
        "README.md",
    }
)


@dataclass(frozen=True)
class Release:
    path: Path
    agent: str
    generation: int
    base_model: str
    lineage: list[LineageEntry]

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "agent": self.agent,
            "generation": self.generation,
            "base_model": self.base_model,
            "lineage": [e.to_dict() for e in self.lineage],
        }


def release_adapter(
    run_dir: Path, agent: str, out_dir: Path, generation: int | None = None
) -> Release:
    """Write ``agent``'s adapter after ``generation`` (default: the last complete) to ``out_dir``.

    Everything is read and checked before ``out_dir`` is written; an existing ``out_dir``
    is replaced only if it is empty or a previous release.
    """
    experiment = Experiment.from_run_dir(run_dir, progress=False)
    layout = experiment.layout
    if agent not in experiment.agents:
        raise FileNotFoundError(f"no agent {agent!r} in {run_dir}; agents: {experiment.agents}")
    completed = layout.completed_generations()
    if not completed:
        raise FileNotFoundError(f"{run_dir} has no completed generation to release")
    generation = completed[-1] if generation is None else generation
    if generation not in completed:
        raise FileNotFoundError(
            f"generation {generation} of {run_dir} is not complete; complete generations: {completed}"
        )
    source = layout.adapter(generation, agent)
    if not adapter_is_saved(source):
        raise FileNotFoundError(
            f"generation {generation} of {run_dir} is marked complete but has no adapter for "
            f"{agent!r} ({source}); the run directory is damaged: restore the folder from a copy"
        )
    check_adapter_folder(source)
    _check_out_dir(Path(out_dir))

    config = experiment.config
    chain = _lineage_chain(read_lineage(layout), layout.relative(source))
    summary = read_summary(layout, generation)
    prior = read_probes(layout, generation)["after"][agent]
    base_model = experiment.base_model_id

    with atomic_directory(Path(out_dir)) as tmp:
        shutil.copy2(source / "adapter_model.safetensors", tmp / "adapter_model.safetensors")
        adapter_config = json.loads((source / "adapter_config.json").read_text())
        adapter_config["base_model_name_or_path"] = base_model
        (tmp / "adapter_config.json").write_text(
            json.dumps(adapter_config, indent=2, sort_keys=True)
        )
        if (source / TRAINING_RECORD).exists():
            shutil.copy2(source / TRAINING_RECORD, tmp / TRAINING_RECORD)
        (tmp / "lineage.json").write_text(json.dumps([e.to_dict() for e in chain], indent=2))
        (tmp / "README.md").write_text(
            _model_card(agent, generation, base_model, config.run.name, chain, summary, prior)
        )
    return Release(Path(out_dir), agent, generation, base_model, chain)


def _check_out_dir(out_dir: Path) -> None:
    """Refuse an ``--out`` that is a file, under a file, or a folder holding other work."""
    accepted = "expected a new folder, or a previous release (which is replaced)"
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ValueError(f"--out {out_dir} is a file; {accepted}")
        others = sorted(p.name for p in out_dir.iterdir() if p.name not in RELEASE_FILES)
        if others:
            raise ValueError(
                f"--out {out_dir} is not empty and not a folkways release (it holds "
                f"{', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); {accepted}"
            )
        return
    parent = out_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {out_dir} is inside {parent}, which is a file; {accepted}")


def _lineage_chain(entries: list[LineageEntry], adapter: str) -> list[LineageEntry]:
    """The adapter's ancestry, oldest first: initial adapter, then every step that made
    it (distillation, then evolution), following each entry's first parent; a
    crossover's second parent is named in its row of the card."""
    by_path = {e.adapter: e for e in entries}
    current = by_path.get(adapter)
    chain = []
    while current is not None:
        chain.append(current)
        current = by_path.get(current.parents[0]) if current.parents else None
    return chain[::-1]


def _model_card(agent, generation, base_model, run_name, chain, summary, prior) -> str:
    probs = sorted(prior.probs.items(), key=lambda kv: -kv[1])
    steps = "\n".join(
        f"| {e.generation if e.generation >= 0 else 'initial'} | `{e.adapter}` | {e.operation} "
        f"| {', '.join(f'`{p}`' for p in e.parents)} | {e.examples} |"
        for e in chain
    )
    top = "\n".join(f"| {name} | {p:.3f} |" for name, p in probs[:5])
    return f"""---
base_model: {base_model}
library_name: peft
tags: [folkways, lora, {summary.game.replace("_", "-")}, multi-agent]
---

# folkways agent `{agent}` after generation {generation} of run `{run_name}`

A LoRA adapter for `{base_model}`, evolved by folkways: the agent played the
{summary.game.replace("_", " ")} with its society in context, and after each generation
what the society did was distilled into its weights (the lineage below names every
step).

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM

base = AutoModelForCausalLM.from_pretrained("{base_model}")
model = PeftModel.from_pretrained(base, "<this folder>")
```

## Lineage

| generation | adapter (in the run directory) | operations | parents | training rows |
|---|---|---|---|---|
{steps}

## Measured prior (empty memory, averaged over {prior.orders} option orders)

| name | probability |
|---|---|
{top}

Entropy {entropy_bits(prior.probs):.2f} bits; the options held {prior.option_mass:.3g} of the
next-token mass. In generation {generation} of the {summary.game.replace("_", " ")} the
society's majority option was {summary.majority_option} ({summary.majority_share:.0%} of choices
in the last {summary.window} rounds){_game_numbers(summary)}.
"""


def _game_numbers(summary) -> str:
    """The game's own headline numbers, for the card."""
    shown = [
        f"{key.replace('_', ' ')} {value:.3g}"
        for key, value in summary.game_metrics.items()
        if isinstance(value, float)
    ]
    return "; " + ", ".join(shown) if shown else ""
