"""The generation loop's steps 1-3: probe the starting adapters, play the rounds
(a mixin of :class:`trainer.generation_loop.Experiment`).

Every step here is idempotent: the prior probe is cached in the generation's folder,
complete rounds are kept, and a resumed process plays on from the last whole round.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from societies import faults
from societies.games.protocol import RoundContext
from societies.probes import prior_probe
from societies.records import AgentPrior, Decision
from societies.society import play_round
from societies.transcripts import append_decisions, read_complete_rounds, truncate_to
from trainer.extra_probes import measure_extras, wanted
from trainer.run_dir import atomic_write_json
from trainer.run_records import read_priors, read_probes
from trainer.wandb_tracking import WandbTracker

if TYPE_CHECKING:
    from societies.population import PopulationModel


@dataclass(frozen=True)
class Rollout:
    """What a generation's interaction phase recorded."""

    decisions: list[Decision]
    before: dict[str, AgentPrior]  # the starting adapters' priors
    baseline: dict  # generation 0's extra probes (traits, custom), if any


class RolloutSteps:
    """Probe and rounds of :class:`Experiment`."""

    def rollout_step(self, g: int) -> Rollout:
        """Probe the starting adapters and play the rounds (steps 1-3).

        Idempotent: complete rounds and the cached probe are kept; when everything is
        recorded already, nothing is loaded and the records are read back.
        """
        cfg, layout = self.config, self.layout
        layout.generation(g).mkdir(parents=True, exist_ok=True)
        if self.rollout_recorded(g):
            return Rollout(
                self._recorded_decisions(g),
                read_priors(layout.probe_before(g)),
                self._baseline_extras(None),
            )
        self.log(f"generation {g}/{cfg.run.generations - 1}: interaction phase")
        population = self.population(self.start_adapters(g))
        before = self._probe_before(population, g)
        baseline = self._baseline_extras(population if g == 0 else None)
        decisions = self.play_rounds(population, g)
        del population
        gc.collect()
        self._track_rollout(g, decisions)
        return Rollout(decisions, before, baseline)

    def _track_rollout(self, g: int, decisions: list[Decision]) -> None:
        """The rollout step's W&B run: each round's game metrics against ``round``.

        Logged once the rounds are all recorded; a kill before ``finish`` loses only this
        copy (metrics.jsonl gets every round's records in the probe step)."""
        tracker = WandbTracker.for_step(self.config, self.layout.root, "rollout", g)
        try:
            by_round: dict[int, list[Decision]] = {}
            for d in decisions:
                by_round.setdefault(d.round, []).append(d)
            for r in sorted(by_round):
                tracker.log_round(r, self.game.round_metrics(by_round[r]))
        finally:
            tracker.finish()

    def rollout_recorded(self, g: int) -> bool:
        """Whether generation ``g``'s probe-before and every round are on disk."""
        layout = self.layout
        if not layout.probe_before(g).exists():
            return False
        if wanted(self.config.probe) and not self._baseline_cache.exists():
            return False
        rounds = len(self._recorded_decisions(g)) // self.game.decisions_per_round(len(self.agents))
        return rounds == self.config.game.rounds

    def _recorded_decisions(self, g: int) -> list[Decision]:
        per_round = self.game.decisions_per_round(len(self.agents))
        return read_complete_rounds(self.layout.transcripts(g), per_round)[0]

    def play_rounds(self, population: PopulationModel, g: int) -> list[Decision]:
        """Play generation ``g``'s rounds, appending each to its transcript; a partial
        transcript left by a kill is kept and play resumes after its last whole round."""
        cfg = self.config
        path = self.layout.transcripts(g)
        per_round = self.game.decisions_per_round(len(self.agents))
        done, size = read_complete_rounds(path, per_round)
        truncate_to(path, size)  # drop a torn line or partial round left by a kill
        first = len(done) // per_round
        if first:
            self.log(f"generation {g}: resuming at round {first} ({len(done)} decisions kept)")
        decisions = list(done)
        in_play = self.start_adapters(g)
        bar = self._bar(
            range(first, cfg.game.rounds),
            desc=f"gen {g} rounds",
            initial=first,
            total=cfg.game.rounds,
        )
        for r in bar:
            wanted = self.adapters_at(g, r)
            if wanted != in_play:  # an ablation or transplant starts this round
                del population
                gc.collect()
                population, in_play = self.population(wanted), wanted
            self._record_interventions(g, r, decisions)
            ctx = RoundContext(cfg.run.name, g, r, cfg.run.seed, cfg.game.temperature)
            new = play_round(
                population,
                self.game,
                self.agents,
                decisions,
                ctx,
                self._scripted_at(g, r, decisions),
                self.personas,
            )
            append_decisions(path, new)
            faults.point(f"rollout: generation {g} round {r}")
            decisions.extend(new)
            bar.set_postfix(
                {k: f"{v:.2f}" for k, v in self.game.round_metrics(new).items()}, refresh=False
            )
        return decisions

    @property
    def _baseline_cache(self) -> Path:
        return self.layout.generation(0) / "probe_before_extra.json"

    def _baseline_extras(self, population: PopulationModel | None) -> dict:
        """Traits and custom probes of generation 0's starting adapters, measured once
        (cached in generation 0's folder) and read back by every later generation."""
        if not wanted(self.config.probe):
            return {}
        cache = self._baseline_cache
        if cache.exists():
            return json.loads(cache.read_text())
        if population is None:  # a later generation resuming: generation 0 measured it
            population = self.population(self.start_adapters(0))
        extras = measure_extras(
            population, self.llm_agents, self.config.probe, self.config.run.seed
        )
        atomic_write_json(cache, extras)
        return extras

    def _probe_before(self, population: PopulationModel, g: int) -> dict[str, AgentPrior]:
        """Priors of the adapters generation ``g`` starts with, measured once.

        For g > 0 these adapters are generation g-1's output, whose priors that
        generation already measured with the same option orders: they are reused.
        """
        cache = self.layout.probe_before(g)
        if cache.exists():
            return read_priors(cache)
        if g > 0:
            previous = read_probes(self.layout, g - 1)["after"]
            priors = {a: previous[a] for a in self.llm_agents}
        else:
            priors = self._probe(population, f"generation {g} before")
        atomic_write_json(cache, {a: p.to_dict() for a, p in priors.items()})
        return priors

    def _probe(self, population: PopulationModel | None, when: str) -> dict[str, AgentPrior]:
        faults.point(f"probe: {when}")
        if population is None:
            return {}
        return prior_probe(population, self.game, self.llm_agents, self.probe_orders, self.personas)
