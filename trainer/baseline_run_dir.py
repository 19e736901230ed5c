"""A baseline seed as an ordinary run directory (issue #12).

Each seed of ``folkways baseline`` (and of the baselines ``folkways compare`` runs) is
written with a society run's records, so ``folkways report`` and the comparison read it
as they read a society run::

    seed_<s>/
      config.yaml            the experiment config whose game and population were played
                             (run.seed = s; the naming game's names as played)
      generation_000/
        transcripts.jsonl    Decision records (policy = the method, scoring "scripted")
        probes.json          every agent's empty-history policy at the start and the end
        consensus.jsonl      the consensus after each round (trainer/run_outcome.py)
        metrics.jsonl        the society's per-round and generation metrics, and the
                             baseline's own series (phase "baseline_<method>")
        summary.json, COMPLETE
      metrics.jsonl          the generations' metrics together

IQL and REINFORCE record every decision (societies/baselines/play_log.py); on the
donor game every episode (a whole game from fresh resources) is a generation. The
minimal naming game records its speakers' decisions of the first rounds only
(societies/baselines/mng_log.py) and its per-round metrics for every round; an inventory
is not a distribution over fixed options, so its probes.json holds no priors.

Writing a seed replaces what an earlier run left in its folder.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from societies.baselines.iql import IqlArgs
from societies.baselines.minimal_naming_game import MngArgs
from societies.baselines.mng_log import MngPlay
from societies.baselines.play_log import SeedPlay
from societies.baselines.records import Game, RoundSeries, SeedResult
from societies.baselines.reinforce import ReinforceArgs
from societies.games.donor_society import DonorSocietyGame
from societies.games.naming_game import NamingGame
from societies.records import AgentPrior, Decision
from societies.topology import InteractionGraph
from trainer.measure_generation import measure_generation
from trainer.run_dir import RunLayout, atomic_write_json, atomic_write_text
from trainer.run_outcome import RoundConsensus, consensus_path, write_consensus
from trainer.summary import GenerationSummary
from trainer.tracking import MetricRecord, rebuild_run_metrics, write_generation_metrics

if TYPE_CHECKING:
    from trainer.config import ExperimentConfig

# RoundSeries the society measures too ("success_rate", "mean_donation_fraction" per
# round): written once, as the society's metrics.
SOCIETY_SERIES = {"success", "mean_donation"}
HEADER = "# The experiment config whose game and population this baseline seed played.\n"


def seed_config(
    config: ExperimentConfig,
    seed_dir: Path,
    seed: int,
    generations: int,
    num_agents: int,
    names: Sequence[str] | None = None,
) -> ExperimentConfig:
    """``config`` as one seed's run directory records it: the seed, the folder, the
    generations written, the population played and (naming game) its names."""
    run = replace(
        config.run,
        name=seed_dir.name,
        output_dir=str(seed_dir.parent),
        seed=seed,
        generations=generations,
    )
    game = config.game if names is None else replace(config.game, names=list(names))
    population = replace(config.population, size=num_agents)
    return replace(config, run=run, game=game, population=population)


def start_run_dir(seed_dir: Path, config: ExperimentConfig) -> RunLayout:
    """Clear the generations an earlier run left in ``seed_dir``; write ``config.yaml``."""
    layout = RunLayout(seed_dir)
    for old in layout.root.glob("generation_*"):
        shutil.rmtree(old)
    text = HEADER + yaml.safe_dump(config.to_dict(), sort_keys=False)
    atomic_write_text(layout.config, text)
    return layout


def write_generation(
    layout: RunLayout,
    g: int,
    summary: GenerationSummary,
    records: list[MetricRecord],
    priors: tuple[dict[str, AgentPrior], dict[str, AgentPrior]],
    consensus: Sequence[RoundConsensus],
    orders: Sequence[Sequence[str]] = (),
) -> None:
    """Generation ``g``'s records but its transcript, then ``COMPLETE``."""
    before, after = priors
    atomic_write_json(
        layout.probes(g),
        {
            "orders": [list(o) for o in orders],
            "before": {a: p.to_dict() for a, p in before.items()},
            "after": {a: p.to_dict() for a, p in after.items()},
        },
    )
    write_consensus(consensus_path(layout, g), consensus)
    write_generation_metrics(layout.generation_metrics(g), records)
    atomic_write_json(layout.summary(g), summary.to_dict())
    atomic_write_text(layout.complete(g), "complete\n")


def write_graph(run_dir: Path, graph: InteractionGraph) -> None:
    """``graph.json`` in ``run_dir``, the graph played as a society run records it, unless
    it is the complete graph, which config.yaml names (a large population's would be
    megabytes of links, and outputs on it stay as they were); a stale one is removed."""
    path = RunLayout(run_dir).graph
    if graph.complete:
        path.unlink(missing_ok=True)
    else:
        atomic_write_json(path, graph.to_node_link())


