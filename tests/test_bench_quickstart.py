"""The quickstart benchmark (scripts/benchmarks/bench_quickstart.py) on the tiny model.

It times ``folkways run`` in a subprocess, which re-executes itself under tcmalloc where
installed (trainer/malloc.py): the allocator it reports is the command's, read from the
run's own record, not the benchmark process's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import tiny_overrides
from trainer.malloc import ENV, active_malloc, find_tcmalloc

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts" / "benchmarks"))

import bench_quickstart  # noqa: E402

# The benchmark chooses the output directory and the run keeps the quickstart's name.
OVERRIDES = [
    o
    for o in tiny_overrides("unused", **{"run.generations": 1})
    if not o.startswith(("run.output_dir=", "run.name=", "distill.backend="))
]


@pytest.mark.parametrize(
    "mode",
    [
        "system",
        pytest.param(
            "tcmalloc",
            marks=pytest.mark.skipif(
                find_tcmalloc() is None,
                reason="no tcmalloc on this machine (apt install libtcmalloc-minimal4)",
            ),
        ),
    ],
)
def test_the_quickstart_benchmark_reports_the_commands_allocator(
    mode, tiny_model_path, monkeypatch
):
    monkeypatch.setenv(ENV, mode)
    ran = bench_quickstart.run(OVERRIDES)
    assert ran["malloc"] == mode
    assert active_malloc() == "system"  # pytest itself runs under glibc's malloc
    assert ran["backend"] == "batched"  # the quickstart's own default, not overridden
    assert ran["table"][0].startswith("run directory:")
    assert ran["table"][3].startswith("0 ")  # generation 0's row
    assert ran["seconds"] > 0
