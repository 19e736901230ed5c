"""Evolution, community adapters and DPO in the generation loop, on the tiny model:
who survives, what children are made of, what lineage says, and that a resumed
generation rewrites the same adapters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import read_decisions, run_tiny
from trainer.evolve import crossover, read_adapter_state
from trainer.lineage import read_lineage
from trainer.run_dir import RunLayout
from trainer.selection import survivor_count

AGENTS = [f"agent_{i:02d}" for i in range(6)]
EVOLVING = {
    "run.generations": 3,
    "population.size": 6,
    "game.pairs_per_round": 3,
    "evolution.survive": 0.5,
    "evolution.crossover": "true",
    "evolution.mutation_scale": 0.01,
    "evolution.immigrants": 0.2,  # round(0.2 * 6) = 1 immigrant a generation
    # Evolution acts on saved adapters, whichever trainer wrote them; batched is what
    # the published configs use, and on the tiny model TRL's ~3 s set-up per agent
    # (2-core AMD EPYC) was two thirds of this module's time.
    "distill.backend": "batched",
}


@pytest.fixture(scope="module")
def evolved(tiny_model_path, tmp_path_factory):
    return run_tiny(tmp_path_factory.mktemp("evolved"), **EVOLVING).run_dir


def weights(folder):
    return load_file(str(folder / "adapter_model.safetensors"))


def fitness(run_dir, g) -> dict[str, float]:
    """Mean payoff per agent in generation g, from the transcript."""
    paid: dict[str, list[float]] = {a: [] for a in AGENTS}
    for d in read_decisions(run_dir, g):
        paid[d["agent"]].append(d["payoff"])
    return {a: float(np.mean(p)) if p else 0.0 for a, p in paid.items()}


def final_entries(layout, g):
    return {
        e.agent: e
        for e in read_lineage(layout)
        if e.generation == g and e.adapter == layout.relative(layout.adapter(g, e.agent))
    }


def test_selection_keeps_the_fittest_and_lineage_names_every_parent(evolved):
    layout = RunLayout(evolved)
    paths = {e.adapter for e in read_lineage(layout)}
    for g in range(3):
        final = final_entries(layout, g)
        assert sorted(final) == AGENTS
        ops = {a: e.operations for a, e in final.items()}
        survivors = [a for a, o in ops.items() if o == ["survive"]]
        immigrants = [a for a, o in ops.items() if o == ["immigrant"]]
        children = [a for a, o in ops.items() if o[:2] == ["inherit", "crossover"]]
        assert len(survivors) == survivor_count(6, 0.5) == 3
        assert len(immigrants) == 1 and len(children) == 2
        fit = fitness(evolved, g)
        assert min(fit[a] for a in survivors) >= max(fit[a] for a in children + immigrants)
        assert all(fit[a] <= min(fit[c] for c in children) for a in immigrants)
        for a in survivors:  # kept as distilled, bit for bit
            assert final[a].parents == [layout.relative(layout.distilled(g, a))]
            assert (layout.adapter(g, a) / "adapter_model.safetensors").read_bytes() == (
                layout.distilled(g, a) / "adapter_model.safetensors"
            ).read_bytes()
        for a in children:
            assert final[a].operations[-1] == "mutate"
            parents = final[a].parents
            assert len(parents) == 2 and parents[0] != parents[1]
            assert {p.rsplit("/", 1)[1] for p in parents} <= set(survivors)
        for e in final.values():
            assert all(p in paths for p in e.parents)  # every parent has its own entry
        # Every distilled adapter descends from the seat's adapter of the last generation.
        for a in AGENTS:
            distilled = next(
                e
                for e in read_lineage(layout)
                if e.adapter == layout.relative(layout.distilled(g, a))
            )
            start = layout.initial_adapter(a) if g == 0 else layout.adapter(g - 1, a)
            assert distilled.parents == [layout.relative(start)]
            assert distilled.operations in (["sft"], ["carried_over"])


def test_children_are_the_cat_crossover_of_their_parents_plus_seeded_noise(evolved):
    layout = RunLayout(evolved)
    g = 1
    for a, e in final_entries(layout, g).items():
        if "crossover" not in e.operations or "truncate" in e.operations:
            continue
        (sa, ca), (sb, cb) = (read_adapter_state(layout.root / p) for p in e.parents)
        assert ca["lora_alpha"] / ca["r"] == cb["lora_alpha"] / cb["r"]
        child = crossover(sa, sb, 0.5, 0.5)
        got = weights(layout.adapter(g, a))
        noise = torch.cat([(got[k] - child[k]).flatten() for k in child])
        # N(0, 0.01^2) noise over every element: mean ~0, std 0.01 (thousands of draws).
        assert abs(float(noise.mean())) < 1e-3
        assert float(noise.std()) == pytest.approx(0.01, rel=0.05)
        assert e.details["mutation_seed"] > 0 and e.details["crossover_weights"] == [0.5, 0.5]


def test_immigrants_are_fresh_adapters_with_a_zero_delta(evolved):
    layout = RunLayout(evolved)
    for g in range(3):
        for a, e in final_entries(layout, g).items():
            if e.operations == ["immigrant"]:
                w = weights(layout.adapter(g, a))
                assert all(torch.count_nonzero(v) == 0 for k, v in w.items() if "lora_B" in k)
                assert any(torch.count_nonzero(v) > 0 for k, v in w.items() if "lora_A" in k)
                assert e.parents == [] and e.details["init_seed"] > 0


def test_weight_metrics_are_in_metrics_jsonl(evolved):
    records = [json.loads(x) for x in (evolved / "metrics.jsonl").read_text().splitlines()]
    weights_ = [r for r in records if r["phase"] == "weights"]
    names = {r["name"] for r in weights_}
    assert names == {
        "adapter_delta_norm",
        "adapter_distance_from_gen0",
        "adapter_delta_norm_mean",
        "adapter_pairwise_cosine",
    }
    gen0 = [
        r for r in weights_ if r["generation"] == 0 and r["name"] == "adapter_distance_from_gen0"
    ]
    assert len(gen0) == 6 and all(r["value"] == 0.0 for r in gen0)
    later = [r for r in weights_ if r["generation"] == 2 and r["name"] == "adapter_delta_norm"]
    assert len(later) == 6 and all(r["value"] >= 0 for r in later)
    cos = [r["value"] for r in weights_ if r["name"] == "adapter_pairwise_cosine"]
    assert len(cos) == 3 and all(-1 <= c <= 1 for c in cos)
    assert {r["agent"] for r in records if r["phase"] == "evolution"} == set(AGENTS)


def test_a_resumed_generation_rewrites_the_same_evolved_adapters(evolved, tmp_path):
    """Drop the last generation's COMPLETE, an evolved child and an immigrant; the re-run
    recomputes the plan and writes the same bytes."""
    import shutil

    copy = tmp_path / "t"
    shutil.copytree(evolved, copy)
    layout = RunLayout(copy)
    final = final_entries(layout, 2)
    dropped = [
        next(a for a, e in final.items() if "crossover" in e.operations),
        next(a for a, e in final.items() if e.operations == ["immigrant"]),
    ]
    expected = {a: weights(layout.adapter(2, a)) for a in dropped}
    layout.complete(2).unlink()
    for a in dropped:
        shutil.rmtree(layout.adapter(2, a))
    logs = []
    run_tiny(tmp_path, logs=logs, **EVOLVING)
    assert layout.is_complete(2)
    for a in dropped:
        got = weights(layout.adapter(2, a))
        assert got.keys() == expected[a].keys()
        assert all(torch.equal(got[k], expected[a][k]) for k in got)
    assert not any(
        "distillation" in line and "generation 2" in line and "training" in line for line in logs
    )


def test_a_community_run_shares_one_trained_adapter(tiny_model_path, tmp_path):
    run_dir = run_tiny(tmp_path, **{"distill.scope": "community"}).run_dir
    layout = RunLayout(run_dir)
    entries = {e.adapter: e for e in read_lineage(layout)}
    trained = [g for g in range(2) if entries[f"generation_{g:03d}/community"].examples]
    assert trained  # the seeded run has successes to learn from
    for g in range(2):
        shared = weights(layout.community_adapter(g))
        moved = any(torch.count_nonzero(v) for k, v in shared.items() if "lora_B" in k)
        assert moved == (g >= trained[0])
        for a in [f"agent_{i:02d}" for i in range(4)]:
            w = weights(layout.adapter(g, a))
            assert all(torch.equal(w[k], shared[k]) for k in shared)
    community = entries["generation_001/community"]
    assert community.parents == ["generation_000/community"]
    assert entries["generation_000/community"].parents == ["initial_adapters/agent_00"]
    community = entries[f"generation_{trained[0]:03d}/community"]
    assert community.operations == ["sft"]
    assert community.examples > 0 and len(community.data_sha256) == 64
    seat = entries["generation_001/adapters/agent_02"]
    assert seat.operations == ["community"] and seat.parents == ["generation_001/community"]
    cos = {
        record["generation"]: record["value"]
        for record in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        if record["name"] == "adapter_pairwise_cosine"
    }
    # One adapter: fully homogeneous once it has moved; before, a zero delta has no
    # direction and the generation no cosine record.
    assert sorted(cos) == list(range(trained[0], 2))
    assert list(cos.values()) == pytest.approx([1.0] * (2 - trained[0]), abs=1e-9)


def test_a_dpo_run_trains_on_pairs_and_records_its_margins(tiny_model_path, tmp_path):
    run_dir = run_tiny(
        tmp_path,
        **{"distill.method": "dpo", "distill.selection": "own_successes", "run.generations": 1},
    ).run_dir
    layout = RunLayout(run_dir)
    entries = [e for e in read_lineage(layout) if e.generation == 0]
    trained = [e for e in entries if e.operations == ["dpo"]]
    assert trained, [e.operations for e in entries]
    for e in trained:
        assert e.examples > 0 and "rewards_margins_last" in e.training
        assert not (layout.adapter(0, e.agent) / "ref").exists()
    # Each agent learns from pairs on its own prompts: mismatches it took part in.
    mismatched = {
        d["agent"] for d in read_decisions(run_dir, 0) if d["action"] != d["partner_action"]
    }
    assert {e.agent for e in trained} == mismatched


def test_a_released_crossover_child_names_both_parents_in_its_card(evolved, tmp_path):
    from trainer.release import release_adapter

    layout = RunLayout(evolved)
    child, entry = next(
        (a, e) for a, e in final_entries(layout, 1).items() if "crossover" in e.operations
    )
    release = release_adapter(evolved, child, tmp_path / "release", generation=1)
    card = (tmp_path / "release" / "README.md").read_text()
    assert all(f"`{p}`" in card for p in entry.parents)
    assert "inherit+crossover" in card and "naming game" in card
    # the chain walks first parents back to an initial adapter
    assert (
        release.lineage[0].operations == ["init"] and release.lineage[-1].adapter == entry.adapter
    )
