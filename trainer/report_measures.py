"""What changed in the agents, read from a run directory for ``folkways report`` (issue 9).

Four measures, each read from what the run (or a later command) already wrote, never
recomputed from a model, so this works on an unfinished run:

- **drift**: per agent, the Jensen–Shannon divergence (bits) of its prior after each
  generation's distillation from its own generation-0 prior (the start). From the
  "drift" records of ``metrics.jsonl`` (:mod:`trainer.drift_metrics`); a generation
  without them (a run from before drift was recorded) is computed from ``probes.json``
  with the same :func:`societies.measures.drift.js_divergence`.
- **influence**: transfer entropy T(source -> target) in bits between agents' actions in
  one generation, the "information" records (:mod:`trainer.information_metrics`).
- **person vs situation**: variance shares of agent, context and their interaction,
  from ``person_situation.json`` (written by ``folkways person-situation``).
- **traits**: Big-Five population means and standard deviations from the
  "traits_before" / "traits_after" records (:mod:`trainer.trait_metrics`), when the run
  set ``probe.questionnaire``.

The figure is :mod:`trainer.report_measures_plot`; :func:`measures_markdown` says how to
read it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from societies.measures.drift import js_divergence
from societies.records import AgentPrior
from trainer.drift_metrics import DRIFT_PHASE
from trainer.information_metrics import INFORMATION_PHASE
from trainer.person_situation import PersonSituation
from trainer.tracking import MetricRecord

DRIFT_NAME = "prior_js_from_gen0_bits"
TE_NAME = "influence_te_bits"
# Phases trait records are written under: extra_probes uses the _before/_after pair;
# trait_records' default ("traits") is read as "after".
TRAIT_PHASES = {"traits_before": "start", "traits_after": "after", "traits": "after"}

HOW_TO_MAKE_SHARES = "folkways person-situation RUN_DIR"
HOW_TO_ENABLE_TRAITS = "probe.questionnaire=true"


@dataclass(frozen=True)
class DriftTable:
    """Per-agent drift of the prior from generation 0, an agents x generations table.

    Attributes:
        agents: the rows.
        generations: the columns (completed generations with priors).
        js_bits: ``js_bits[i][k]``: JS divergence (bits) of ``agents[i]``'s prior after
            ``generations[k]``'s distillation from its generation-0 prior (the "before"
            probe of generation 0); None when the agent had no prior then or at the start.
        sources: per generation, where its numbers come from ("metrics.jsonl" or
            "probes.json").
    """

    agents: tuple[str, ...]
    generations: tuple[int, ...]
    js_bits: tuple[tuple[float | None, ...], ...]
    sources: tuple[str, ...]

    def population_mean(self) -> tuple[float | None, ...]:
        """Mean over the agents measured in each generation (None: none was)."""
        means = []
        for k in range(len(self.generations)):
            column = [row[k] for row in self.js_bits if row[k] is not None]
            means.append(math.fsum(column) / len(column) if column else None)
        return tuple(means)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agents": list(self.agents),
            "generations": list(self.generations),
            "js_from_gen0_bits": {
                a: dict(zip(map(str, self.generations), row, strict=True))
                for a, row in zip(self.agents, self.js_bits, strict=True)
            },
            "population_mean_bits": dict(
                zip(map(str, self.generations), self.population_mean(), strict=True)
            ),
            "sources": dict(zip(map(str, self.generations), self.sources, strict=True)),
        }


@dataclass(frozen=True)
class InfluenceMatrix:
    """Transfer entropy between agents in one generation.

    Attributes:
        generation: the last complete generation with influence records.
        agents: rows and columns.
        te_bits: ``te_bits[i][j]`` = T(agents[i] -> agents[j]) in bits: how much
            ``agents[i]``'s last action tells about ``agents[j]``'s next beyond
            ``agents[j]``'s own last; None on the diagonal and for pairs with too few
            samples to be measured.
    """

    generation: int
    agents: tuple[str, ...]
    te_bits: tuple[tuple[float | None, ...], ...]

    def edges(self) -> list[tuple[str, str, float]]:
        """Measured pairs as ``(source, target, bits)``."""
        return [
            (s, t, bits)
            for s, row in zip(self.agents, self.te_bits, strict=True)
            for t, bits in zip(self.agents, row, strict=True)
            if bits is not None
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "agents": list(self.agents),
            "te_bits": [list(row) for row in self.te_bits],
            "te_bits_note": "te_bits[i][j] = T(agents[i] -> agents[j]); null: not measured",
        }


@dataclass(frozen=True)
class ShareRow:
    """One generation's person/situation split of P(majority option)."""

    generation: int
    option: str
    agents: int
    contexts: int
    share_agent: float
    share_context: float
    share_interaction: float


