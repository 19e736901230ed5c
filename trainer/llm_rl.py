"""The LLM online weight-update baseline: the same LLM population, no in-context memory,
adapters updated by policy gradient on the game's payoffs (issue #12).

The contrast to the society loop: there, behaviour adapts in context and is distilled
into the weights between generations; here nothing is remembered in context (the
naming game's prompt shows no history, ``game.memory = 0``) and every ``update_every``
rounds each agent's LoRA adapter takes one REINFORCE step (Williams 1992) on the
payoffs it earned, with the population's mean payoff over those rounds as baseline.

The policy is exactly what the agents sample from: the model's next-token distribution
renormalised over the shown options at the game's temperature T, so
``log π(a|s) = log_softmax(logits[options] / T)[a]``. Every agent's step happens in one
batched forward/backward over the stacked multi-LoRA engine (each row with its own
adapter), with per-agent AdamW state and gradient clipping
(:class:`trainer.stacked_adamw.StackedAdamW`): agents never share weights or
optimiser state. Rounds are played by :func:`societies.society.play_round` with the
seeded streams of a society run, on the graph of the config's ``network:`` that a
society run of the same seed plays (pairs drawn only along its edges), so the pairs and
uniforms match a society run of the same seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from societies import seeding
from societies.games.protocol import RoundContext
from societies.population_spec import agent_names
from societies.records import Decision
from societies.seeding import Stream
from societies.society import play_round
from trainer.distill_batched import BatchedSftConfig
from trainer.stacked_adamw import StackedAdamW


@dataclass(frozen=True)
class LlmRlArgs:
    rounds: int = 40
    """Rounds to play (each plays game.pairs_per_round pairs)."""
    update_every: int = 1
    """K: rounds between REINFORCE steps (each step uses those K rounds' decisions)."""
    learning_rate: float = 0.02
    """Adam step size on the LoRA factors; 0.02 coordinates 4 tiny-model agents on 3
    names within ~10 rounds (tests/test_llm_rl.py); 0.005 takes ~45."""
    max_grad_norm: float = 1.0
    payoff_scale: float = 100.0
    """Advantages are divided by this (the naming game pays +100/-50)."""
    window: int = 4
    """Rounds at the end whose success rate is ``final_success``."""

    def __post_init__(self) -> None:
        for name, ok, accepted in (
            ("rounds", self.rounds >= 1, ">= 1"),
            ("update_every", self.update_every >= 1, ">= 1"),
            ("learning_rate", 0 < self.learning_rate < 1, "0 < lr < 1"),
            ("max_grad_norm", self.max_grad_norm >= 0, ">= 0 (0: no clipping)"),
            ("payoff_scale", self.payoff_scale > 0, "> 0"),
            ("window", self.window >= 1, ">= 1"),
        ):
            if not ok:
                raise ValueError(f"llm_rl {name}={getattr(self, name)!r}; expected {accepted}")


@dataclass(frozen=True)
class LlmRlResult:
    seed: int
    rounds: int
    converged_round: int | None
    winner: str | None
    final_success: float
    mean_payoff_first: float
    mean_payoff_last: float
    updates: int

    def to_dict(self) -> dict:
        return {"method": "llm_rl", **asdict(self)}


def run_llm_rl(config, args: LlmRlArgs, out_dir: Path, *, progress: bool = False) -> LlmRlResult:
    """Play ``args.rounds`` rounds of ``config``'s naming game with online REINFORCE, on
    the graph of ``config.network`` that a society run of ``config.run.seed`` plays.

    ``out_dir`` becomes an ordinary run directory of one generation
    (``trainer/baseline_run_dir.py``): ``config.yaml`` (with ``game.memory: 0`` and the
    names, as played), ``graph.json`` (the graph played, as a society run's) when the
    network is not complete, ``initial_adapters/<agent>``, and in ``generation_000/`` the
    society's Decision records (``transcripts.jsonl``, appended round by round), the
    adapters after the last update (``adapters/<agent>``), the prior probe of the
    initial and the final adapters (``probes.json``), the consensus of the agents'
    prior probe after each round (``consensus.jsonl``), ``metrics.jsonl`` (per round:
    the society's ``success_rate``; ``mean_payoff`` and ``agreement`` as phase
    ``baseline_llm_rl``), ``summary.json`` and ``COMPLETE``; then the run's
    ``metrics.jsonl`` and ``result.json`` (this function's :class:`LlmRlResult`).
    """
    from tqdm import tqdm

    from societies.baselines import convergence
    from societies.model_store import resolve_model
    from societies.population import Engine, LoraSpec, PopulationModel
    from societies.probes import prior_probe, probe_orders
    from societies.transcripts import append_decisions
    from trainer.baseline_run_dir import seed_config, start_run_dir, write_generation, write_graph
    from trainer.games import build_game
    from trainer.measure_generation import measure_generation
    from trainer.run_outcome import RoundConsensus
    from trainer.tracking import MetricRecord, rebuild_run_metrics

    if config.game.name.value != "naming_game":
        raise ValueError(
            f"llm_rl plays the naming game; the config's game is {config.game.name.value!r}"
        )
    if config.population.scripted:
        raise ValueError("llm_rl: population.scripted must be empty (every seat learns)")
    if config.interventions:
        kinds = [iv.kind.value for iv in config.interventions]
        raise ValueError(
            f"llm_rl: interventions={kinds} are not played; expected none (remove the "
            "config's interventions section)"
        )
    seed = config.run.seed
    played = replace(config, game=replace(config.game, memory=0))  # no in-context memory
    agents = agent_names(config.population.size)
    graph = config.network.graph(agents, seed)  # the society's graph of this seed
    game = build_game(played.game, seed, graph)  # checks the pairs fit the graph
    out_dir = Path(out_dir)
    seeded = seed_config(played, out_dir, seed, 1, len(agents), game.options)
    layout = start_run_dir(out_dir, seeded)
    write_graph(out_dir, graph)
    lora = LoraSpec(
        r=config.lora.r,
        alpha=config.lora.alpha,
        dropout=0.0,
        target_modules=tuple(config.lora.target_modules),
    )
    model_path = resolve_model(
        config.model.name_or_path, Path(config.model.cache_dir) if config.model.cache_dir else None
    ).path
    fresh = PopulationModel(
        model_path,
        agents,
        lora,
        init_seeds={a: seeding.stream_seed(seed, Stream.ADAPTER_INIT, a) for a in agents},
        engine=Engine.PEFT,
    )
    for a in agents:
        fresh.save_adapter(a, layout.initial_adapter(a))
    del fresh
    # prefix_cache off: the weights change between rounds and cached KV would be stale.
    population = PopulationModel(
        model_path,
        agents,
        lora,
        adapter_dirs={a: layout.initial_adapter(a) for a in agents},
        batch_size=config.model.batch_size,
        engine=Engine.MULTI_LORA,
        prefix_cache=False,
    )
    engine = population.multi_lora
    params = [p for layer in engine.layers.values() for p in (layer.lora_A, layer.lora_B)]
    optimizer = StackedAdamW(
        params,
        len(engine.names),
        BatchedSftConfig(learning_rate=args.learning_rate, max_grad_norm=args.max_grad_norm),
    )
    orders = probe_orders(game.options, len(game.options), seeding.rng(seed, Stream.PROBE))
    temperature = config.game.temperature
    before = prior_probe(population, game, agents, orders)
    priors = before
    decisions: list[Decision] = []
    pending: list[Decision] = []
    consensus: list[RoundConsensus] = []
    success, payoff, agreement, updates = [], [], [], 0
    layout.generation(0).mkdir(parents=True, exist_ok=True)
    for r in tqdm(range(args.rounds), disable=not progress, desc="llm_rl rounds"):
        ctx = RoundContext(out_dir.name, 0, r, seed, temperature)
        new = play_round(population, game, agents, decisions, ctx)
        append_decisions(layout.transcripts(0), new)
        decisions += new
        pending += new
        if (r + 1) % args.update_every == 0 or r == args.rounds - 1:
            _reinforce_step(population, engine, params, optimizer, pending, args, temperature)
            pending, updates = [], updates + 1
        priors = prior_probe(population, game, agents, orders)
        values = np.array([[priors[a].probs[o] for o in game.options] for a in agents])
        choices = convergence.most_probable(values)
        agreed = int(convergence.consensus(choices))
        held = None if agreed == convergence.NO_CHOICE else game.options[agreed]
        consensus.append(RoundConsensus(r, held))
        agreement.append(float(convergence.agreement(choices)))
        success.append(float(np.mean([d.success for d in new])))
        payoff.append(float(np.mean([d.payoff for d in new])))
    for a in agents:
        population.save_adapter(a, layout.adapter(0, a))

    window = min(args.window, args.rounds)
    summary, records = measure_generation(
        0,
        game,
        decisions,
        before,
        priors,
        [],
        rounds=args.rounds,
        window=window,
        population_size=len(agents),
    )
    records += [
        MetricRecord(0, name, value, "baseline_llm_rl", round=r)
        for name, series in (("mean_payoff", payoff), ("agreement", agreement))
        for r, value in enumerate(series)
    ]
    write_generation(layout, 0, summary, records, (before, priors), consensus, orders)
    rebuild_run_metrics(layout)
    none = convergence.NO_CHOICE
    converged = convergence.converged_round(
        np.array([none if c.option is None else game.options.index(c.option) for c in consensus])
    )
    half = max(1, args.rounds // 4)
    result = LlmRlResult(
        seed=seed,
        rounds=args.rounds,
        converged_round=converged,
        winner=consensus[-1].option if converged is not None else None,
        final_success=float(np.mean(success[-args.window :])),
        mean_payoff_first=float(np.mean(payoff[:half])),
        mean_payoff_last=float(np.mean(payoff[-half:])),
        updates=updates,
    )
    (out_dir / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


def _reinforce_step(
    population,
    engine,
    params: Sequence[torch.nn.Parameter],
    optimizer: StackedAdamW,
    batch: Sequence[Decision],
    args: LlmRlArgs,
    temperature: float,
) -> None:
    """One REINFORCE step for every agent with decisions in ``batch``: loss_a = -mean over
    a's decisions of (payoff - population mean payoff) / scale · log π(action)."""
    if not batch:
        return
    payoffs = np.array([d.payoff for d in batch])
    advantages = torch.tensor((payoffs - payoffs.mean()) / args.payoff_scale)
    texts = [population.render(d.messages) for d in batch]
    enc = population.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    position_ids = (enc.attention_mask.cumsum(-1) - 1).clamp(min=0)
    option_ids = torch.tensor([[population.option_token_id(o) for o in d.options] for d in batch])
    chosen = torch.tensor([d.options.index(d.action) for d in batch])
    row_agent = engine.indices([d.agent for d in batch])
    for p in engine.model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
        p.grad = None
    try:
        with engine.select(row_agent), engine.peft_disabled():
            logits = engine.model(
                input_ids=enc.input_ids,
                attention_mask=enc.attention_mask,
                position_ids=position_ids,
                logits_to_keep=1,
            ).logits[:, -1, :]
        option_logits = logits.float().gather(1, option_ids)
        t = max(temperature, 1e-6)
        logp = torch.log_softmax(option_logits / t, dim=-1).gather(1, chosen[:, None])[:, 0]
        terms = -advantages.to(logp.dtype) * logp
        n = len(engine.names)
        sums = terms.new_zeros(n).index_add(0, row_agent, terms)
        counts = terms.new_zeros(n).index_add(0, row_agent, torch.ones_like(terms))
        active = counts > 0
        (sums[active] / counts[active]).sum().backward()
        optimizer.clip_grad_norms(args.max_grad_norm)
        optimizer.step(active, torch.full((n,), args.learning_rate))
    finally:
        for p in params:
            p.requires_grad_(False)
            p.grad = None
    if any(math.isnan(float(p.abs().sum())) for p in params):
        raise FloatingPointError("an adapter became NaN in llm_rl; lower learning_rate")
