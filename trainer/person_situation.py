"""Person vs situation probe: every agent's adapter in the same contexts (issue 9).

After generation G, is what an agent does decided by who it is (its adapter) or by
where it is (the context)? Every LLM agent, with its adapter after generation G, is
shown the same K contexts: prompts drawn (seeded) from generation G's own transcript,
each exactly as one agent saw it then (its memory of its last interactions, any persona,
the options in the order they were shown). The number recorded for each (agent, context)
cell is the agent's probability of the generation's majority option (the summary's
``majority_option``: most chosen in the last ``metrics.window`` rounds), so the table
says how strongly each agent follows the convention in each situation. All cells are
scored in one batched call, one adapter per row. The table's variance is split into
agent, context and residual (= agent x context) shares by
:func:`societies.measures.person_situation.decompose`.

The contexts are this generation's own situations, so they are in-distribution for the
adapters distilled from them; the option order of each context is kept as shown, so a
position bias is part of the context effect, the same for every agent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from societies.atomic import atomic_write_json
from societies.measures.person_situation import VarianceShares, decompose
from societies.records import SchemaError, check_record
from societies.transcripts import read_decisions
from trainer.run_dir import adapter_is_saved, read_json

PERSON_SITUATION_SCHEMA_VERSION = 1

PERSON_SITUATION_FILE = "person_situation.json"
"""Where ``folkways person-situation`` keeps its results in the run directory, one entry
per generation (read by ``folkways report``)."""


@dataclass(frozen=True)
class ContextRef:
    """Which decision of the generation's transcript a context's prompt comes from."""

    round: int
    pair: int
    agent: str


@dataclass(frozen=True)
class PersonSituation:
    """The agent x context table of one generation and its variance shares.

    Attributes:
        run: the run's name.
        generation: adapters after this generation, contexts from its transcript.
        option: the option whose probability each cell holds (the majority option).
        agents: the table's rows (the run's LLM agents).
        contexts: the table's columns, in transcript order.
        values: ``values[i][j]``: ``agents[i]``'s probability of ``option`` in context j.
        variance: the two-way decomposition of ``values``.
        seed: drew the contexts.
    """

    run: str
    generation: int
    option: str
    agents: tuple[str, ...]
    contexts: tuple[ContextRef, ...]
    values: tuple[tuple[float, ...], ...]
    variance: VarianceShares
    seed: int
    schema_version: int = PERSON_SITUATION_SCHEMA_VERSION

    def __post_init__(self) -> None:
        shape = (len(self.agents), len(self.contexts))
        if len(self.values) != shape[0] or any(len(row) != shape[1] for row in self.values):
            raise ValueError(f"values is not {shape[0]} x {shape[1]} (agents x contexts)")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["agents"] = list(self.agents)
        data["values"] = [list(row) for row in self.values]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PersonSituation:
        check_record("person_situation", cls, data, PERSON_SITUATION_SCHEMA_VERSION)
        return cls(
            **{
                **data,
                "agents": tuple(data["agents"]),
                "contexts": tuple(ContextRef(**c) for c in data["contexts"]),
                "values": tuple(tuple(float(v) for v in row) for row in data["values"]),
                "variance": VarianceShares.from_dict(data["variance"]),
            }
        )


def person_situation(
    run_dir: str | Path, generation: int, contexts: int = 16, seed: int = 0
) -> PersonSituation:
    """Score every LLM agent's adapter after ``generation`` in ``contexts`` prompts drawn
    from that generation's transcript, and split the table's variance.

    Args:
        run_dir: a run directory written by ``folkways run``.
        generation: a complete generation.
        contexts: how many of the generation's choice decisions to take as contexts
            (without replacement); 2 .. the number of them.
        seed: draws the contexts (``numpy.random.default_rng(seed)``).

    Raises:
        FileNotFoundError: the run directory, the generation or an adapter is missing.
        ValueError: too few agents or contexts, a game without choices (debate), or a
            generation whose options tied at the top (no majority option).
    """
    # Imported here: they load torch, and reading the stored results (``folkways report``)
    # should not.
    from societies.choices import ChoiceRequest
    from trainer.generation_loop import Experiment

    exp = Experiment.from_run_dir(run_dir, progress=False)
    layout, cfg = exp.layout, exp.config
    completed = layout.completed_generations()
    if generation not in completed:
        raise FileNotFoundError(
            f"generation {generation} of {run_dir} is not complete; complete generations: "
            f"{completed}"
        )
    agents = exp.llm_agents
    if len(agents) < 2:
        raise ValueError(
            f"{run_dir} has {len(agents)} LLM agent(s) {agents}; person vs situation needs "
            "at least 2 (scripted seats have no adapter)"
        )
    adapters = {a: layout.adapter(generation, a) for a in agents}
    missing = [a for a, path in adapters.items() if not adapter_is_saved(path)]
    if missing:
        raise FileNotFoundError(
            f"generation {generation} of {run_dir} is marked complete but has no adapter for "
            f"{missing[:3]}"
        )
    decisions = read_decisions(layout.transcripts(generation))
    measured = exp.game.generation_metrics(
        decisions,
        rounds=cfg.game.rounds,
        window=cfg.metrics.window,
        population_size=cfg.population.size,
    )
    if measured.majority_tied:
        raise ValueError(
            f"generation {generation} of {run_dir} has no majority option: "
            f"{', '.join(measured.majority_tied)} tied at the top of its last "
            f"{cfg.metrics.window} rounds; person vs situation splits P(majority option), so "
            "give a generation with one"
        )
    option = measured.majority_option
    pool = [d for d in decisions if d.valid and option in d.options]
    if len(pool) < 2:
        raise ValueError(
            f"generation {generation} of {run_dir} has {len(pool)} choice decision(s) offering "
            f"the majority option {option!r}; person vs situation needs at least 2 (game "
            f"{cfg.game.name.value!r})"
        )
    if (
        isinstance(contexts, bool)
        or not isinstance(contexts, int)
        or not 2 <= contexts <= len(pool)
    ):
        raise ValueError(
            f"contexts={contexts!r}; accepted: 2..{len(pool)} (the generation's choices)"
        )
    picked = sorted(np.random.default_rng(seed).choice(len(pool), size=contexts, replace=False))
    chosen = [pool[i] for i in picked]

    population = exp.population(adapters)
    requests = [ChoiceRequest(a, d.messages, d.options) for a in agents for d in chosen]
    scores = population.score(requests)
    values = tuple(
        tuple(scores[i * contexts + j].probs[d.options.index(option)] for j, d in enumerate(chosen))
        for i in range(len(agents))
    )
    return PersonSituation(
        run=cfg.run.name,
        generation=generation,
        option=option,
        agents=tuple(agents),
        contexts=tuple(ContextRef(d.round, d.pair, d.agent) for d in chosen),
        values=values,
        variance=decompose(values),
        seed=seed,
    )


def write_person_situation(run_dir: str | Path, results: list[PersonSituation]) -> Path:
    """Merge ``results`` into ``run_dir/person_situation.json`` (atomically).

    The file is ``{"schema_version": 1, "generations": {"<g>": PersonSituation}}``; a
    result replaces a stored one of the same generation and leaves the others, so
    measuring generations one at a time (or again with more contexts) accumulates.

    Returns:
        the file's path.
    """
    path = Path(run_dir) / PERSON_SITUATION_FILE
    stored = read_person_situation(run_dir)
    stored.update({r.generation: r for r in results})
    atomic_write_json(
        path,
        {
            "schema_version": PERSON_SITUATION_SCHEMA_VERSION,
            "generations": {str(g): stored[g].to_dict() for g in sorted(stored)},
        },
    )
    return path


def read_person_situation(run_dir: str | Path) -> dict[int, PersonSituation]:
    """``{generation: result}`` from ``run_dir/person_situation.json``; empty when the file
    does not exist (``folkways person-situation`` was never run on it).

    Raises:
        SchemaError: the file is not one this version writes; the message names it.
    """
    path = Path(run_dir) / PERSON_SITUATION_FILE
    if not path.exists():
        return {}
    data = read_json(path)
    expected = '{"schema_version": 1, "generations": {"<generation>": result}}'
    if not isinstance(data, dict) or not isinstance(data.get("generations"), dict):
        raise SchemaError(f"{path}: expected {expected}")
    if data.get("schema_version") != PERSON_SITUATION_SCHEMA_VERSION:
        raise SchemaError(
            f"{path}: schema_version={data.get('schema_version')!r}; this folkways reads "
            f"schema_version {PERSON_SITUATION_SCHEMA_VERSION}"
        )
    try:
        results = {int(g): PersonSituation.from_dict(r) for g, r in data["generations"].items()}
    except SchemaError as err:
        raise SchemaError(f"{path}: {err}") from None
    except (ValueError, TypeError, KeyError) as err:
        raise SchemaError(f"{path}: {err!r}; expected {expected}") from None
    wrong = sorted(g for g, r in results.items() if r.generation != g)
    if wrong:
        raise SchemaError(f"{path}: entries {wrong} hold another generation's result")
    return results
