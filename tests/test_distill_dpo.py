"""DPO distillation: the chosen-over-rejected log-ratio rises, only the trained adapter
changes (the base and the reference adapter do not), and one adapter is saved."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from societies.games.naming_game import NamingGame, NamingGameRules
from societies.population import LoraSpec, PopulationModel
from trainer.distill_sft import SftSettings, distill_adapter, read_outcome
from trainer.evolve import mutate, read_adapter_state, write_adapter_state

GAME = NamingGame(NamingGameRules(names=tuple("RKTBQ"), memory=3))


def pairs(chosen: str, rejected: str, count: int) -> list[dict]:
    """Empty-memory prompts in varied option orders preferring ``chosen`` to ``rejected``."""
    rows = []
    for i in range(count):
        options = tuple(np.random.default_rng(i).permutation(list(GAME.options)))
        rows.append(
            {
                "prompt": [m.to_dict() for m in GAME.prompt([], options)],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        )
    return rows


@pytest.fixture(scope="module")
def start_adapter(tiny_model_path, tmp_path_factory):
    """A start adapter whose delta is not zero (noisy B), so that a reference equal to
    the start adapter differs from the bare base model."""
    population = PopulationModel(
        tiny_model_path, ["a"], LoraSpec(r=8, alpha=16), init_seeds={"a": 1}
    )
    fresh = population.save_adapter("a", tmp_path_factory.mktemp("fresh") / "a")
    state, config = read_adapter_state(fresh)
    return write_adapter_state(
        tmp_path_factory.mktemp("start") / "a", mutate(state, 0.05, seed=3), config
    )


def log_ratio(model_path, adapter, rows) -> float:
    """Mean over rows of log p(chosen | prompt) - log p(rejected | prompt) under ``adapter``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.distill_batched import sft_example_from_chat

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float64)
    model = PeftModel.from_pretrained(base, str(adapter)).eval()

    def logp(row, key) -> float:
        ex = sft_example_from_chat(tokenizer, row["prompt"], row[key])
        ids = torch.tensor([list(ex.prompt_ids) + list(ex.completion_ids)])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
        targets = ids[0, 1:]
        start = len(ex.prompt_ids) - 1
        return float(logits[start:].gather(1, targets[start:, None]).sum())

    return float(np.mean([logp(r, "chosen") - logp(r, "rejected") for r in rows]))


def test_dpo_raises_the_chosen_log_ratio_and_keeps_base_and_reference(
    tiny_model_path, start_adapter, tmp_path, monkeypatch
):
    import trainer.distill_dpo as distill_dpo

    rows = pairs("T", "R", 8)
    captured = []
    original_save = distill_dpo.save_trained

    def capture(model, out_dir):
        captured.append(model)
        original_save(model, out_dir)

    monkeypatch.setattr(distill_dpo, "save_trained", capture)
    start_bytes = (start_adapter / "adapter_model.safetensors").read_bytes()
    out = tmp_path / "trained"
    outcome = distill_adapter(
        agent="a",
        model_path=tiny_model_path,
        start_adapter=start_adapter,
        examples=rows,
        out_dir=out,
        settings=SftSettings(epochs=3, learning_rate=5e-3, batch_size=4, method="dpo"),
        seed=0,
    )
    assert outcome.operation == "dpo" and outcome.examples == 8
    assert len(outcome.losses) == 6 and read_outcome(out) == outcome
    assert outcome.metrics["rewards_margins_last"] > outcome.metrics["rewards_margins_first"]

    # The log-ratio on the training pairs rose (measured afresh, in float64).
    before = log_ratio(tiny_model_path, start_adapter, rows)
    after = log_ratio(tiny_model_path, out, rows)
    assert after > before + 0.1, (before, after)

    # One adapter saved, with the start adapter's keys; no "ref" copy beside it.
    assert not [p for p in out.iterdir() if p.is_dir()]  # PEFT writes others to out/<name>/
    assert [p.name for p in out.glob("*.safetensors")] == ["adapter_model.safetensors"]
    start, trained = (
        load_file(start_adapter / "adapter_model.safetensors"),
        load_file(out / "adapter_model.safetensors"),
    )
    assert trained.keys() == start.keys()
    assert any(not torch.equal(start[k], trained[k]) for k in start)
    assert (start_adapter / "adapter_model.safetensors").read_bytes() == start_bytes

    # Inside the trainer: the base weights equal the checkpoint and the frozen reference
    # still equals the start adapter.
    from transformers import AutoModelForCausalLM

    model = captured[-1]
    state = model.state_dict()
    on_disk = AutoModelForCausalLM.from_pretrained(tiny_model_path).state_dict()
    base = {
        k.replace("base_model.model.", "").replace(".base_layer", ""): v
        for k, v in state.items()
        if "lora_" not in k
    }
    assert all(torch.equal(on_disk[k], base[k]) for k in on_disk)
    ref = {k: v for k, v in state.items() if ".ref." in k}
    assert len(ref) == len(start)
    for key, value in start.items():
        ref_key = key.replace("base_model.model.", "base_model.model.").replace(
            ".weight", ".ref.weight"
        )
        assert torch.equal(state[ref_key], value), key
    assert all(not p.requires_grad for k, p in model.named_parameters() if ".ref." in k)
