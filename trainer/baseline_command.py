"""``folkways baseline iql|reinforce|mng|llm_rl CONFIG [key=value ...] [--seeds K] [--json]``.

Runs a tabula-rasa baseline (issue #12) on the game of an experiment config: the
config's ``game:`` section gives the rules (names drawn from ``run.seed`` as in the LLM
run), ``population.size`` the number of agents and ``network:`` who meets whom (seed s
plays the graph a society run of ``run.seed = s`` plays; societies/topology.py), read
through the same loader as ``folkways run``. Overrides without a dot set the baseline's
args (``epsilon=0.1``); dotted ones and config sections override the experiment config
(``game.memory=1``, ``interventions=[]``).
Seeds are ``run.seed .. run.seed + K - 1``.

Writes, in ``--out`` (default ``<run.output_dir>/<run.name>-baseline-<method>``)::

    args.json       method, config, overrides, seeds and the resolved args
    results.json    one SeedResult per seed (what --json prints); llm_rl: LlmRlResults
    seed_<s>/       an ordinary run directory, as a society run's (trainer/baseline_run_dir.py):
                    config.yaml, generation_000/ (transcripts.jsonl of Decision records,
                    probes.json, consensus.jsonl, metrics.jsonl, summary.json, COMPLETE),
                    metrics.jsonl, and graph.json (the graph played) when the network is
                    not complete; ``folkways report`` and ``folkways compare`` read it

IQL and REINFORCE record every decision; on the donor game each episode is a
generation. The minimal naming game records its speakers' decisions for its first
rounds only (societies/baselines/mng_log.py). llm_rl writes its run directories as it
plays (trainer/llm_rl.py), with the adapters.

Everything is checked before anything runs or is written: the config (the baselines
run no interventions and have no scripted seats), the args, and
``--out``, which must be new, empty, or the output of this same command, re-run in
place (trainer/baseline_out.py); bad input leaves no file behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from societies.atomic import atomic_write_json
from societies.baselines import iql, minimal_naming_game, reinforce
from societies.baselines.mng_log import MngLog
from societies.baselines.play_log import PlayLog
from societies.baselines.records import Game, Method, SeedResult
from societies.population_spec import agent_names
from trainer import config_loader
from trainer.baseline_out import args_record, check_out
from trainer.config_loader import ConfigError
from trainer.game_configs import GameName
from trainer.games import build_game

if TYPE_CHECKING:
    from trainer.config import ExperimentConfig

Runner = Callable[..., list[SeedResult]]  # (args, seeds, log=...)
ARGS: dict[Method, tuple[type, Runner]] = {
    Method.IQL: (iql.IqlArgs, iql.run),
    Method.REINFORCE: (reinforce.ReinforceArgs, reinforce.run),
    Method.MNG: (minimal_naming_game.MngArgs, minimal_naming_game.run),
}
FROM_CONFIG = ("game", "rules", "network")  # set from the experiment config, never overridden
LLM_RL = "llm_rl"  # the LLM population learning online by policy gradient (trainer/llm_rl.py)


def add_baseline_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``folkways baseline``; its handler is :func:`run_baseline_command`."""
    parser = subparsers.add_parser(
        "baseline",
        help="tabula-rasa baselines (IQL, REINFORCE, minimal naming game) on a config's game",
    )
    parser.add_argument("method", choices=[*(m.value for m in Method), LLM_RL])
    parser.add_argument("config", help="experiment YAML, e.g. configs/naming_game/ashery2025.yaml")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="key=value: baseline args (epsilon=0.1), or config keys: dotted (game.memory=1) "
        "or a section (interventions=[])",
    )
    parser.add_argument(
        "--seeds", type=int, default=5, help="root seeds run.seed .. run.seed+K-1 (default 5)"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default <run.output_dir>/<run.name>-baseline-<method>): new or "
        "empty, or the output of this same command (method, config, overrides, --seeds), "
        "which is re-run in place; any other folder is refused",
    )
    parser.add_argument("--json", action="store_true", help="print the per-seed records as JSON")
    parser.set_defaults(func=run_baseline_command)
    return parser


