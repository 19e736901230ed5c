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

Steps 1-3 live in :mod:`trainer.loop_rollout`, step 4 in :mod:`trainer.loop_distill`,
steps 5-6 in :mod:`trainer.loop_finish` (mixins of :class:`Experiment`); this module
holds the run's set-up and the order of the steps.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from societies import seeding
from societies.atomic import remove_stale_temporaries
from societies.games.protocol import seats
from societies.lora_targets import check_target_modules
from societies.model_store import resolve_model
from societies.population_spec import Engine, LoraSpec, agent_names
from societies.probes import probe_orders
from societies.records import Decision
from societies.seeding import Stream
from societies.vllm_engine import (
    DEFAULT_GPU_MEMORY_UTILIZATION,
    VllmEngine,
    VllmNotInstalled,
    VllmPopulation,
    import_vllm,
)
from trainer import lineage
from trainer.config import (
    ConfigError,
    ExperimentConfig,
    load_experiment,
)
from trainer.distill_sft import DistillOutcome
from trainer.games import build_game
from trainer.loop_distill import DistillSteps
from trainer.loop_finish import FinishSteps
from trainer.loop_interventions import InterventionSteps
from trainer.loop_records import RecordSteps
from trainer.loop_rollout import RolloutSteps
from trainer.provenance import record_environment
from trainer.run_config_check import check_or_write_config, overrides_to_resume_in_place
from trainer.run_dir import (
    RunLayout,
    adapter_is_saved,
    atomic_write_json,
    open_run_dir,
)
from trainer.run_records import read_summary
from trainer.summary import GenerationSummary
from trainer.tracking import rebuild_run_metrics
from trainer.training_data import TrainingRows
from trainer.wandb_settings import check_online_credentials, resolve_mode
from trainer.wandb_tracking import WandbTracker

if TYPE_CHECKING:  # the model (torch) is imported where a population is built
    from societies.population import PopulationModel


