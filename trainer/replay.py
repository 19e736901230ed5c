"""Counterfactual replay: play one generation of a finished run again with one factor
changed and every seed stream held fixed (issue 9, "Measuring what changed").

A generation's rollout is a pure function of its config, its start adapters and the
seeds (DESIGN.md, decisions 5 and 7): pairings, option orders and the uniform draws
that sample every action come from streams keyed by (generation, round), never from a
running state. Replaying it with one thing changed — an agent given another agent's
start adapter, an agent reset to its initial adapter (the base model: its B is zero),
a config key overridden — and nothing else gives a *paired* counterfactual: the same
draws, so every difference from the original transcript is caused by the change. With
nothing changed the replay reproduces the original transcript byte for byte.

The replay is written to a sibling directory (default ``<run_dir>-replay-g<G>-<label>``):

```
<run>-replay-g002-swap-agent_01-from-agent_03/
  replay.json                        what was changed (a second call resumes; another is refused)
  config.yaml                        the config replayed: the source's, overrides applied
  initial_adapters/<agent>/          copies of the source's
  generation_001/adapters/<agent>/   the start adapters of generation 2, the change applied
  generation_001/transcripts.jsonl   a copy of the source's (what committed minorities read)
  generation_002/transcripts.jsonl   the replayed rollout (records keep the source run's name)
  comparison.json                    the ReplayResult
```

The rollout is the generation loop's own (``Experiment.play_rounds``): the same code that
played the original, with its resume (a killed replay continues where it stopped) and
its interventions. A replay changes start adapters only: a scheduled ablation or
transplant of the source run still applies from its round on (a transplant then brings
the donor's start adapter as the replay has it). Personas belong to the seat and stay.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import yaml

from societies.atomic import atomic_directory, atomic_write_json, atomic_write_text
from societies.records import Decision
from societies.transcripts import read_complete_rounds, read_decisions
from trainer.config import ExperimentConfig, load_experiment
from trainer.game_configs import GameName
from trainer.games import build_game
from trainer.generation_loop import Experiment
from trainer.out_dirs import check_out_dir
from trainer.replay_records import AgentEffect, ReplayResult, ReplaySpec, compare
from trainer.run_dir import RunLayout, adapter_is_saved, open_run_dir, read_json

SPEC_FILE = "replay.json"
COMPARISON_FILE = "comparison.json"


def default_out_dir(run_dir: str | Path, spec: ReplaySpec) -> Path:
    """``<run_dir>-replay-g<G>-<label>``, beside the run directory."""
    root = Path(run_dir)
    return root.with_name(f"{root.name}-replay-g{spec.generation:03d}-{spec.label}")


def replay_generation(
    run_dir: str | Path,
    generation: int,
    *,
    swap_adapters: Mapping[str, str] | None = None,
    reset_to_start: Sequence[str] | None = None,
    overrides: Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> ReplayResult:
    """Replay the rollout of a complete generation with the changes given; compare.

    Args:
        run_dir: a run directory written by ``folkways run``.
        generation: a complete generation of it.
        swap_adapters: agent -> the agent whose start adapter it starts with.
        reset_to_start: agents that start with their initial adapter (the base model).
        overrides: ``key=value`` config overrides (not ``run.name``/``run.output_dir``).
        out_dir: where to write (default :func:`default_out_dir`); an existing replay
            with the same changes is resumed, anything else there is refused.
        progress: show the rounds' progress bar.
        log: receives progress messages (default: none).

    Raises:
        FileNotFoundError: the run directory, generation or a start adapter is missing.
        ValueError: an unknown agent, a bad override, or an ``out_dir`` holding another thing.
    """
    layout = open_run_dir(run_dir)
    spec = ReplaySpec(
        source=str(layout.root.resolve()),
        generation=generation,
        swap_adapters=dict(swap_adapters or {}),
        reset_to_start=tuple(reset_to_start or ()),
        overrides=tuple(overrides or ()),
    )
    log = log or (lambda _: None)
    completed = layout.completed_generations()
    if isinstance(generation, bool) or generation not in completed:
        raise FileNotFoundError(
            f"generation {generation!r} of {run_dir} is not complete; complete generations: "
            f"{completed}"
        )
    target = Path(out_dir) if out_dir is not None else default_out_dir(layout.root, spec)
    if target.resolve() == layout.root.resolve():
        raise ValueError(f"out_dir {target} is the run directory itself; expected another folder")
    check_out_dir(target, "expected a new folder or a replay with the same changes (resumed)")
    # The experiment keeps the source run's name (it goes into every Decision record, so
    # an unchanged replay is byte-identical); only its layout points at the replay.
    location = [f"run.output_dir={layout.root.parent}", f"run.name={layout.root.name}"]
    pinned = pinned_names(load_experiment(layout.config, location), spec.overrides)
    pin = [f"game.names={json.dumps(list(pinned))}"] if pinned else []
    config = load_experiment(layout.config, [*location, *pin, *spec.overrides])
    if pinned:
        log(f"game.names pinned to the source run's {', '.join(pinned)} (drawn from its run.seed)")
    exp = Experiment(config, progress=progress, log=log)
    _check_agents(spec, exp.llm_agents, run_dir)
    starts = start_sources(layout, spec, exp.llm_agents)
    for src in [*starts.values(), *map(layout.initial_adapter, exp.llm_agents)]:
        if not adapter_is_saved(src):
            raise FileNotFoundError(
                f"adapter folder {src} of {run_dir} is missing or incomplete; expected the "
                "PEFT folder `folkways run` saved there"
            )
    replay = RunLayout(target)
    _claim(replay, spec)
    _write_inputs(layout, replay, spec, config, starts, exp.llm_agents)
    exp.layout = replay  # from here on the loop reads and writes the replay's folder

    decisions = _rollout(exp, generation)
    original = read_decisions(layout.transcripts(generation))
    result = compare(
        spec,
        str(target),
        exp.game,
        config,
        exp.agents,
        original,
        decisions,
        identical=layout.transcripts(generation).read_bytes()
        == replay.transcripts(generation).read_bytes(),
        pinned_names=pinned,
    )
    atomic_write_json(replay.root / COMPARISON_FILE, result.to_dict())
    log(
        f"replay of generation {generation} ({spec.label}) in {target}: "
        + ("identical" if result.identical else f"first difference {result.first_difference}")
    )
    return result


def pinned_names(source: ExperimentConfig, overrides: Sequence[str]) -> tuple[str, ...]:
    """The source run's names, to hold fixed in the replay: () when nothing needs pinning.

    A naming game with ``game.names`` empty draws its names from ``run.seed``, so an
    override of ``run.seed`` (the usual way to vary the draws) would also redraw the
    names, and the replay would compare shares of options the original never had: two
    factors changed, not one. The names are pinned unless the overrides themselves set
    the game or its names (``game.name``, ``game.names``, ``game.num_names``).
    """
    if source.game.name is not GameName.NAMING_GAME or source.game.names:
        return ()
    keys = {o.split("=", 1)[0].strip() for o in overrides}
    if keys & {"game", "game.name", "game.names", "game.num_names"}:
        return ()
    return tuple(build_game(source.game, source.run.seed).rules.names)


def _check_agents(spec: ReplaySpec, llm_agents: Sequence[str], run_dir) -> None:
    for what, names in (
        ("swap_adapters", [*spec.swap_adapters, *spec.swap_adapters.values()]),
        ("reset_to_start", spec.reset_to_start),
    ):
        unknown = sorted(set(names) - set(llm_agents))
        if unknown:
            raise ValueError(
                f"{what}: {unknown} not LLM agents of {run_dir}; LLM agents (scripted seats "
                f"have no adapter): {list(llm_agents)}"
            )


def _claim(replay: RunLayout, spec: ReplaySpec) -> None:
    """Make ``replay.root`` this replay's directory, or refuse one holding anything else."""
    path = replay.root / SPEC_FILE
    if path.is_file():
        found = ReplaySpec.from_dict(read_json(path))
        if found.changes != spec.changes:
            raise ValueError(
                f"{replay.root} holds another replay ({found.changes}); expected a new folder "
                "or a replay with the same changes (which is resumed)"
            )
        return
    if replay.root.is_dir() and any(replay.root.iterdir()):
        shown = sorted(p.name for p in replay.root.iterdir())[:3]
        raise ValueError(
            f"out_dir {replay.root} is not empty and not a replay (it holds {shown}); expected "
            "a new folder or a replay with the same changes"
        )
    replay.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, spec.to_dict())


