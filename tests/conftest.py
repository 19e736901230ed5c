"""Shared fixtures: the tiny random Llama (seconds per test) and small run configs."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    from societies.model_store import prepare_tiny_random

    return str(prepare_tiny_random())


@pytest.fixture(scope="session")
def embedded_model_path() -> str:
    from societies.model_store import prepare_embedded

    return str(prepare_embedded())


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
        "model.batch_size": 8,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]