def _stderr(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


@dataclass
class RunResult:
    run_dir: Path
    summaries: list[GenerationSummary]
    skipped: list[int]  # generations found complete and not recomputed


class Experiment(RolloutSteps, InterventionSteps, DistillSteps, FinishSteps, RecordSteps):
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
        self.agents = agent_names(config.population.size)
        self.graph = config.network.graph(self.agents, seed)
        self.game = build_game(config.game, seed, self.graph)  # checks pairs fit the graph
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

    def population(self, adapter_dirs: dict[str, Path]) -> PopulationModel | VllmPopulation | None:
        """The run's population model with the given adapter folders (None: all scripted).

        With ``model.engine=vllm`` a view of the run's one vLLM engine, built on first use
        and kept for every later call (building it takes tens of seconds and its GPU
        memory stays reserved; torch distillation runs beside it).
        """
        if not self.llm_agents:
            return None
        cfg = self.config
        if cfg.model.engine is Engine.VLLM:
            # Set here on first use (not in __init__): commands that never roll out, and
            # the torch engines, never build it.
            if getattr(self, "_vllm_engine", None) is None:
                evo, r = cfg.evolution, cfg.lora.r
                # cat crossovers widen adapters, truncated to evolution.max_rank
                rank = max(r, evo.max_rank or 4 * r) if evo.active and evo.crossover else r
                on_gpu = cfg.model.vllm_max_loras or len(self.llm_agents)
                share = cfg.model.vllm_gpu_memory_utilization
                try:
                    self._vllm_engine = VllmEngine(
                        self.model_path,
                        max_loras=on_gpu,
                        max_cpu_loras=max(on_gpu, len(self.llm_agents)),
                        lora_rank=rank,
                        seed=cfg.run.seed,
                        gpu_memory_utilization=share or DEFAULT_GPU_MEMORY_UTILIZATION,
                    )
                except VllmNotInstalled as err:  # `folkways probe` etc.: one error line
                    raise ConfigError(f"model.engine=vllm: {err}") from None
            return self._vllm_engine.population(
                self.llm_agents, adapter_dirs, batch_size=cfg.model.batch_size
            )
        from societies.population import PopulationModel

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
        self.prepare()
        total = self.config.run.generations
        skipped = [g for g in range(total) if self.layout.is_complete(g)]
        if len(skipped) == total:
            self.log(
                f"run {self.layout.root} is already complete ({total} generations); nothing to do"
            )
        elif skipped:
            self.log(f"resuming {self.layout.root}: generations {skipped} are complete and kept")
        self.set_threads()
        self.ensure_initial_adapters()
        pending = [g for g in range(total) if not self.layout.is_complete(g)]
        for g in pending:
            self.run_generation(g)
            # After the work, so a command refused for bad input records nothing.
            record_environment(self.layout.environment, f"run generation {g}")
        rebuild_run_metrics(self.layout)  # a kill may have come after COMPLETE, before it
        summaries = [read_summary(self.layout, g) for g in range(total)]
        return RunResult(self.layout.root, summaries, skipped)

    def prepare(self) -> None:
        """Write what the run directory holds before any work, without loading a model.

        Checks the model and LoRA targets, clears temporaries a killed write left,
        writes (or checks against) ``config.yaml`` and writes ``graph.json``. Idempotent:
        every step (``folkways step``) and every Slurm submission calls it.
        """
        self.check_before_start()
        if self.layout.root.is_dir():
            for path in remove_stale_temporaries(self.layout.root):
                self.log(f"removed {path.relative_to(self.layout.root)}, left by a killed write")
        check_or_write_config(self.layout, self.config.to_dict(), log=self.log)
        atomic_write_json(self.layout.graph, self.graph.to_node_link())

    def set_threads(self) -> None:
        """Apply ``model.threads`` to torch (null: torch's own choice)."""
        if self.config.model.threads:
            import torch

            torch.set_num_threads(self.config.model.threads)

    def check_before_start(self) -> None:
        """Check what config validation cannot, before the run directory is written.

        The model must resolve and every ``lora.target_modules`` name must match one of
        its linear layers; with ``model.engine=vllm``, vllm must be importable. A mistake
        here then leaves nothing behind that would block the corrected command. A
        population of scripted seats only loads no model. ``tracking.wandb=online``
        needs W&B credentials (wandb would refuse only at the first tracked step).
        """
        check_online_credentials(resolve_mode(self.config.tracking.wandb.value))
        if not self.llm_agents:
            return
        if self.config.model.engine is Engine.VLLM:
            try:
                import_vllm()  # the real import, so a broken install fails here too
            except VllmNotInstalled as err:
                raise ConfigError(f"model.engine=vllm: {err}") from None
        # self.model_path resolves the model first: a bad path fails here too.
        check_target_modules(self.model_path, self.config.lora.target_modules)

    def ensure_initial_adapters(self) -> None:
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
            from societies.population import PopulationModel

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
        """The generation's three steps in one process (``folkways step`` runs them apart)."""
        rollout = self.rollout_step(g)
        data, outcomes = self.distill_step(g, rollout.decisions)
        return self.finish_step(g, rollout, data, outcomes)

    def distill_step(
        self,
        g: int,
        decisions: list[Decision],
        agents: list[str] | None = None,
        *,
        track: bool = True,
    ) -> tuple[dict[str, TrainingRows], list[DistillOutcome]]:
        """Each learner's training rows, and the distillation of ``agents`` (default:
        all LLM agents) into their adapters (step 4). Saved adapters are kept.

        ``track``: log the outcomes as the distill step's W&B run (the probe step, which
        only reads them back, does not)."""
        d = self.config.distill
        if track:
            self.log(
                f"generation {g}: distillation ({d.method.value}, {d.selection.value}, "
                f"{d.scope.value}, data {d.data_policy.value})"
            )
        data = self._training_rows(g, decisions)
        outcomes = self._distill(g, data, agents)
        if track:
            part = f"agents-{agents[0]}-{agents[-1]}" if agents else None
            tracker = WandbTracker.for_step(self.config, self.layout.root, "distill", g, part=part)
            try:
                for outcome in outcomes:
                    tracker.log_distill(outcome)
            finally:
                tracker.finish()
        return data, outcomes


def run_experiment(
    config_path: str | Path | None,
    overrides: list[str] | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] = _stderr,
) -> RunResult:
    """Run or resume the experiment ``config_path`` with ``key=value`` overrides
    (a run directory's ``config.yaml`` resumes that directory, wherever it is)."""
    if config_path is not None:
        overrides = overrides_to_resume_in_place(config_path, list(overrides or []))
    config = load_experiment(config_path, overrides)
    return Experiment(config, progress=progress, log=log).run()
