"""``folkways probe`` re-measures exactly what the run recorded."""

from __future__ import annotations

import json

import pytest

from tests.conftest import model_libraries_imported_by
from tests.float32 import PROB_ATOL_OTHER_BATCH, assert_close
from trainer.probe_command import format_priors, probe_run
from trainer.run_dir import RunLayout


def test_probe_reproduces_the_recorded_priors(reference):
    layout = RunLayout(reference.run_dir)
    generation, after0 = probe_run(reference.run_dir, generation=0)
    assert generation == 0
    recorded = json.loads(layout.probes(0).read_text())
    # Same agents, orders and batch shapes as the run's own probe, in a new model copy:
    # equal up to rounding (PROB_ATOL_OTHER_BATCH covers a different allocation/kernel).
    for agent, prior in after0.items():
        assert_close(prior.probs, recorded["after"][agent]["probs"], PROB_ATOL_OTHER_BATCH, agent)
    _, initial = probe_run(reference.run_dir, generation=-1)
    for agent, prior in initial.items():
        assert_close(prior.probs, recorded["before"][agent]["probs"], PROB_ATOL_OTHER_BATCH, agent)
    last, _ = probe_run(reference.run_dir)
    assert last == 1
    assert "priors after generation 0" in format_priors(0, after0)


def test_probe_with_more_orders_and_bad_requests(reference):
    _, priors = probe_run(reference.run_dir, generation=1, orders=4)
    assert all(
        p.orders == 4 and sum(p.probs.values()) == pytest.approx(1.0) for p in priors.values()
    )
    with pytest.raises(FileNotFoundError, match="generations with adapters: -1, 0, 1"):
        probe_run(reference.run_dir, generation=7)
    with pytest.raises(ValueError, match="accepted: 1..4"):
        probe_run(reference.run_dir, orders=9)


def test_probe_traits_asks_the_big_five_of_a_generations_adapters(reference, capsys):
    import json

    from trainer.cli import main

    assert (
        main(
            [
                "probe",
                str(reference.run_dir),
                "--generation",
                "-1",
                "--traits",
                "reversed",
                "--json",
            ]
        )
        == 0
    )
    initial = json.loads(capsys.readouterr().out)
    assert initial["generation"] == -1
    profiles = list(initial["traits"].values())
    assert len(profiles) == 4
    # initial adapters have a zero delta: every agent answers as the base model does
    for trait, score in profiles[0]["traits"].items():
        assert 1.0 <= score <= 5.0
        assert all(abs(p["traits"][trait] - score) < 1e-5 for p in profiles)
    assert main(["probe", str(reference.run_dir), "--traits", "reversed"]) == 0
    out = capsys.readouterr().out
    assert "Big-Five scores (1-5), after generation 1" in out and "mean |" in out


def test_a_probe_loads_the_model_but_no_training_library(reference):
    """datasets, TRL and DeepSpeed are imported only where TRL trains (~2.3 s a process)."""
    argv = ["probe", str(reference.run_dir), "--generation", "0", "--json"]
    imported = model_libraries_imported_by(argv)
    assert "torch" in imported and "peft" in imported
    assert not {"datasets", "trl", "deepspeed"} & set(imported), imported
