"""The LLM online-RL baseline: REINFORCE steps change the adapters, never the base, and
raise the mean payoff of a short seeded run on the tiny model."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from tests.conftest import QUICKSTART, tiny_overrides
from trainer.config import load_experiment
from trainer.llm_rl import LlmRlArgs, run_llm_rl

AGENTS = [f"agent_{i:02d}" for i in range(4)]


def test_online_reinforce_changes_adapters_not_base_and_raises_the_payoff(
    tiny_model_path, tmp_path, monkeypatch
):
    import trainer.llm_rl as llm_rl

    engines = []
    original = llm_rl._reinforce_step

    def spy(population, engine, *rest):
        engines.append(engine)
        return original(population, engine, *rest)

    monkeypatch.setattr(llm_rl, "_reinforce_step", spy)
    overrides = tiny_overrides(
        tmp_path, **{"population.size": 4, "game.num_names": 3, "game.pairs_per_round": 2}
    )
    config = load_experiment(QUICKSTART, overrides)
    result = run_llm_rl(config, LlmRlArgs(rounds=60), tmp_path / "rl")
    assert result.updates == 60
    assert result.mean_payoff_last > result.mean_payoff_first + 30, result
    assert result.converged_round is not None and result.winner is not None

    rounds = [json.loads(x) for x in (tmp_path / "rl/rounds.jsonl").read_text().splitlines()]
    decisions = [
        json.loads(x) for x in (tmp_path / "rl/transcripts.jsonl").read_text().splitlines()
    ]
    assert len(rounds) == 60 and len(decisions) == 60 * 4
    # no in-context memory: the prompt shows no past interaction, in any round
    assert all("Round" not in d["messages"][-1]["content"] for d in decisions[-4:])
    for agent in AGENTS:
        before = load_file(tmp_path / f"rl/initial_adapters/{agent}/adapter_model.safetensors")
        after = load_file(tmp_path / f"rl/adapters/{agent}/adapter_model.safetensors")
        assert any(not torch.equal(before[k], after[k]) for k in before)
    # the base weights inside the engine are the checkpoint's
    from transformers import AutoModelForCausalLM

    on_disk = AutoModelForCausalLM.from_pretrained(tiny_model_path).state_dict()
    inside = {
        k.replace(".base.", "."): v  # a stacked LoRA layer keeps its base Linear as .base
        for k, v in engines[-1].model.state_dict().items()
        if "lora" not in k.lower()
    }
    matched = [k for k in on_disk if k in inside]
    assert len(matched) == len(on_disk)
    assert all(torch.equal(on_disk[k], inside[k]) for k in matched)
