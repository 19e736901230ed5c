"""The generation loop: interact in context, distil into weights, repeat.

One generation (DESIGN.md, "The loop"):
  1. load the population with the adapters the generation starts from;
  2. probe every agent's empty-memory prior ("before");
  3. play the rounds, one batched model call per round, appending transcripts;
  4. distil each agent's rows into its adapter (SFT or DPO; per agent or one community
     adapter; over the generations the data policy says);
  5. evolve (select, crossover, mutate, immigrants) when ``evolution:`` asks;
  6. probe the new adapters ("after"); write metrics, summary, lineage; then COMPLETE.

Re-running the same command resumes (DESIGN.md, decision 6): completed generations
are skipped; inside an unfinished one, complete rounds and finished adapters are kept
and the rest is redone from the seeds, which reproduces exactly what an uninterrupted
run would have written.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from societies import faults, seeding
from societies.atomic import remove_stale_temporaries
from societies.games.protocol import RoundContext, ScriptedSeat, seats
from societies.lora_targets import check_target_modules
from societies.model_store import resolve_model
from societies.population import Engine, LoraSpec, PopulationModel
from societies.probes import prior_probe, probe_orders
from societies.records import AgentPrior, Decision
from societies.seeding import Stream
from societies.society import play_round
from societies.topology import build_graph
from societies.transcripts import (
    append_decisions,
    read_complete_rounds,
    truncate_to,
)
from trainer import lineage
from trainer.config import (
    AdapterScope,
    DistillBackend,
    ExperimentConfig,
    GameName,
    InterventionKind,
    load_experiment,
)
from trainer.distill_group import distill_group
from trainer.distill_sft import (
    DistillOutcome,
    carry_over,
    distill_adapter,
    read_outcome,
    settings_from_config,
)
from trainer.drift_metrics import drift_records
from trainer.evolution_step import SeatPlan, apply_plan, plan_evolution
from trainer.extra_probes import extra_records, measure_extras, wanted
from trainer.games import build_game
from trainer.information_metrics import information_records
from trainer.interventions import (
    InterventionEvent,
    adapters_at,
    committed_option,
    committed_seats,
)
from trainer.measure_generation import measure_generation
from trainer.run_config_check import check_or_write_config
from trainer.run_dir import (
    RunLayout,
    adapter_is_saved,
    atomic_write_json,
    atomic_write_text,
    open_run_dir,
)
from trainer.run_records import read_priors, read_probes, read_summary
from trainer.summary import GenerationSummary
from trainer.tracking import MetricRecord, rebuild_run_metrics, write_generation_metrics
from trainer.training_data import COMMUNITY, TrainingRows, training_rows
from trainer.wandb_tracking import WandbTracker
from trainer.weight_metrics import generation_weight_records


def _stderr(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


@dataclass
class RunResult:
    run_dir: Path
    summaries: list[GenerationSummary]
    skipped: list[int]  # generations found complete and not recomputed


class Experiment:
    """Everything fixed for the whole run: config, names, agents, model location."""

    def __init__(
        self,
        config: ExperimentConfig,
        *,
        progress: bool = True,
        log: Callable[[str], None] = _stderr,
    ):
        self.config = config
        self.layout = RunLayout(config.run_dir)
        self.progress = progress
        self.log = log
        seed = config.run.seed
        self.agents = [f"agent_{i:02d}" for i in range(config.population.size)]
        net = config.network
        self.graph = build_graph(
            net.topology,
            self.agents,
            seeding.stream_seed(seed, Stream.GRAPH),
            k=net.k,
            p=net.p,
            m=net.m,
            edge_list=net.edge_list,
        )
        if config.game.name is GameName.NAMING_GAME:
            most = self.graph.max_matching()
            if config.game.pairs_per_round > most:
                raise ValueError(
                    f"game.pairs_per_round={config.game.pairs_per_round}: the "
                    f"{net.topology.value} graph's largest matching has {most} pairs; "
                    f"expected 1..{most}"
                )
        self.game = build_game(config.game, seed, self.graph)
        self.personas = {
            a: text
            for a, text in zip(self.agents, config.population.persona_list(), strict=False)
            if text
        }
        # Scripted seats (the last ones) act without a model and are never distilled.
        held = seats(self.agents, config.population.scripted)
        self.policies = {a: self.game.scripted_policy(seat) for a, seat in held.items()}
        self.llm_agents = [a for a in self.agents if a not in held]
        self.lora = LoraSpec(
            r=config.lora.r,
            alpha=config.lora.alpha,
            dropout=config.lora.dropout,
            target_modules=tuple(config.lora.target_modules),
        )
        self.probe_orders = probe_orders(
            self.game.options, config.probe_orders, seeding.rng(seed, Stream.PROBE)
        )
        self._resolved_model = None

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, **kwargs) -> Experiment:
        """The experiment an existing run directory was made by, wherever it now lies."""
        layout = open_run_dir(run_dir)
        where = [f"run.output_dir={layout.root.parent}", f"run.name={layout.root.name}"]
        return cls(load_experiment(layout.config, where), **kwargs)

    # ----- helpers -------------------------------------------------------------------
    @property
    def model_path(self) -> str:
        return self._resolved().path

    @property
    def base_model_id(self) -> str:
        """The base model's public name (hub id), for lineage and releases."""
        return self._resolved().hub_id

    def _resolved(self):
        if self._resolved_model is None:
            cfg = self.config.model
            self._resolved_model = resolve_model(
                cfg.name_or_path, Path(cfg.cache_dir) if cfg.cache_dir else None
            )
        return self._resolved_model

    def _bar(self, iterable, **kwargs):
        from tqdm import tqdm

        return tqdm(
            iterable, disable=not self.progress, file=sys.stderr, dynamic_ncols=True, **kwargs
        )

    def population(self, adapter_dirs: dict[str, Path]) -> PopulationModel | None:
        """The run's population model with the given adapter folders (None: all scripted)."""
        if not self.llm_agents:
            return None
        return PopulationModel(
            self.model_path,
            self.llm_agents,
            self.lora,
            adapter_dirs=adapter_dirs,
            batch_size=self.config.model.batch_size,
            engine=self.config.model.engine,
            prefix_cache=self.config.use_prefix_cache,
        )

    def start_adapters(self, g: int) -> dict[str, Path]:
        if g == 0:
            return {a: self.layout.initial_adapter(a) for a in self.llm_agents}
        return {a: self.layout.adapter(g - 1, a) for a in self.llm_agents}

    # ----- run -----------------------------------------------------------------------
    def run(self) -> RunResult:
        self.check_before_start()
        if self.layout.root.is_dir():
            for path in remove_stale_temporaries(self.layout.root):
                self.log(f"removed {path.relative_to(self.layout.root)}, left by a killed write")
        check_or_write_config(self.layout, self.config.to_dict(), log=self.log)
        atomic_write_json(self.layout.graph, self.graph.to_node_link())
        total = self.config.run.generations
        skipped = [g for g in range(total) if self.layout.is_complete(g)]
        if len(skipped) == total:
            self.log(
                f"run {self.layout.root} is already complete ({total} generations); nothing to do"
            )
        elif skipped:
            self.log(f"resuming {self.layout.root}: generations {skipped} are complete and kept")
        if self.config.model.threads:
            import torch

            torch.set_num_threads(self.config.model.threads)
        self._ensure_initial_adapters()
        pending = [g for g in range(total) if not self.layout.is_complete(g)]
        for g in pending:
            self.run_generation(g)
        rebuild_run_metrics(self.layout)  # a kill may have come after COMPLETE, before it
        summaries = [read_summary(self.layout, g) for g in range(total)]
        return RunResult(self.layout.root, summaries, skipped)

    def check_before_start(self) -> None:
        """Check what config validation cannot, before the run directory is written.

        The model must resolve and every ``lora.target_modules`` name must match one of
        its linear layers; a mistake here then leaves nothing behind that would block
        the corrected command. A population of scripted seats only loads no model.
        """
        if self.llm_agents:
            check_target_modules(self.model_path, self.config.lora.target_modules)

    def _ensure_initial_adapters(self) -> None:
        """Create the seeded initial adapters and their lineage, whichever is missing.

        Both are checked: a kill after the last adapter was saved and before lineage.json
        was written leaves adapters without lineage.
        """
        agents = self.llm_agents
        missing = [a for a in agents if not adapter_is_saved(self.layout.initial_adapter(a))]
        recorded = {(e.agent, e.generation) for e in lineage.read_lineage(self.layout)}
        if not missing and all((a, -1) in recorded for a in agents):
            return
        if missing:
            seed = self.config.run.seed
            population = PopulationModel(
                self.model_path,
                agents,
                self.lora,
                init_seeds={a: seeding.stream_seed(seed, Stream.ADAPTER_INIT, a) for a in agents},
                batch_size=self.config.model.batch_size,
                engine=Engine.PEFT,  # creates fresh adapters; later populations load folders
            )
            for agent in missing:
                population.save_adapter(agent, self.layout.initial_adapter(agent))
        lineage.record(
            self.layout,
            [
                lineage.LineageEntry(
                    agent=agent,
                    generation=-1,
                    adapter=str(self.layout.initial_adapter(agent).relative_to(self.layout.root)),
                    operations=["init"],
                )
                for agent in agents
            ],
        )

    # ----- one generation ------------------------------------------------------------
    def run_generation(self, g: int) -> GenerationSummary:
        cfg, layout = self.config, self.layout
        layout.generation(g).mkdir(parents=True, exist_ok=True)
        self.log(f"generation {g}/{cfg.run.generations - 1}: interaction phase")
        population = self.population(self.start_adapters(g))
        before = self._probe_before(population, g)
        baseline = self._baseline_extras(population if g == 0 else None)
        decisions = self._rollout(population, g)
        del population
        gc.collect()

        d = cfg.distill
        self.log(
            f"generation {g}: distillation ({d.method.value}, {d.selection.value}, "
            f"{d.scope.value}, data {d.data_policy.value})"
        )
        data = self._training_rows(g, decisions)
        outcomes = self._distill(g, data)
        plans = self._evolve(g, decisions) if cfg.evolution.active else {}

        after_population = self.population({a: layout.adapter(g, a) for a in self.llm_agents})
        after = self._probe(after_population, f"generation {g} after")
        extras = measure_extras(after_population, self.llm_agents, cfg.probe, cfg.run.seed)
        del after_population
        gc.collect()

        summary, records = measure_generation(
            g,
            self.game,
            decisions,
            before,
            after,
            outcomes,
            rounds=cfg.game.rounds,
            window=cfg.metrics.window,
            population_size=cfg.population.size,
        )
        records += self._weight_records(g)
        gen0 = before if g == 0 else read_probes(layout, 0)["before"]
        records += drift_records(g, after, gen0, summary.majority_option)
        records += extra_records(g, extras, baseline)
        records += information_records(
            g,
            decisions,
            self.agents,
            seed=seeding.stream_seed(cfg.run.seed, Stream.PROBE, "information", g),
        )
        records += [
            MetricRecord(g, "fitness", plan.details["fitness"], "evolution", agent=a)
            for a, plan in plans.items()
        ]
        atomic_write_json(
            layout.probes(g),
            {
                "orders": [list(o) for o in self.probe_orders],
                "before": {a: p.to_dict() for a, p in before.items()},
                "after": {a: p.to_dict() for a, p in after.items()},
                **{f"{k}_after": v for k, v in extras.items()},
                **({f"{k}_before": v for k, v in baseline.items()} if g == 0 else {}),
            },
        )
        write_generation_metrics(layout.generation_metrics(g), records)
        atomic_write_json(layout.summary(g), summary.to_dict())
        entries = self._lineage_entries(g, data, outcomes, plans)
        lineage.record(layout, entries)
        final = {
            e.agent: e for e in entries if e.adapter == layout.relative(layout.adapter(g, e.agent))
        }
        # Tracking before COMPLETE, and finished (written to disk) before it: a kill in
        # between may log a generation twice (in two W&B runs of the group), never lose it.
        tracker = WandbTracker(
            cfg.tracking.wandb.value,
            cfg.tracking.project,
            cfg.run.name,
            layout.root,
            cfg.to_dict(),
            generation=g,
        )
        try:
            faults.point(f"tracking: generation {g}")
            tracker.log_generation(summary, records, decisions)
            for agent in self.llm_agents:
                faults.point(f"tracking: generation {g} {agent}")
                entry = final[agent]
                tracker.log_adapter(
                    agent=agent,
                    generation=g,
                    path=layout.adapter(g, agent),
                    metadata={
                        "operation": entry.operation,
                        "examples": entry.examples,
                        "parents": entry.parents,
                        "data_sha256": entry.data_sha256,
                        "base_model": self.base_model_id,
                    },
                )
        finally:
            tracker.finish()
        atomic_write_text(layout.complete(g), "complete\n")  # last: marks the generation done
        rebuild_run_metrics(layout)
        self.log(
            f"generation {g} complete: majority {summary.majority_option} "
            f"({summary.majority_share:.0%} of the last {summary.window} rounds), prior on it "
            f"{summary.prior_on_majority_before:.3f} -> {summary.prior_on_majority_after:.3f}"
        )
        return summary

    def _baseline_extras(self, population: PopulationModel | None) -> dict:
        """Traits and custom probes of generation 0's starting adapters, measured once
        (cached in generation 0's folder) and read back by every later generation."""
        if not wanted(self.config.probe):
            return {}
        cache = self.layout.generation(0) / "probe_before_extra.json"
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

    def _rollout(self, population: PopulationModel, g: int) -> list[Decision]:
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

    # ----- interventions --------------------------------------------------------------
    def adapters_at(self, g: int, r: int) -> dict[str, Path]:
        """The adapter folders in play at round ``r`` of generation ``g``."""
        return adapters_at(
            self.config.interventions, g, r, self.start_adapters(g), self.layout.initial_adapter
        )

    def distill_starts(self, g: int) -> dict[str, Path]:
        """What each agent's distillation starts from: its adapter at the generation's end."""
        return self.adapters_at(g, self.config.game.rounds)

    def _committed(self, g: int, r: int, decisions: list[Decision]) -> list[InterventionEvent]:
        """The committed minorities holding seats at (g, r), as events."""
        events = []
        read = self._transcripts(g, decisions)
        for index, iv in enumerate(self.config.interventions):
            if iv.kind is not InterventionKind.COMMITTED_MINORITY or not iv.active(g, r):
                continue
            seats_ = committed_seats(
                index, iv.share, len(self.agents), self.llm_agents, self.config.run.seed
            )
            option = committed_option(iv, self.game.options, read)
            start = iv.round if g == iv.generation else 0
            events.append(
                InterventionEvent(index, iv.kind.value, g, start, seats_, option, iv.policy)
            )
        return events

    def _scripted_at(self, g: int, r: int, decisions: list[Decision]) -> dict:
        """Scripted seats of round ``r``: the config's, then any committed minority's."""
        policies = dict(self.policies)
        for event in self._committed(g, r, decisions):
            iv = self.config.interventions[event.index]
            seat = ScriptedSeat(
                iv.policy, len(event.agents), name=event.option, fraction=iv.fraction
            )
            policy = self.game.scripted_policy(seat)
            policies.update(dict.fromkeys(event.agents, policy))
        return policies

    def _swap_events(self, g: int, r: int) -> list[InterventionEvent]:
        """The ablations and transplants that start at round ``r`` of generation ``g``."""
        events = []
        start = self.start_adapters(g)
        for index, iv in enumerate(self.config.interventions):
            if iv.kind is InterventionKind.COMMITTED_MINORITY or (iv.generation, iv.round) != (
                g,
                r,
            ):
                continue
            ablation = iv.kind is InterventionKind.ABLATION
            events.append(
                InterventionEvent(
                    index,
                    iv.kind.value,
                    g,
                    r,
                    tuple(iv.agents),
                    donor=iv.donor,
                    adapter=None if ablation else self.layout.relative(start[iv.donor]),
                )
            )
        return events

    def _record_interventions(self, g: int, r: int, decisions: list[Decision]) -> None:
        """Write ``interventions.jsonl`` when an intervention starts at round ``r``
        (before the round is played, so a resumed run finds it written)."""
        events = [e for e in self._committed(g, r, decisions) if e.round == r]
        swaps = self._swap_events(g, r)
        if not events and not swaps:
            return
        path = self.layout.interventions(g)
        known = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        keys = {(k["index"], k["round"]) for k in known}
        fresh = [e.to_dict() for e in [*events, *swaps] if (e.index, e.round) not in keys]
        if fresh:
            atomic_write_text(path, "".join(json.dumps(k) + "\n" for k in known + fresh))
            for event in fresh:
                self.log(f"generation {g} round {r}: intervention {event}")

    # ----- distillation ---------------------------------------------------------------
    def _transcripts(self, g: int, current: list[Decision]) -> Callable[[int], list[Decision]]:
        """Generation -> its decisions: ``current`` for ``g``, earlier ones read from disk."""
        per_round = self.game.decisions_per_round(len(self.agents))

        def read(k: int) -> list[Decision]:
            return (
                current
                if k == g
                else read_complete_rounds(self.layout.transcripts(k), per_round)[0]
            )

        return read

    def _training_rows(self, g: int, decisions: list[Decision]) -> dict[str, TrainingRows]:
        """Each learner's rows: every LLM agent's, or the community adapter's."""
        learners = [COMMUNITY] if self._community else self.llm_agents
        read = self._transcripts(g, decisions)
        cfg = self.config
        data = {
            who: training_rows(self.game, who, g, read, cfg.distill, cfg.run.seed)
            for who in learners
        }
        for who, rows in data.items():
            if not rows.rows:
                self.log(
                    f"generation {g}: {who} had no rows to learn from "
                    f"({cfg.distill.method.value}, {cfg.distill.selection.value}); "
                    "adapter carried over unchanged"
                )
        return data

    @property
    def _community(self) -> bool:
        return self.config.distill.scope is AdapterScope.COMMUNITY

    def _distilled_dir(self, g: int, agent: str) -> Path:
        """Where distillation writes ``agent``'s adapter: its final folder, unless
        evolution makes the final one from it."""
        if self.config.evolution.active:
            return self.layout.distilled(g, agent)
        return self.layout.adapter(g, agent)

    def _community_start(self, g: int) -> Path:
        """The community adapter generation ``g`` trains from: the last generation's, or
        for generation 0 the first LLM agent's initial adapter (every initial adapter has
        a zero delta, so which one only seeds the trajectory)."""
        if g == 0:
            return self.layout.initial_adapter(self.llm_agents[0])
        return self.layout.community_adapter(g - 1)

    def _distill(self, g: int, data: dict[str, TrainingRows]) -> list[DistillOutcome]:
        if self._community:
            return self._distill_community(g, data[COMMUNITY])
        if self.config.distill.backend is DistillBackend.BATCHED:
            return self._distill_batched(g, data)
        cfg = self.config
        settings = settings_from_config(cfg.distill)
        outcomes = []
        bar = self._bar(self.llm_agents, desc=f"gen {g} distill")
        for agent in bar:
            out_dir = self._distilled_dir(g, agent)
            if adapter_is_saved(out_dir):
                outcomes.append(read_outcome(out_dir))
                continue
            outcome = distill_adapter(
                agent=agent,
                model_path=self.model_path,
                start_adapter=self.distill_starts(g)[agent],
                examples=data[agent].rows,
                out_dir=out_dir,
                settings=settings,
                seed=seeding.stream_seed(cfg.run.seed, Stream.TRAINING, g, agent) % (2**31),
            )
            if outcome.losses:
                bar.set_postfix(
                    agent=agent, loss=f"{outcome.losses[0]:.3f}->{outcome.losses[-1]:.3f}"
                )
            outcomes.append(outcome)
        return outcomes

    def _distill_community(self, g: int, rows: TrainingRows) -> list[DistillOutcome]:
        """One adapter trained on everyone's rows, then copied into every agent's folder."""
        cfg, layout = self.config, self.layout
        shared = layout.community_adapter(g)
        if not adapter_is_saved(shared):
            self.log(f"generation {g}: training the community adapter on {len(rows.rows)} rows")
            distill_adapter(
                agent=COMMUNITY,
                model_path=self.model_path,
                start_adapter=self._community_start(g),
                examples=rows.rows,
                out_dir=shared,
                settings=settings_from_config(cfg.distill),
                seed=seeding.stream_seed(cfg.run.seed, Stream.TRAINING, g, COMMUNITY) % (2**31),
            )
        trained = read_outcome(shared)
        outcomes = []
        for agent in self.llm_agents:
            if not adapter_is_saved(layout.adapter(g, agent)):
                carry_over(agent, shared, layout.adapter(g, agent))
            outcomes.append(DistillOutcome(**{**trained.to_dict(), "agent": agent}))
        return outcomes

    def _distill_batched(self, g: int, data: dict[str, TrainingRows]) -> list[DistillOutcome]:
        """All agents in one pass; agents whose adapter is already saved are kept."""
        cfg = self.config
        todo = [a for a in self.llm_agents if not adapter_is_saved(self._distilled_dir(g, a))]
        if todo:
            self.log(f"generation {g}: training {len(todo)} adapters in one batched pass")
            distill_group(
                model_path=self.model_path,
                start_adapters={a: self.distill_starts(g)[a] for a in todo},
                examples={a: data[a].rows for a in todo},
                out_dirs={a: self._distilled_dir(g, a) for a in todo},
                settings=settings_from_config(cfg.distill),
                seed=seeding.stream_seed(cfg.run.seed, Stream.TRAINING, g) % (2**31),
                label=f"generation {g}",
            )
        return [read_outcome(self._distilled_dir(g, a)) for a in self.llm_agents]

    # ----- evolution ------------------------------------------------------------------
    def _evolve(self, g: int, decisions: list[Decision]) -> dict[str, SeatPlan]:
        """Select, cross and mutate the distilled adapters into the generation's final ones."""
        cfg = self.config
        fitness = self.game.fitness(self.llm_agents, decisions)
        plans = plan_evolution(fitness, cfg.evolution, cfg.run.seed, g)
        faults.point(f"evolution: generation {g}")
        self.log(
            f"generation {g}: evolution ("
            + ", ".join(f"{a}: {'+'.join(p.operations)}" for a, p in plans.items())
            + ")"
        )
        return apply_plan(
            plans,
            distilled=lambda a: self.layout.distilled(g, a),
            out_dir=lambda a: self.layout.adapter(g, a),
            max_rank=cfg.evolution.max_rank or 4 * cfg.lora.r,
            make_fresh=self._save_fresh_adapters,
        )

    def _save_fresh_adapters(self, seeds: dict[str, tuple[int, Path]]) -> None:
        """Fresh adapters (immigrants), seeded per seat, into their folders."""
        population = PopulationModel(
            self.model_path,
            list(seeds),
            self.lora,
            init_seeds={a: seed for a, (seed, _) in seeds.items()},
            batch_size=self.config.model.batch_size,
            engine=Engine.PEFT,
        )
        for agent, (_, path) in seeds.items():
            population.save_adapter(agent, path)

    # ----- records --------------------------------------------------------------------
    def _weight_records(self, g: int) -> list[MetricRecord]:
        """Adapter delta norms, their homogenisation and their distance from generation 0."""
        if not self.llm_agents:
            return []
        return generation_weight_records(
            g,
            {a: self.layout.adapter(g, a) for a in self.llm_agents},
            {a: self.layout.adapter(0, a) for a in self.llm_agents},
        )

    def _lineage_entries(
        self,
        g: int,
        data: dict[str, TrainingRows],
        outcomes: list[DistillOutcome],
        plans: dict[str, SeatPlan],
    ) -> list[lineage.LineageEntry]:
        layout = self.layout
        rel = layout.relative
        start = self.distill_starts(g)
        swapped = self.start_adapters(g)
        entries = []

        def trained(agent, adapter, parent, outcome, rows):
            details = {"skipped_contexts": rows.skipped} if rows.skipped else {}
            if agent in self.personas:
                details["persona"] = self.personas[agent]
            if agent in swapped and parent != swapped[agent]:
                details["start_replaced_by_intervention"] = rel(swapped[agent])
            return lineage.LineageEntry(
                agent=agent,
                generation=g,
                adapter=rel(adapter),
                operations=[outcome.operation],
                parents=[rel(parent)],
                examples=outcome.examples,
                data_sha256=rows.sha256 if outcome.examples else "",
                data_generations=rows.generations if outcome.examples else [],
                training=_training_summary(outcome),
                details=details,
            )

        if self._community:
            shared = layout.community_adapter(g)
            outcome = read_outcome(shared)
            start_dir = self._community_start(g)
            entries.append(trained(COMMUNITY, shared, start_dir, outcome, data[COMMUNITY]))
            for o in outcomes:
                entries.append(
                    lineage.LineageEntry(
                        agent=o.agent,
                        generation=g,
                        adapter=rel(layout.adapter(g, o.agent)),
                        operations=["community"],
                        parents=[rel(shared)],
                    )
                )
            return entries
        for o in outcomes:
            entries.append(
                trained(o.agent, self._distilled_dir(g, o.agent), start[o.agent], o, data[o.agent])
            )
        for seat, plan in plans.items():
            entries.append(
                lineage.LineageEntry(
                    agent=seat,
                    generation=g,
                    adapter=rel(layout.adapter(g, seat)),
                    operations=list(plan.operations),
                    parents=[rel(layout.distilled(g, p)) for p in plan.parents],
                    details=plan.details,
                )
            )
        return entries


def _training_summary(outcome: DistillOutcome) -> dict:
    """The training record as lineage keeps it: losses at the ends, tokens and metrics
    (not the time, which differs between runs: it is in the folder's training.json)."""
    if not outcome.losses:
        return {}
    return {
        "loss_first": outcome.losses[0],
        "loss_last": outcome.losses[-1],
        "steps": len(outcome.losses),
        "train_tokens": outcome.train_tokens,
        **outcome.metrics,
    }


def run_experiment(
    config_path: str | Path | None,
    overrides: list[str] | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] = _stderr,
) -> RunResult:
    """Run or resume the experiment ``config_path`` with ``key=value`` overrides."""
    config = load_experiment(config_path, overrides)
    return Experiment(config, progress=progress, log=log).run()
