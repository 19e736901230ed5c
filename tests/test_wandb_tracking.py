"""W&B offline: a real run directory with the generation metrics and adapter artifacts."""

from __future__ import annotations

import pytest

from tests.conftest import run_tiny
from trainer.wandb_tracking import resolve_mode

OFFLINE = {"run.generations": 1, "tracking.wandb": "offline", "tracking.project": "folkways-test"}


def test_auto_mode_is_offline_without_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("NETRC", raising=False)
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode("auto") == "online"
    assert resolve_mode("disabled") == "disabled"
    with pytest.raises(ValueError, match="accepted: disabled, offline, online, auto"):
        resolve_mode("sometimes")


def test_offline_run_records_metrics_tables_and_adapter_lineage(
    tiny_model_path, tmp_path, monkeypatch
):
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = run_tiny(tmp_path, **OFFLINE)
    runs = sorted((result.run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    # The offline log is a record stream; logged keys, artifact names, types and
    # metadata strings appear literally in it (FACTS.md).
    data = runs[0].read_bytes()
    for needle in (
        b"prior_on_majority_after",
        b"success_rate_last",
        b"agents/agent_00/probe_after/prior_on_majority",
        b"transcript",
        b"lora-adapter",
        b"t-agent_03",
        b"generation-0",
        b"initial_adapters/agent_03",
        b"tiny-random",
        b"folkways-test",
    ):
        assert needle in data, needle
    # re-running a finished run starts no new W&B run
    run_tiny(tmp_path, **OFFLINE)
    assert len(sorted((result.run_dir / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
