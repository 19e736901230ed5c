"""SFT distillation changes the agent's adapter, never the base, and moves its prior."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from societies.games.naming_game import NamingGame, NamingGameRules
from societies.population import LoraSpec, PopulationModel
from societies.probes import prior_probe, probe_orders
from trainer.distill_sft import SftSettings, distill_adapter, read_outcome

GAME = NamingGame(NamingGameRules(names=tuple("RKTBQ"), memory=3))


def examples_for(name: str, count: int) -> list[dict]:
    """Empty-memory prompts in varied option orders whose answer is always ``name``."""
    import numpy as np

    rows = []
    for i in range(count):
        options = tuple(np.random.default_rng(i).permutation(list(GAME.options)))
        rows.append(
            {
                "prompt": [m.to_dict() for m in GAME.prompt([], options)],
                "completion": [{"role": "assistant", "content": name}],
            }
        )
    return rows


@pytest.fixture(scope="module")
def start_adapter(tiny_model_path, tmp_path_factory):
    population = PopulationModel(
        tiny_model_path, ["a"], LoraSpec(r=8, alpha=16), init_seeds={"a": 1}
    )
    return population.save_adapter("a", tmp_path_factory.mktemp("start") / "a")


def test_sft_changes_adapter_not_base_and_raises_target_prior(
    tiny_model_path, start_adapter, tmp_path, monkeypatch
):
    from transformers import AutoModelForCausalLM

    # Capture the base weights as they are inside the training process after training.
    trained_models = []
    original = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        model = original(*args, **kwargs)
        trained_models.append(model)
        return model

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    out = tmp_path / "trained"
    outcome = distill_adapter(
        agent="a",
        model_path=tiny_model_path,
        start_adapter=start_adapter,
        examples=examples_for("T", 8),
        out_dir=out,
        settings=SftSettings(epochs=3, learning_rate=5e-3, batch_size=4),
        seed=0,
    )
    monkeypatch.undo()
    assert outcome.operation == "sft" and outcome.examples == 8
    assert len(outcome.losses) == 6 and outcome.losses[-1] < outcome.losses[0]
    assert read_outcome(out) == outcome

    # adapter changed: every LoRA B moved away from zero, A matrices moved too
    before, after = (
        load_file(start_adapter / "adapter_model.safetensors"),
        load_file(out / "adapter_model.safetensors"),
    )
    assert before.keys() == after.keys()
    assert all(not torch.equal(before[k], after[k]) for k in before if "lora_B" in k)
    assert all(torch.count_nonzero(before[k]) == 0 for k in before if "lora_B" in k)

    # base unchanged: the trained process's base weights equal the checkpoint on disk
    on_disk = AutoModelForCausalLM.from_pretrained(tiny_model_path).state_dict()
    trained_base = {
        k.replace("base_model.model.", "").replace(".base_layer", ""): v
        for k, v in trained_models[-1].state_dict().items()
        if "lora_" not in k
    }
    assert set(on_disk) <= set(trained_base)
    assert all(torch.equal(on_disk[k], trained_base[k]) for k in on_disk)

    # the empty-memory prior moved toward the distilled name
    orders = probe_orders(GAME.options, 5, __import__("numpy").random.default_rng(0))
    priors = {}
    for label, path in (("before", start_adapter), ("after", out)):
        pop = PopulationModel(tiny_model_path, ["a"], LoraSpec(), adapter_dirs={"a": path})
        priors[label] = prior_probe(pop, GAME, ["a"], orders)["a"].probs["T"]
    assert priors["after"] > priors["before"] + 0.01


def test_no_examples_carries_the_adapter_over(tiny_model_path, start_adapter, tmp_path):
    out = tmp_path / "kept"
    outcome = distill_adapter(
        agent="a",
        model_path=tiny_model_path,
        start_adapter=start_adapter,
        examples=[],
        out_dir=out,
        settings=SftSettings(),
        seed=0,
    )
    assert outcome.operation == "carried_over" and outcome.examples == 0
    a, b = (
        load_file(start_adapter / "adapter_model.safetensors"),
        load_file(out / "adapter_model.safetensors"),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