def write_transcript(layout: RunLayout, g: int, decisions: Sequence[Decision]) -> None:
    text = "".join(json.dumps(d.to_dict(), sort_keys=True) + "\n" for d in decisions)
    atomic_write_text(layout.transcripts(g), text)


def write_learner_run(
    seed_dir: Path,
    config: ExperimentConfig,
    result: SeedResult,
    play: SeedPlay,
    args: IqlArgs | ReinforceArgs,
) -> RunLayout:
    """One IQL or REINFORCE seed: generation by generation, the decisions and priors of
    ``play`` measured as the society measures its own (``measure_generation``)."""
    naming = result.game is Game.NAMING_GAME
    game = NamingGame(args.rules) if naming else DonorSocietyGame(args.rules)
    names = args.rules.names if naming else None
    n, window = len(play.agents), args.window
    seeded = seed_config(config, seed_dir, result.seed, play.generations, n, names)
    layout = start_run_dir(seed_dir, seeded)
    for g in range(play.generations):
        rounds = play.rounds(g)
        decisions = play.decisions(g, seed_dir.name, game.name)
        priors = play.priors(g)
        summary, records = measure_generation(
            g,
            game,
            decisions,
            *priors,
            [],
            rounds=rounds,
            window=min(window, rounds),
            population_size=n,
        )
        positions = np.flatnonzero(play.generation == g)
        rounds_in = play.round[positions].tolist()
        records += series_records(result.series, g, positions, rounds_in, play.method)
        consensus = [
            RoundConsensus(r, option)
            for r, option in zip(rounds_in, play.consensus_options(g), strict=True)
        ]
        write_transcript(layout, g, decisions)
        write_generation(layout, g, summary, records, priors, consensus, [play.options])
    rebuild_run_metrics(layout)
    return layout


def write_mng_run(
    seed_dir: Path, config: ExperimentConfig, result: SeedResult, play: MngPlay, args: MngArgs
) -> RunLayout:
    """One seed of the minimal naming game, in one generation: its per-round series as
    the society's metrics, the recorded rounds' speaker decisions."""
    seeded = seed_config(config, seed_dir, result.seed, 1, args.num_agents)
    layout = start_run_dir(seed_dir, seeded)
    series = result.series
    records = [
        MetricRecord(0, "success_rate", value, "rollout", round=r)
        for r, value in enumerate(series.success)
    ]
    rounds = list(range(result.rounds))
    records += series_records(series, 0, np.arange(result.rounds), rounds, result.method.value)
    top = play.majority()  # words tied at the top: no majority word (top.tied)
    values = {
        "success_rate": float(np.mean(series.success)),
        "success_rate_last": result.final_success,
        "majority_name": top.option,
        "majority_share": top.share,
        "recorded_rounds": play.recorded_rounds,
        **{
            k: v
            for k, v in result.to_dict().items()
            if k in ("peak_words", "peak_round", "committed_fraction", "flipped", "flip_round")
        },
    }
    records += [
        MetricRecord(0, k, float(v), "rollout")
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    nan = math.nan
    summary = GenerationSummary(
        generation=0,
        game=Game.MINIMAL_NAMING_GAME.value,
        rounds=result.rounds,
        window=min(args.window, result.rounds),
        majority_option=top.option,
        majority_share=top.share,
        majority_tied=list(top.tied),
        prior_on_majority_before=nan,
        prior_on_majority_after=nan,
        prior_entropy_before=nan,
        prior_entropy_after=nan,
        option_mass_mean=nan,
        distilled=0,
        carried_over=0,
        scripted=args.num_agents,
        game_metrics=values,
    )
    consensus = [RoundConsensus(r, option) for r, option in enumerate(play.consensus)]
    write_transcript(layout, 0, play.decisions(seed_dir.name))
    write_generation(layout, 0, summary, records, ({}, {}), consensus)
    rebuild_run_metrics(layout)
    return layout


def series_records(
    series: RoundSeries, g: int, positions: np.ndarray, rounds: list[int], method: str
) -> list[MetricRecord]:
    """The series the society does not measure, as phase ``baseline_<method>`` records of
    generation ``g``: the run's rounds at ``positions`` are rounds ``rounds`` of ``g``."""
    records = []
    for name, values in series.named().items():
        if name in SOCIETY_SERIES:
            continue
        chosen = np.asarray(values, dtype=float)[positions].tolist()
        records += [
            MetricRecord(g, name, v, f"baseline_{method}", round=r)
            for r, v in zip(rounds, chosen, strict=True)
        ]
    return records
