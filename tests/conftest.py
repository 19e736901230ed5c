"""Shared fixtures: the tiny random Llama (seconds per test) and small run configs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The suite runs in pytest-xdist workers (pyproject's addopts: ``-n auto --dist
# loadfile``). Each worker gets an equal share of the cores for torch's threads, and so
# does every process it starts (they inherit the variable): two workers each running
# torch on every core would slow each other several times over. Set before any test
# module imports torch; an explicit OMP_NUM_THREADS is kept.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _WORKERS)))

# At most this many workers for ``-n auto``: a worker running the embedded-model tests
# holds ~2.3 GB (seen on the 2-core machine, where ``auto`` gives 2), and each worker
# builds its own session fixtures.
MAX_TEST_WORKERS = 4


def pytest_xdist_auto_num_workers(config) -> int:
    return max(1, min(len(os.sched_getaffinity(0)), MAX_TEST_WORKERS))


# Whole files go to a worker (``--dist loadfile``: a module's fixtures are built once),
# in collection order (``--no-loadscope-reorder``). Longest first, so that no long file
# starts last while the other workers idle (LPT scheduling). Seconds on a 2-core AMD
# EPYC with two workers, 2026-11-27: 331, 315, 247, 185, 119, 89, 73; the rest < 60.
LONGEST_FILES = (
    "test_slurm.py",
    "test_integration_embedded.py",
    "test_fault_injection.py",
    "test_generation_loop.py",
    "test_donor_society.py",
    "test_evolution_loop.py",
    "test_steps.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: else as collected


@pytest.fixture(scope="session", autouse=True)
def library_scratch_in_basetemp(tmp_path_factory):
    """Temporary folders the libraries make land under pytest's basetemp, not in /tmp.

    W&B stages media and artifacts in ``$TMPDIR/tmp*wandb-media`` and
    ``tmp*wandb-artifacts``, torchrun keeps its logs in ``$TMPDIR/torchelastic_*``; a
    process killed on purpose (the fault-injection and resume tests) never removes
    them, and torchrun never does. Processes the tests start inherit ``TMPDIR``; pytest
    removes old basetemps (it keeps the last three).
    """
    folder = tmp_path_factory.getbasetemp() / "library-scratch"
    folder.mkdir(exist_ok=True)
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = None  # re-read from TMPDIR on next use
    yield folder
    if saved_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved_env
    tempfile.tempdir = saved_tempdir


QUICKSTART = Path(__file__).parents[1] / "configs/naming_game/quickstart.yaml"


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    from societies.model_store import prepare_tiny_random

    return str(prepare_tiny_random())


@pytest.fixture(scope="session")
def embedded_model_path() -> str:
    from societies.model_store import prepare_embedded

    return str(prepare_embedded())


# What every tiny-model run shares; each game adds its own game keys.
TINY_RUN = {
    "model.name_or_path": "tiny-random",
    "run.generations": 2,
    "metrics.window": 2,
    "distill.max_examples": 4,
    "distill.epochs": 1,
    "distill.batch_size": 4,
    "model.batch_size": 8,
}


def as_overrides(output_dir, values: dict, extra: dict) -> list[str]:
    """``key=value`` overrides: the tiny-run defaults, ``values``, then ``extra``."""
    merged = {**TINY_RUN, "run.output_dir": str(output_dir), **values, **extra}
    return [f"{k}={v}" for k, v in merged.items()]


def read_decisions(run_dir, g: int) -> list[dict]:
    """Generation ``g``'s transcript as plain JSON records."""
    import json

    from trainer.run_dir import RunLayout

    text = RunLayout(run_dir).transcripts(g).read_text()
    return [json.loads(line) for line in text.splitlines()]


def run_config(config, overrides: list[str], logs=None):
    """Run (or resume) ``config`` with ``overrides``, quietly."""
    from trainer.generation_loop import run_experiment

    return run_experiment(
        config,
        overrides,
        progress=False,
        log=(logs.append if logs is not None else lambda _: None),
    )


def tiny_overrides(output_dir, **extra) -> list[str]:
    """A run small enough for a unit test on the tiny model."""
    values = {
        "model.name_or_path": "tiny-random",
        "run.output_dir": str(output_dir),
        "run.name": "t",
        "run.generations": 2,
        "population.size": 4,
        "game.num_names": 4,
        "game.rounds": 4,
        "game.pairs_per_round": 2,
        "probe.orders": 2,
        "metrics.window": 2,
        "distill.max_examples": 4,
        "distill.epochs": 1,
        "distill.batch_size": 4,
        # TRL is the reference path in tests, whatever the quickstart's default backend;
        # the batched backend is tested against it and against per-agent PEFT training.
        "distill.backend": "trl",
        "model.batch_size": 8,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def tiny_experiment_config(output_dir, **extra):
    """The quickstart config shrunk by :func:`tiny_overrides`, loaded, not run."""
    from trainer.config import load_experiment

    return load_experiment(QUICKSTART, tiny_overrides(output_dir, **extra))


def save_distinct_adapters(model_path: str, agents, root: Path) -> dict[str, Path]:
    """Adapters for ``agents`` that differ from each other and from the base (a fresh
    adapter's B is 0): rank 4, A seeded per agent, B drawn from N(0, 0.5^2). Saved under
    ``root``; agent -> its folder."""
    import torch

    from societies.population import LoraSpec, PopulationModel

    seeds = {agent: k + 1 for k, agent in enumerate(agents)}
    population = PopulationModel(model_path, list(agents), LoraSpec(r=4), init_seeds=seeds)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in population.model.named_parameters():
            if "lora_B" in name:
                param.copy_(0.5 * torch.randn(param.shape, generator=generator))
    return {agent: population.save_adapter(agent, root / agent) for agent in agents}


def run_tiny(output_dir, logs=None, **extra):
    """Run (or resume) the quickstart config shrunk by :func:`tiny_overrides`."""
    return run_config(QUICKSTART, tiny_overrides(output_dir, **extra), logs)


@pytest.fixture(scope="session")
def reference(tiny_model_path, tmp_path_factory):
    """One complete two-generation tiny run, shared read-only by the tests that inspect it."""
    return run_tiny(tmp_path_factory.mktemp("reference"))


def wandb_offline_environment(home: Path) -> dict[str, str]:
    """Environment for W&B offline and quiet, every file it writes under ``home``."""
    return {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(home),
        "WANDB_CONFIG_DIR": str(home / "config"),
        "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_DATA_DIR": str(home / "data"),
    }


# The libraries a command that loads no model should never import (~8 s together on a
# 2-core AMD EPYC; slower still from a cluster's network file system).
MODEL_LIBRARIES = ("torch", "transformers", "datasets", "deepspeed", "peft", "trl")


def model_libraries_imported_by(argv: list[str]) -> list[str]:
    """Run ``folkways argv`` in a fresh interpreter; the model libraries it imported.
    Fails the test if the command does not exit 0."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys; from trainer.cli import main; "
        f"code = main({argv!r}); "
        f"print(json.dumps([m for m in {MODEL_LIBRARIES!r} if m in sys.modules]), file=sys.stderr); "
        "sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stderr.strip().splitlines()[-1])
