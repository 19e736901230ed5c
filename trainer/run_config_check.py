"""A run directory remembers its config; resuming with a different one is refused."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from societies.atomic import atomic_write_text
from trainer.config_loader import ConfigError
from trainer.run_dir import COMPLETE, RunLayout, adapter_is_saved

# Keys that may change between invocations on the same run directory: more generations
# extend a run; output_dir only says where the directory lives (it may be moved); the
# Slurm resources say where the steps run and tracking where their numbers are sent,
# not what they compute. The memory budget bounds how many agents a batched pass
# trains at once, and the error of a pass that does not fit asks for a larger one:
# passes already planned keep their saved groups (trainer.distill_memory.write_plan),
# and a pass planned under another budget differs only by float32 rounding.
RESUMABLE_CHANGES = {"run.generations", "run.output_dir", "distill.memory_budget_gb"}
RESUMABLE_SECTIONS = ("slurm.", "tracking.")


def resumable(key: str) -> bool:
    """Whether the dotted config ``key`` may differ when a run directory is resumed."""
    return key in RESUMABLE_CHANGES or key.startswith(RESUMABLE_SECTIONS)


RESOLVED_HEADER = "# Resolved config, as run. Re-run `folkways run` with this file to resume.\n"


def overrides_to_resume_in_place(config_path: str | Path, overrides: list[str]) -> list[str]:
    """``folkways run RUN_DIR/config.yaml`` resumes RUN_DIR, from any working directory.

    A run's ``config.yaml`` may hold a relative ``run.output_dir`` (``runs``): run from
    another folder it would start a new run there, and a copied or moved run directory
    would resume the original. When ``config_path`` is a run's resolved config (its
    header) and the overrides set neither ``run.output_dir`` nor ``run.name``, the
    output folder is pinned to the one holding it (``run.output_dir`` may change on
    resume); nothing is added when the config already points there.

    Raises:
        ConfigError: the file's ``run.name`` is not its folder's name (a renamed copy).
    """
    path = Path(config_path)
    if path.name != "config.yaml" or not path.is_file():
        return list(overrides)
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.startswith(RESOLVED_HEADER):
        return list(overrides)
    if any(o.split("=", 1)[0].strip() in ("run.output_dir", "run.name") for o in overrides):
        return list(overrides)
    run = (yaml.safe_load(text) or {}).get("run") or {}
    folder = path.resolve().parent
    if run.get("name") != folder.name:
        raise ConfigError(
            f"{path} is the config of run {run.get('name')!r} but lives in a folder named "
            f"{folder.name!r}; rename the folder back to resume it there (a run's name is part "
            "of its config), or pass run.output_dir=... run.name=... to choose the run"
        )
    if (Path(str(run.get("output_dir", "runs"))) / folder.name).resolve() == folder:
        return list(overrides)
    return [*overrides, f"run.output_dir={json.dumps(str(folder.parent))}"]


def check_or_write_config(
    layout: RunLayout, resolved: dict[str, Any], log: Callable[[str], None] = lambda _: None
) -> None:
    """Save ``resolved`` as the run's config, or refuse if the run started with another.

    A run directory whose start failed before any work completed (no transcript line,
    no trained adapter) is not a started run: what it holds depends only on its config
    (the seeded initial adapters, the first probe), so it is cleared and the new
    config written, and the corrected command is never refused because of a typo.

    Raises:
        ConfigError: naming up to five differing keys with both values.
    """
    path = layout.config
    if path.exists():
        previous = yaml.safe_load(path.read_text())
        differences = sorted(key for key in _flat_diff(previous, resolved) if not resumable(key))
        if differences and not has_completed_work(layout):
            log(
                f"{layout.root} holds no completed work (a failed start); "
                f"starting it afresh with the new config ({', '.join(differences[:5])} changed)"
            )
            clear_unstarted(layout)
        elif differences:
            shown = ", ".join(
                f"{k}: {_lookup(previous, k)!r} (run dir) vs {_lookup(resolved, k)!r} (now)"
                for k in differences[:5]
            )
            raise ConfigError(
                f"{layout.root} was started with a different config ({shown}); "
                "re-run with the same config to resume, or set run.name to start a new run"
            )
    text = RESOLVED_HEADER + yaml.safe_dump(resolved, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        atomic_write_text(path, text)


def has_completed_work(layout: RunLayout) -> bool:
    """Whether any interaction or training has completed in the run directory."""
    for generation in layout.root.glob("generation_*"):
        transcripts = generation / "transcripts.jsonl"
        if (generation / COMPLETE).exists() or (
            transcripts.exists() and transcripts.stat().st_size > 0
        ):
            return True
        if any(adapter_is_saved(p) for p in (generation / "adapters").glob("*")):
            return True
    return False


def clear_unstarted(layout: RunLayout) -> None:
    """Remove what a failed start wrote (everything derived from its config alone).

    A W&B folder, if any, is kept: it is a record of the failed attempt, not state.
    """
    for path in [layout.root / "initial_adapters", *layout.root.glob("generation_*")]:
        shutil.rmtree(path, ignore_errors=True)
    for path in (layout.config, layout.lineage, layout.metrics):
        path.unlink(missing_ok=True)


def _flat_diff(a, b, prefix: str = "") -> list[str]:
    keys = set(a or {}) | set(b or {})
    diffs = []
    for key in keys:
        left, right = (a or {}).get(key), (b or {}).get(key)
        path = prefix + key
        if isinstance(left, dict) and isinstance(right, dict):
            diffs += _flat_diff(left, right, path + ".")
        elif left != right:
            diffs.append(path)
    return diffs


def _lookup(data, dotted: str):
    for part in dotted.split("."):
        data = (data or {}).get(part) if isinstance(data, dict) else None
    return data