def run_baseline_command(args: argparse.Namespace) -> int:
    # the experiment config imports torch (societies.population): only when a baseline runs
    from trainer.config import load_experiment

    if args.seeds < 1:
        raise ValueError(f"--seeds={args.seeds}; expected an integer >= 1")
    settings, own = split_overrides(args.overrides)
    config = load_experiment(args.config, settings)
    if args.method == LLM_RL:
        return _run_llm_rl(args, config, own)
    method = Method(args.method)
    baseline_args = resolve_args(method, config, own)
    seeds = list(range(config.run.seed, config.run.seed + args.seeds))
    out = (
        Path(args.out)
        if args.out
        else config.run_dir.with_name(f"{config.run.name}-baseline-{method.value}")
    )
    check_out(out, args_record(method.value, baseline_args, seeds, args.config, args.overrides))
    results, log = run_recorded(method, baseline_args, seeds)
    write_results(out, method, baseline_args, results, log, config, args.config, args.overrides)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(format_results(results))
        print(f"run directories: {out}/seed_<s> (folkways report reads each)")
    return 0


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(config overrides, baseline args)``: a dotted key (``game.memory=1``) or a
    config section's name (``interventions=[]``) sets the config, any other the args."""
    from trainer.config import ExperimentConfig

    sections = {f.name for f in dataclasses.fields(ExperimentConfig)}

    def sets_the_config(text: str) -> bool:
        key, sep, _ = text.partition("=")
        return bool(sep) and ("." in key or key in sections)

    config = [o for o in overrides if sets_the_config(o)]
    return config, [o for o in overrides if not sets_the_config(o)]


def run_recorded(
    method: Method, baseline_args: Any, seeds: Sequence[int]
) -> tuple[list[SeedResult], PlayLog | MngLog]:
    """Run ``method`` on ``seeds`` with its decisions recorded for the run directories."""
    log = MngLog() if method is Method.MNG else PlayLog()
    _, runner = ARGS[method]
    return runner(baseline_args, seeds, log=log), log


def resolve_args(method: Method, config: ExperimentConfig, overrides: list[str]) -> Any:
    """The baseline's args: game, population and network from ``config``, then
    ``overrides``."""
    cls, _ = ARGS[method]
    check_config(method.value, config)
    game = config.game
    n = config.population.size
    if method is Method.MNG:
        base: dict[str, Any] = {"num_agents": n, "interactions_per_round": game.pairs_per_round}
        rules = None
    elif game.name is GameName.NAMING_GAME:
        base = {
            "game": Game.NAMING_GAME.value,
            "num_agents": n,
            "pairs_per_round": game.pairs_per_round,
            "episode_rounds": game.rounds,
        }
        rules = build_game(game, config.run.seed).rules
    else:
        base = {"game": Game.DONOR_GAME.value, "num_agents": n}
        rules = game.rules()

    valid = [f.name for f in dataclasses.fields(cls) if f.name not in FROM_CONFIG]
    values: dict[str, Any] = {}
    for text in overrides:
        key_path, value = config_loader.parse_override(text)
        key = key_path[0]
        if key not in valid:
            raise ConfigError(
                f"override {text!r}: {key!r} is not an arg of baseline {method.value}; valid "
                f"args: {', '.join(valid)} (dotted keys such as game.memory=1 set the config)"
            )
        values[key] = value
    built = config_loader.build(cls, {**base, **values}, source=f"baseline {method.value} args")
    from_config: dict[str, Any] = {"network": config.network}
    if rules is not None:
        from_config["rules"] = rules
    return dataclasses.replace(built, **from_config)


def check_config(method: str, config: ExperimentConfig) -> None:
    """Refuse what of ``config`` the baseline ``method`` would not play as written.

    The baselines play the config's network but run no scheduled interventions and have
    no scripted seats: a config asking for either is refused rather than run without it
    (its seeds' config.yaml would record what was never played).
    """
    if config.population.scripted:
        raise ConfigError(
            f"population.scripted={[s.policy for s in config.population.scripted]}: the "
            "baselines have no scripted seats (every agent learns); remove the section, or "
            "use `mng committed_fraction=...` for committed agents"
        )
    if config.interventions:
        kinds = [iv.kind.value for iv in config.interventions]
        raise ConfigError(
            f"interventions={kinds}: the baselines run no scheduled interventions; remove "
            "the config's interventions section, or use `mng committed_fraction=...` for "
            "agents committed from round 0"
        )
    games = [GameName.NAMING_GAME]
    if method not in (Method.MNG.value, LLM_RL):
        games.append(GameName.DONOR_GAME)
    if config.game.name not in games:
        raise ConfigError(
            f"game.name={config.game.name.value!r}: `folkways baseline {method}` plays "
            f"{' or '.join(g.value for g in games)}"
        )


