"""On the real embedded model: distilling a community's convention raises the prior on it."""

from __future__ import annotations

import numpy as np
import pytest

from societies.games.naming_game import Interaction, NamingGame, NamingGameRules
from societies.population import LoraSpec, PopulationModel
from societies.probes import prior_probe, probe_orders
from societies.records import Decision
from trainer.config import load_experiment
from trainer.datasets import Selection, select_turns, sft_examples
from trainer.distill_sft import distill_adapter, settings_from_config

pytestmark = pytest.mark.integration

AGENTS = ["agent_00", "agent_01"]


def dominated_transcript(game: NamingGame, name: str, rounds: int) -> list[Decision]:
    """Two agents who matched on ``name`` round after round, memory growing as it would."""
    rng = np.random.default_rng(0)
    memory: list[Interaction] = []
    decisions = []
    for r in range(rounds):
        for agent, partner in (AGENTS, AGENTS[::-1]):
            options = game.shuffled_options(rng)
            decisions.append(
                Decision(
                    run="integration",
                    generation=0,
                    round=r,
                    pair=0,
                    agent=agent,
                    partner=partner,
                    game=game.name,
                    messages=game.prompt(memory, options),
                    options=options,
                    option_probs=tuple(1 / len(options) for _ in options),
                    option_mass=0.1,
                    action=name,
                    partner_action=name,
                    payoff=100.0,
                )
            )
        memory.append(Interaction(name, name, 100.0))
    return decisions


def test_distilled_convention_raises_the_prior_on_it(embedded_model_path, tmp_path):
    config = load_experiment("configs/naming_game/quickstart.yaml")
    game = NamingGame(NamingGameRules(names=tuple("RKTBQMDWLP"), memory=config.game.memory))
    lora = LoraSpec(r=config.lora.r, alpha=config.lora.alpha)
    orders = probe_orders(game.options, 5, np.random.default_rng(0))

    start = PopulationModel(
        embedded_model_path, AGENTS, lora, init_seeds={a: i for i, a in enumerate(AGENTS)}
    )
    before = prior_probe(start, game, AGENTS, orders)
    for agent in AGENTS:
        start.save_adapter(agent, tmp_path / "start" / agent)
    # a name the model does not already favour: the median of the base prior
    ranked = sorted(game.options, key=lambda n: before["agent_00"].probs[n])
    target = ranked[len(ranked) // 2]
    del start

    decisions = dominated_transcript(game, target, rounds=config.distill.max_examples // 2)
    for agent in AGENTS:
        examples = sft_examples(
            select_turns([d for d in decisions if d.success], agent, Selection.COMMUNITY_SUCCESSES),
            config.distill.max_examples,
        )
        assert len(examples) == config.distill.max_examples
        outcome = distill_adapter(
            agent=agent,
            model_path=embedded_model_path,
            start_adapter=tmp_path / "start" / agent,
            examples=examples,
            out_dir=tmp_path / "after" / agent,
            settings=settings_from_config(config.distill),
            seed=0,
        )
        assert outcome.losses[-1] < outcome.losses[0]

    after_pop = PopulationModel(
        embedded_model_path, AGENTS, lora, adapter_dirs={a: tmp_path / "after" / a for a in AGENTS}
    )
    after = prior_probe(after_pop, game, AGENTS, orders)
    for agent in AGENTS:
        print(agent, target, before[agent].probs[target], "->", after[agent].probs[target])
        assert after[agent].probs[target] > before[agent].probs[target] + 0.05
        assert sum(after[agent].probs.values()) == pytest.approx(1.0)


def test_dpo_towards_an_unfavoured_name_raises_the_prior_on_it(embedded_model_path, tmp_path):
    """DPO with the config's defaults (distill.method=dpo on the quickstart): pairs that
    prefer a name the model does not favour over the one it favours most, on empty-memory
    prompts, raise the prior on the preferred name."""
    from dataclasses import replace

    config = load_experiment(
        "configs/naming_game/quickstart.yaml", ["distill.method=dpo", "distill.backend=trl"]
    )
    game = NamingGame(NamingGameRules(names=tuple("RKTBQMDWLP"), memory=config.game.memory))
    lora = LoraSpec(r=config.lora.r, alpha=config.lora.alpha)
    orders = probe_orders(game.options, 5, np.random.default_rng(0))
    agent = AGENTS[0]
    start = PopulationModel(embedded_model_path, [agent], lora, init_seeds={agent: 0})
    before = prior_probe(start, game, [agent], orders)[agent].probs
    start.save_adapter(agent, tmp_path / "start")
    del start
    ranked = sorted(game.options, key=lambda n: before[n])
    target, favoured = ranked[len(ranked) // 2], ranked[-1]

    rng = np.random.default_rng(1)
    pairs = [
        {
            "prompt": [m.to_dict() for m in game.prompt([], game.shuffled_options(rng))],
            "chosen": [{"role": "assistant", "content": target}],
            "rejected": [{"role": "assistant", "content": favoured}],
        }
        for _ in range(config.distill.max_examples)
    ]
    settings = settings_from_config(config.distill)
    assert settings.method == "dpo" and settings.dpo_beta == config.distill.dpo_beta
    outcome = distill_adapter(
        agent=agent,
        model_path=embedded_model_path,
        start_adapter=tmp_path / "start",
        examples=pairs,
        out_dir=tmp_path / "after",
        settings=replace(settings),
        seed=0,
    )
    assert outcome.operation == "dpo"
    assert outcome.metrics["rewards_margins_last"] > outcome.metrics["rewards_margins_first"]
    after_pop = PopulationModel(
        embedded_model_path, [agent], lora, adapter_dirs={agent: tmp_path / "after"}
    )
    after = prior_probe(after_pop, game, [agent], orders)[agent].probs
    print(
        target,
        before[target],
        "->",
        after[target],
        favoured,
        before[favoured],
        "->",
        after[favoured],
    )
    assert after[target] > before[target] + 0.05
    assert after[favoured] < before[favoured]