def start_sources(source: RunLayout, spec: ReplaySpec, agents: Sequence[str]) -> dict[str, Path]:
    """Each agent's start adapter in the replay, as a folder of the source run."""
    g = spec.generation

    def start(agent: str) -> Path:
        return source.initial_adapter(agent) if g == 0 else source.adapter(g - 1, agent)

    return {
        a: source.initial_adapter(a)
        if a in spec.reset_to_start
        else start(spec.swap_adapters.get(a, a))
        for a in agents
    }


def _write_inputs(
    source: RunLayout,
    replay: RunLayout,
    spec: ReplaySpec,
    config: ExperimentConfig,
    starts: Mapping[str, Path],
    agents: Sequence[str],
) -> None:
    """Config, initial adapters, the changed start adapters, the previous transcript.

    Each is written once (atomically) and kept when present, so a killed call resumes.
    """
    g = spec.generation
    header = (
        f"# The config generation {g} of {spec.source} was replayed with (see {SPEC_FILE}):\n"
        "# the source run's, overrides applied; its run.name is the one the records carry.\n"
    )
    text = header + yaml.safe_dump(config.to_dict(), sort_keys=False)
    if not replay.config.is_file() or replay.config.read_text() != text:
        atomic_write_text(replay.config, text)
    copies = {replay.initial_adapter(a): source.initial_adapter(a) for a in agents}
    for agent, src in starts.items():
        # Generation 0 starts from the initial adapters: the change goes there.
        copies[replay.initial_adapter(agent) if g == 0 else replay.adapter(g - 1, agent)] = src
    for dst, src in copies.items():
        if not adapter_is_saved(dst):
            with atomic_directory(dst) as tmp:
                shutil.copytree(src, tmp, dirs_exist_ok=True)
    previous = source.transcripts(g - 1)
    if g > 0 and previous.is_file() and not replay.transcripts(g - 1).is_file():
        atomic_write_text(replay.transcripts(g - 1), previous.read_text(encoding="utf-8"))


