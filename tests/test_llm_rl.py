"""The LLM online-RL baseline: REINFORCE steps change the adapters, never the base, and
raise the mean payoff of a short seeded run on the tiny model, written as an ordinary
run directory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from societies.transcripts import read_decisions
from tests.conftest import QUICKSTART, tiny_overrides
from trainer.config import load_experiment
from trainer.llm_rl import LlmRlArgs, run_llm_rl
from trainer.report import make_report
from trainer.run_dir import RunLayout
from trainer.run_outcome import RunOutcome, run_outcome
from trainer.tracking import read_metrics

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

    # an ordinary run directory: the comparison's reader finds the result's numbers
    layout = RunLayout(tmp_path / "rl")
    assert run_outcome(layout.root) == RunOutcome(
        60, result.converged_round, result.winner, result.final_success
    )
    assert load_experiment(layout.config).game.memory == 0  # as played
    decisions = read_decisions(layout.transcripts(0))
    assert len(decisions) == 60 * 4
    # no in-context memory: the prompt shows no past interaction, in any round
    assert all("Round" not in d.messages[-1].content for d in decisions[-4:])
    summary = make_report(layout.root).summaries[0]
    payoff = [m.value for m in read_metrics(layout.metrics) if m.name == "mean_payoff"]
    assert np.mean(payoff[-15:]) == pytest.approx(result.mean_payoff_last)
    # the probe after the last update leans to the winner more than the initial one
    assert summary.majority_option == result.winner
    assert summary.prior_on_majority_after > summary.prior_on_majority_before + 0.2, summary
    for agent in AGENTS:
        before = load_file(layout.initial_adapter(agent) / "adapter_model.safetensors")
        after = load_file(layout.adapter(0, agent) / "adapter_model.safetensors")
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


def test_on_a_ring_llm_rl_pairs_only_neighbours(tiny_model_path, tmp_path):
    """network.topology=ring_lattice, k=2, 6 agents: two rounds of 3 pairs, every one a
    ring edge; the run directory records the ring (config.yaml) and the graph played
    (graph.json, the society's graph of the seed)."""
    ring = {frozenset((f"agent_{i:02d}", f"agent_{(i + 1) % 6:02d}")) for i in range(6)}
    overrides = tiny_overrides(
        tmp_path,
        **{
            "population.size": 6,
            "game.pairs_per_round": 3,
            "network.topology": "ring_lattice",
            "network.k": 2,
        },
    )
    config = load_experiment(QUICKSTART, overrides)
    run_llm_rl(config, LlmRlArgs(rounds=2), tmp_path / "rl")
    layout = RunLayout(tmp_path / "rl")
    decisions = read_decisions(layout.transcripts(0))
    assert len(decisions) == 2 * 6
    assert {frozenset((d.agent, d.partner)) for d in decisions} <= ring
    assert load_experiment(layout.config).network == config.network
    links = json.loads(layout.graph.read_text())["links"]
    assert {frozenset((e["source"], e["target"])) for e in links} == ring


def test_llm_rl_refuses_more_pairs_than_the_graph_holds_before_writing(tmp_path):
    """A star on 4 agents holds one disjoint pair a round, not game.pairs_per_round=2."""
    star = tmp_path / "star.txt"
    star.write_text("0 1\n0 2\n0 3\n")
    overrides = tiny_overrides(
        tmp_path, **{"network.topology": "edge_list", "network.edge_list": str(star)}
    )
    config = load_experiment(QUICKSTART, overrides)
    with pytest.raises(ValueError, match="game.pairs_per_round=2: the edge_list graph's largest"):
        run_llm_rl(config, LlmRlArgs(rounds=1), tmp_path / "rl")
    # called directly, it refuses interventions as `folkways baseline llm_rl` does
    committed = QUICKSTART.parent / "committed_minority.yaml"
    config = load_experiment(committed, [f"run.output_dir={tmp_path}"])
    with pytest.raises(ValueError, match=r"interventions=\['committed_minority'\] are not"):
        run_llm_rl(config, LlmRlArgs(rounds=1), tmp_path / "rl")
    assert not (tmp_path / "rl").exists()


def test_a_rerun_in_place_writes_the_same_records(tiny_model_path, tmp_path):
    """``baseline llm_rl`` re-run into its own --out (how a killed run is finished)
    replays the seed: the same decisions and the same trained adapters, byte for byte."""
    overrides = tiny_overrides(tmp_path, **{"population.size": 4, "game.pairs_per_round": 2})
    config = load_experiment(QUICKSTART, overrides)
    layout = RunLayout(tmp_path / "rl")

    def played() -> tuple[bytes, dict[str, bytes]]:
        run_llm_rl(config, LlmRlArgs(rounds=3), layout.root)
        adapters = {
            a: (layout.adapter(0, a) / "adapter_model.safetensors").read_bytes() for a in AGENTS
        }
        return layout.transcripts(0).read_bytes(), adapters

    first = played()
    (layout.root / "generation_000" / "stray.txt").write_text("from a killed run")
    assert played() == first
    assert not (layout.root / "generation_000" / "stray.txt").exists()
