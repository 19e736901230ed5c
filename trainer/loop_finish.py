"""The generation loop's steps 5-6: evolve, probe the new adapters, write the records
and mark the generation complete (a mixin of :class:`trainer.generation_loop.Experiment`).
"""

from __future__ import annotations

import gc

from societies import faults, seeding
from societies.seeding import Stream
from trainer import lineage
from trainer.distill_sft import DistillOutcome
from trainer.drift_metrics import drift_records
from trainer.extra_probes import extra_records, measure_extras
from trainer.information_metrics import information_records
from trainer.loop_rollout import Rollout
from trainer.measure_generation import measure_generation
from trainer.run_dir import atomic_write_json, atomic_write_text
from trainer.run_records import read_probes
from trainer.summary import GenerationSummary, completion_line
from trainer.tracking import MetricRecord, rebuild_run_metrics, write_generation_metrics
from trainer.training_data import TrainingRows
from trainer.wandb_tracking import WandbTracker


class FinishSteps:
    """Evolution, the after-probe and the records of :class:`Experiment`."""

    def finish_step(
        self,
        g: int,
        rollout: Rollout,
        data: dict[str, TrainingRows],
        outcomes: list[DistillOutcome],
    ) -> GenerationSummary:
        """Evolve, probe the new adapters, write the records and mark ``g`` complete
        (steps 5-6)."""
        cfg, layout = self.config, self.layout
        decisions, before, baseline = rollout.decisions, rollout.before, rollout.baseline
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
        if after:  # a population of scripted seats only has no priors to drift
            gen0 = before if g == 0 else read_probes(layout, 0)["before"]
            # majority_option None (a tie): no on_majority records
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
        tracker = WandbTracker.for_step(cfg, layout.root, "probe", g)
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
        self.log(completion_line(summary))
        return summary