def _rollout(exp: Experiment, g: int) -> list[Decision]:
    """The generation loop's rollout into the replay's layout; no model load when the
    replayed transcript is already complete (a finished replay called again)."""
    per_round = exp.game.decisions_per_round(len(exp.agents))
    done, _ = read_complete_rounds(exp.layout.transcripts(g), per_round)
    if len(done) == per_round * exp.config.game.rounds:
        return done
    if exp.config.model.threads:
        import torch

        torch.set_num_threads(exp.config.model.threads)
    exp.layout.generation(g).mkdir(parents=True, exist_ok=True)
    population = exp.population(exp.start_adapters(g))
    return exp.play_rounds(population, g)  # the loop's own rounds, resume included


def attribution(
    run_dir: str | Path,
    generation: int,
    *,
    agents: Sequence[str] | None = None,
    overrides: Sequence[str] | None = None,
    out_root: str | Path | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[AgentEffect]:
    """Who caused the convention: each agent's adapter removed in turn.

    Within a generation the adapters are fixed (its start adapters), so each LLM agent's
    contribution is measured by replaying the generation with that agent reset to its
    initial adapter (the base model) and everything else, seeds included, as it was. The
    effect is original minus replay: what the agent's start adapter added to the outcome.
    In generation 0 every start adapter is an initial one, so every effect is zero.

    Args:
        agents: whose effect to measure (default: every LLM agent).
        overrides: applied to every replay (``key=value``).
        out_root: where the replays go, one folder each named as
            :func:`default_out_dir` names it (default: beside the run directory).

    Returns:
        one :class:`AgentEffect` per agent, in the order given.
    """
    layout = open_run_dir(run_dir)
    root = Path(out_root) if out_root is not None else layout.root.parent
    effects = []
    for agent in agents if agents is not None else Experiment.from_run_dir(run_dir).llm_agents:
        spec = ReplaySpec(
            source=str(layout.root),
            generation=generation,
            reset_to_start=(agent,),
            overrides=tuple(overrides or ()),
        )
        result = replay_generation(
            layout.root,
            generation,
            reset_to_start=[agent],
            overrides=overrides,
            out_dir=root / default_out_dir(layout.root, spec).name,
            progress=progress,
            log=log,
        )
        effects.append(AgentEffect.of(agent, result))
    return effects
