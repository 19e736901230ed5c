"""``folkways release``: a PEFT folder that loads without folkways, with lineage and prior."""

from __future__ import annotations

import json

import pytest

from societies.probes import prior_probe
from tests.float32 import PROB_ATOL_OTHER_BATCH, assert_close
from trainer.generation_loop import Experiment
from trainer.release import release_adapter
from trainer.run_dir import RunLayout


def test_release_is_a_loadable_peft_folder_with_card(reference, tmp_path, tiny_model_path):
    layout = RunLayout(reference.run_dir)
    out = tmp_path / "agent_01"
    release = release_adapter(reference.run_dir, "agent_01", out)
    assert release.generation == 1 and release.base_model == "tiny-random"
    assert (out / "adapter_model.safetensors").read_bytes() == (
        layout.adapter(1, "agent_01") / "adapter_model.safetensors"
    ).read_bytes()
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny-random"  # not the local cache path
    assert [(e.generation, e.operation) for e in release.lineage][0] == (-1, "init")
    assert [e.generation for e in release.lineage] == [-1, 0, 1]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nbase_model: tiny-random\nlibrary_name: peft")
    assert "`generation_000/adapters/agent_01`" in card and "`initial_adapters/agent_01`" in card

    # plain PEFT loads it, and it has exactly the prior the run recorded
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_path), str(out))
    experiment = Experiment.from_run_dir(reference.run_dir, progress=False)
    population = experiment.population(
        {a: (out if a == "agent_01" else p) for a, p in experiment.start_adapters(2).items()}
    )
    probed = prior_probe(population, experiment.game, ["agent_01"], experiment.probe_orders)[
        "agent_01"
    ]
    recorded = json.loads(layout.probes(1).read_text())["after"]["agent_01"]["probs"]
    # Probed here in a batch of one agent, recorded in a batch of all: other GEMM shapes.
    assert_close(probed.probs, recorded, PROB_ATOL_OTHER_BATCH, "re-probed prior of the release")


def test_release_errors_name_what_exists(reference, tmp_path):
    with pytest.raises(
        FileNotFoundError, match="agents: \\['agent_00', 'agent_01', 'agent_02', 'agent_03'\\]"
    ):
        release_adapter(reference.run_dir, "agent_99", tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="complete generations: \\[0, 1\\]"):
        release_adapter(reference.run_dir, "agent_00", tmp_path / "x", generation=5)
    assert not (tmp_path / "x").exists()
