"""The generation loop's distillation and evolution steps (a mixin of
:class:`trainer.generation_loop.Experiment`): which rows each adapter learns from, the
TRL, batched and community paths, and selection/crossover/mutation after them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from societies import faults, seeding
from societies.population_spec import Engine
from societies.records import Decision
from societies.seeding import Stream
from societies.transcripts import (
    read_complete_rounds,
)
from trainer.config import (
    AdapterScope,
    DistillBackend,
)
from trainer.distill_group import distill_group
from trainer.distill_sft import (
    DistillOutcome,
    carry_over,
    distill_adapter,
    read_outcome,
    settings_from_config,
)
from trainer.evolution_step import SeatPlan, apply_plan, plan_evolution
from trainer.run_dir import (
    adapter_is_saved,
)
from trainer.training_data import COMMUNITY, TrainingRows, training_rows


class DistillSteps:
    """Distillation and evolution of :class:`Experiment` (uses its config, agents and layout)."""

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

    def _distill(
        self, g: int, data: dict[str, TrainingRows], agents: list[str] | None = None
    ) -> list[DistillOutcome]:
        """Distil ``agents`` (default: every LLM agent; the community adapter ignores it:
        one adapter serves all) and return their outcomes, in ``agents`` order."""
        if agents is None:
            agents = self.llm_agents
        unknown = sorted(set(agents) - set(self.llm_agents))
        if unknown:
            raise ValueError(
                f"agents {unknown} are not LLM agents of this run; accepted: {self.llm_agents}"
            )
        if self._community:
            return self._distill_community(g, data[COMMUNITY])
        if self.config.distill.backend is DistillBackend.BATCHED:
            return self._distill_batched(g, data, agents)
        cfg = self.config
        settings = settings_from_config(cfg.distill)
        outcomes = []
        bar = self._bar(agents, desc=f"gen {g} distill")
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

    def _distill_batched(
        self, g: int, data: dict[str, TrainingRows], agents: list[str]
    ) -> list[DistillOutcome]:
        """``agents`` in one pass (memory-budget groups); those already saved are kept.

        Every agent goes to :func:`distill_group`, the saved ones as ``done``: the groups
        are those the uninterrupted run planned (kept in the generation's
        ``distill_plans``), so a resumed pass gives the same weights bit for bit."""
        cfg = self.config
        done = [a for a in agents if adapter_is_saved(self._distilled_dir(g, a))]
        if len(done) < len(agents):
            # Agents without rows are carried over unchanged (logged with the rows).
            training = [a for a in agents if a not in done and data[a].rows]
            if training:
                self.log(
                    f"generation {g}: training {len(training)} adapters batched, in "
                    "agent groups that fit distill.memory_budget_gb"
                )
            distill_group(
                model_path=self.model_path,
                start_adapters={a: self.distill_starts(g)[a] for a in agents},
                examples={a: data[a].rows for a in agents},
                out_dirs={a: self._distilled_dir(g, a) for a in agents},
                done=done,
                plan_file=self.layout.distill_plan(g, agents),
                settings=settings_from_config(cfg.distill),
                seed=seeding.stream_seed(cfg.run.seed, Stream.TRAINING, g) % (2**31),
                label=f"generation {g}",
                make_bar=lambda **kwargs: self._bar(None, **{**kwargs, "desc": f"gen {g} distill"}),
            )
        return [read_outcome(self._distilled_dir(g, a)) for a in agents]

    def distilled_missing(self, g: int) -> list[str]:
        """LLM agents whose distilled adapter of generation ``g`` is not saved yet (the
        community adapter counts for all)."""
        if self._community:
            missing = not adapter_is_saved(self.layout.community_adapter(g))
            return list(self.llm_agents) if missing else []
        return [a for a in self.llm_agents if not adapter_is_saved(self._distilled_dir(g, a))]

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
        from societies.population import PopulationModel  # imports torch

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