def write_results(
    out: Path,
    method: Method,
    baseline_args: Any,
    results: list[SeedResult],
    log: PlayLog | MngLog,
    config: ExperimentConfig,
    config_path: str,
    overrides: list[str],
) -> list[Path]:
    """``args.json`` and ``results.json`` in ``out``, and each seed's run directory
    ``out/seed_<s>`` (returned, in the order of ``results``), with the graph it played
    (``graph.json``, as a society run's) when ``baseline_args.network`` is not complete."""
    from trainer.baseline_run_dir import write_graph, write_learner_run, write_mng_run

    out.mkdir(parents=True, exist_ok=True)
    write_args(out, method.value, baseline_args, [r.seed for r in results], config_path, overrides)
    atomic_write_json(out / "results.json", [r.to_dict() for r in results])
    dirs = []
    for r in results:
        seed_dir = out / f"seed_{r.seed}"
        write = write_mng_run if isinstance(log, MngLog) else write_learner_run
        write(seed_dir, config, r, log.play(r.seed), baseline_args)
        agents = agent_names(baseline_args.num_agents)
        write_graph(seed_dir, baseline_args.network.graph(agents, r.seed))
        dirs.append(seed_dir)
    return dirs


def write_args(
    out: Path,
    method: str,
    baseline_args: Any,
    seeds: Sequence[int],
    config_path: str,
    overrides: list[str],
) -> None:
    atomic_write_json(
        out / "args.json", args_record(method, baseline_args, seeds, config_path, overrides)
    )


def format_results(results: list[SeedResult]) -> str:
    """One line per seed, then how many converged and when."""
    extra = [
        key
        for key in (
            "final_mean_resources",
            "final_mean_donation",
            "peak_words",
            "peak_round",
            "flipped",
            "flip_round",
        )
        if any(getattr(r, key) is not None for r in results)
    ]
    columns = ["seed", "rounds", "converged_round", "winner", "final_success", *extra]
    rows = [[_cell(getattr(r, c)) for c in columns] for r in results]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    done = [r.converged_round for r in results if r.converged_round is not None]
    median = f", median round {np.median(done):g}" if done else ""
    first = results[0]
    lines.append(
        f"{first.method.value} on {first.game.value}: converged {len(done)}/{len(results)}{median}"
    )
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _run_llm_rl(args: argparse.Namespace, config: ExperimentConfig, overrides: list[str]) -> int:
    """``folkways baseline llm_rl``: one online-RL population per seed, each in its own
    run directory ``seed_<s>/`` of ``--out`` (with its adapters)."""
    from societies.model_store import resolve_model
    from trainer.config import load_experiment
    from trainer.llm_rl import LlmRlArgs, run_llm_rl

    check_config(LLM_RL, config)
    valid = [f.name for f in dataclasses.fields(LlmRlArgs)]
    values: dict[str, Any] = {}
    for text in overrides:
        key_path, value = config_loader.parse_override(text)
        if key_path[0] not in valid:
            raise ConfigError(
                f"override {text!r}: {key_path[0]!r} is not an arg of baseline llm_rl; valid "
                f"args: {', '.join(valid)} (dotted keys such as game.num_names=2 set the config)"
            )
        values[key_path[0]] = value
    rl_args = config_loader.build(LlmRlArgs, values, source="baseline llm_rl args")
    out = (
        Path(args.out)
        if args.out
        else config.run_dir.with_name(f"{config.run.name}-baseline-llm_rl")
    )
    seeds = list(range(config.run.seed, config.run.seed + args.seeds))
    check_out(out, args_record(LLM_RL, rl_args, seeds, args.config, args.overrides))
    # the model too, before anything is written (run_llm_rl resolves it again: cached)
    resolve_model(
        config.model.name_or_path, Path(config.model.cache_dir) if config.model.cache_dir else None
    )
    out.mkdir(parents=True, exist_ok=True)
    write_args(out, LLM_RL, rl_args, seeds, args.config, args.overrides)
    results = []
    for s in seeds:
        seeded = load_experiment(
            args.config, [*[o for o in args.overrides if o not in overrides], f"run.seed={s}"]
        )
        results.append(run_llm_rl(seeded, rl_args, out / f"seed_{s}", progress=not args.json))
    atomic_write_json(out / "results.json", [r.to_dict() for r in results])
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        for r in results:
            print(
                f"seed {r.seed}: converged_round {r.converged_round}, winner {r.winner}, "
                f"final_success {r.final_success:.2f}, mean payoff {r.mean_payoff_first:.1f} "
                f"-> {r.mean_payoff_last:.1f} ({r.updates} updates)"
            )
        print(f"runs: {out}")
    return 0