@dataclass(frozen=True)
class TraitPoint:
    """Population trait scores at one moment.

    Attributes:
        stage: "start" (generation 0's starting adapters) or "after" (after
            ``generation``'s distillation).
        means / stds: trait -> population mean / standard deviation of the agents'
            scores (1..5 on the IPIP Likert scale).
    """

    stage: str
    generation: int
    means: dict[str, float]
    stds: dict[str, float]


@dataclass(frozen=True)
class Measures:
    """The numbers behind ``measures.png``; a missing measure is None or empty."""

    drift: DriftTable | None
    influence: InfluenceMatrix | None
    shares: tuple[ShareRow, ...]
    traits: tuple[TraitPoint, ...]

    def to_dict(self) -> dict[str, Any]:
        return _finite(
            {
                "drift": self.drift.to_dict() if self.drift else None,
                "influence": self.influence.to_dict() if self.influence else None,
                "person_situation": [asdict(s) for s in self.shares],
                "traits": [asdict(t) for t in self.traits],
            }
        )


def _finite(data: Any) -> Any:
    """NaN -> None, so ``--json`` prints standard JSON (a flat person/situation table
    has NaN shares)."""
    if isinstance(data, float) and math.isnan(data):
        return None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def load_measures(
    generations: Sequence[int],
    metrics: Sequence[MetricRecord],
    probes: Sequence[Mapping[str, Mapping[str, AgentPrior]]],
    person_situation: Mapping[int, PersonSituation],
) -> Measures:
    """Collect the four measures of the completed ``generations``.

    Args:
        generations: the completed generations, ascending.
        metrics: the run's metric records (records of other generations are ignored).
        probes: ``probes[k]`` is generation ``generations[k]``'s ``{"before"|"after":
            {agent: prior}}``.
        person_situation: ``{generation: result}`` of ``person_situation.json``.
    """
    done = set(generations)
    metrics = [m for m in metrics if m.generation in done]
    return Measures(
        drift=_drift(generations, metrics, probes),
        influence=_influence(generations, metrics, probes),
        shares=tuple(
            ShareRow(
                generation=g,
                option=r.option,
                agents=r.variance.agents,
                contexts=r.variance.contexts,
                share_agent=r.variance.share_agent,
                share_context=r.variance.share_context,
                share_interaction=r.variance.share_residual,
            )
            for g, r in sorted(person_situation.items())
        ),
        traits=_traits(metrics),
    )


def _drift(generations, metrics, probes) -> DriftTable | None:
    gen0 = probes[0]["before"] if probes and generations[0] == 0 else {}
    columns: dict[int, dict[str, float]] = {}
    sources = []
    for g, p in zip(generations, probes, strict=True):
        recorded = {
            m.agent: m.value
            for m in metrics
            if m.generation == g and m.phase == DRIFT_PHASE and m.name == DRIFT_NAME and m.agent
        }
        if recorded:
            columns[g], source = recorded, "metrics.jsonl"
        else:  # a run from before drift records: the same measure from the priors
            columns[g] = {
                a: js_divergence(prior.probs, gen0[a].probs)
                for a, prior in p["after"].items()
                if a in gen0
            }
            source = "probes.json"
        sources.append(source)
    agents = sorted({a for column in columns.values() for a in column})
    if not agents:
        return None  # no LLM agent: no priors (or generation 0 is not complete)
    return DriftTable(
        agents=tuple(agents),
        generations=tuple(generations),
        js_bits=tuple(tuple(columns[g].get(a) for g in generations) for a in agents),
        sources=tuple(sources),
    )


