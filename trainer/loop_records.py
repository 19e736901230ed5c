"""The generation loop's records of adapters: lineage entries and weight-space metrics
(a mixin of :class:`trainer.generation_loop.Experiment`)."""

from __future__ import annotations

from trainer import lineage
from trainer.distill_sft import (
    DistillOutcome,
    read_outcome,
)
from trainer.evolution_step import SeatPlan
from trainer.tracking import MetricRecord
from trainer.training_data import COMMUNITY, TrainingRows


class RecordSteps:
    """Lineage and weight records of :class:`Experiment`."""

    # ----- records --------------------------------------------------------------------
    def _weight_records(self, g: int) -> list[MetricRecord]:
        """Adapter delta norms, their homogenisation and their distance from generation 0."""
        if not self.llm_agents:
            return []
        from trainer.weight_metrics import generation_weight_records  # imports torch

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