def _influence(generations, metrics, probes) -> InfluenceMatrix | None:
    by_generation: dict[int, dict[tuple[str, str], float]] = {}
    for m in metrics:
        if m.phase == INFORMATION_PHASE and m.name == TE_NAME and m.agent:
            source, _, target = m.agent.partition("->")
            by_generation.setdefault(m.generation, {})[(source, target)] = m.value
    if not by_generation:
        return None
    g = max(by_generation)
    pairs = by_generation[g]
    llm_agents = probes[list(generations).index(g)]["after"]
    agents = sorted({a for pair in pairs for a in pair} | set(llm_agents))
    return InfluenceMatrix(
        generation=g,
        agents=tuple(agents),
        te_bits=tuple(tuple(pairs.get((s, t)) for t in agents) for s in agents),
    )


def _traits(metrics) -> tuple[TraitPoint, ...]:
    points: dict[tuple[int, int, str], dict[str, dict[str, float]]] = {}
    for m in metrics:
        stage = TRAIT_PHASES.get(m.phase)
        if stage is None or m.agent is not None or not m.name.startswith("trait_"):
            continue
        for suffix in ("_mean", "_std"):
            if m.name.endswith(suffix):
                trait = m.name[len("trait_") : -len(suffix)]
                # start sorts before generation 0's "after"
                key = (m.generation, 0 if stage == "start" else 1, stage)
                points.setdefault(key, {"_mean": {}, "_std": {}})[suffix][trait] = m.value
    return tuple(
        TraitPoint(stage=stage, generation=g, means=v["_mean"], stds=v["_std"])
        for (g, _, stage), v in sorted(points.items())
    )


def measures_markdown(measures: Measures) -> str:
    """The summary's section on ``measures.png``: how to read each panel, and what is
    missing and how to produce it."""
    d, inf = measures.drift, measures.influence
    lines = ["## What changed in the agents", "", "![measures](measures.png)", ""]
    lines.append(
        "- **(a) Prior drift**: each thin line is one agent's Jensen–Shannon divergence "
        "(bits, 0 = unchanged, 1 = disjoint) between its empty-history prior after each "
        "generation's distillation and its own generation-0 prior; the thick line is the "
        "population mean. Rising lines: the weights are moving away from the base model."
        if d
        else "- **(a) Prior drift**: no priors to compare (no LLM agent, or generation 0 "
        "is not complete)."
    )
    if d:
        means = ", ".join(
            f"gen {g}: {_num(v)}" for g, v in zip(d.generations, d.population_mean(), strict=True)
        )
        lines.append(f"  Mean JS from generation 0 (bits): {means}.")
    lines.append(
        f"- **(b) Influence graph** (generation {inf.generation}): an arrow A → B is the "
        "transfer entropy T(A → B) in bits, how much A's last action tells about B's next "
        "beyond B's own last; wider and darker = more. A dense graph with no standout "
        "arrow is a shared trend, not a leader."
        if inf
        else "- **(b) Influence graph**: no transfer-entropy records in metrics.jsonl (a run "
        "from before they were recorded, or too few decisions per pair)."
    )
    lines.append(
        "- **(c) Person vs situation**: per generation, the share of the variance of "
        "P(majority option) explained by the agent (its adapter: person), by the context "
        "(situation) and by their interaction. A growing agent share: behaviour is moving "
        "into the weights."
        if measures.shares
        else f"- **(c) Person vs situation**: not measured; run `{HOW_TO_MAKE_SHARES}` "
        "(writes person_situation.json), then report again."
    )
    lines.append(
        "- **(d) Trait trajectories**: population mean ± standard deviation of each Big-Five "
        "trait (IPIP 50-item markers, 1..5) at the start and after each generation; flat "
        "lines: interaction left the agents' self-descriptions alone."
        if measures.traits
        else "- **(d) Trait trajectories**: the run did not ask the Big-Five questionnaire; "
        f"set `{HOW_TO_ENABLE_TRAITS}` in the config (or as an override) for the next run."
    )
    return "\n".join(lines) + "\n"


def _num(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.3f}"
