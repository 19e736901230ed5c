"""Weights & Biases tracking (DESIGN.md, decision 8), on top of ``metrics.jsonl``.

An experiment (several seeds of one config, or a sweep) is one W&B ``group``:
``tracking.group``, which ``folkways sweep`` sets to its experiment directory's name
(default: the run's name). Each step of each generation is one W&B run of that group,
its ``job_type`` the step (:class:`JobType`: rollout, distill, probe), named
``<run>-gen003-<step>``. Every run's config is the folkways config flattened to
dotted keys (``run.seed``, ``distill.data_policy``, ...) plus ``folkways/generation``
and, when given, ``folkways/differs`` (the keys that differ between the group's runs),
so the W&B UI groups and filters by any key.

What each step logs, and its x-axis (``define_metric``; :data:`STEP_METRICS`):

- rollout: per-round metrics ``rollout/<name>`` (``rollout/<agent>/<name>``) against
  ``round`` (:meth:`WandbTracker.log_round`, :meth:`WandbTracker.log_rounds`).
- distill: each agent's training losses ``train/<agent>/loss`` against ``train_step``
  and its per-generation numbers ``distill/<agent>/<name>`` against ``generation``
  (:meth:`WandbTracker.log_distill`).
- probe: the generation's summary, per-agent priors, per-round tables and transcript,
  every key against ``generation`` (:meth:`WandbTracker.log_generation`), and each
  agent's adapter as an artifact whose metadata carries its lineage (offline mode
  cannot ``use_artifact``, so lineage lives in metadata and in ``lineage.json``).

No two globs of one run overlap: W&B gives a key the step metric of the first glob that
matches it (tried offline with wandb 0.31), so overlaps would depend on call order.
Files go to ``<run_dir>/wandb``; offline runs are uploaded later, each once, with
``folkways wandb sync RUN_DIR`` (trainer.wandb_sync).

Modes (``tracking.wandb``: disabled, offline, online, auto), the flattened config and
the artifact names: :mod:`trainer.wandb_settings`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from societies.records import Decision
from trainer.summary import GenerationSummary
from trainer.tracking import MetricRecord
from trainer.wandb_settings import (
    adapter_artifact_name,
    flatten_config,
    quiet_settings,
    resolve_mode,
)

if TYPE_CHECKING:
    from trainer.config import ExperimentConfig
    from trainer.distill_sft import DistillOutcome


class JobType(StrEnum):
    """The step of a generation a W&B run records (its ``job_type``)."""

    ROLLOUT = "rollout"  # the agents play the game
    DISTILL = "distill"  # each agent's adapter is trained on its transcript
    PROBE = "probe"  # priors measured, the generation summarised, adapters recorded


# (metric or glob, its step metric) per job type, defined in this order at init.
STEP_METRICS: dict[JobType, tuple[tuple[str, str | None], ...]] = {
    JobType.ROLLOUT: (("generation", None), ("round", None), ("rollout/*", "round")),
    JobType.DISTILL: (
        ("generation", None),
        ("train_step", None),
        ("train/*", "train_step"),
        ("distill/*", "generation"),
    ),
    JobType.PROBE: (("generation", None), ("*", "generation")),
}


def job_type_of(value: JobType | str) -> JobType:
    try:
        return JobType(value)
    except ValueError:
        accepted = ", ".join(j.value for j in JobType)
        raise ValueError(f"W&B job_type={value!r}; accepted: {accepted}") from None


class WandbTracker:
    """One step of one generation as a W&B run; a no-op when the mode is ``disabled``.

    One W&B run per (generation, step), in the experiment's group, finished before the
    step is marked complete: W&B writes asynchronously, and :meth:`finish` waits until
    the run's log is on disk, so a kill after the step's marker cannot lose its metrics
    (a kill before it re-logs the step in a new W&B run of the group).

    Args:
        mode: ``tracking.wandb`` (see :func:`trainer.wandb_settings.resolve_mode`).
        project: ``tracking.project``.
        run_name: ``run.name``; names the W&B run ``<run_name>-gen003-<job_type>``.
        run_dir: W&B files go to ``run_dir/wandb``.
        config: the run's config tree (``ExperimentConfig.to_dict()``), logged flattened.
        generation: the generation this step belongs to.
        job_type: the step: "rollout", "distill" or "probe" (the default: the
            end-of-generation logging of summary, priors and adapters).
        group: the W&B group; default ``config["tracking"]["group"]``, else ``run_name``.
        differs: the config keys that differ in the group; default
            ``config["tracking"]["differs"]``; logged as ``folkways/differs`` when set.
        part: tells apart several W&B runs of one step (e.g. the agents of one
            distillation array task, "agents-00-03"); appended to the run's name and
            logged as ``folkways/part``.

    Raises:
        ValueError: an unknown ``job_type`` (even when disabled).
    """

    def __init__(
        self,
        mode: str,
        project: str,
        run_name: str,
        run_dir: Path,
        config: Mapping[str, Any],
        generation: int = 0,
        *,
        job_type: JobType | str = JobType.PROBE,
        group: str | None = None,
        differs: Sequence[str] | None = None,
        part: str | None = None,
    ):
        self.job_type = job_type_of(job_type)
        self.run_name = run_name
        self.generation = generation
        self.mode = resolve_mode(mode)
        self.run = None
        if self.mode == "disabled":
            return
        import wandb

        tracking = config.get("tracking") or {}
        group = group or tracking.get("group") or run_name
        differs = differs if differs is not None else tracking.get("differs")
        logged: dict[str, Any] = {**flatten_config(config), "folkways/generation": generation}
        if differs:
            logged["folkways/differs"] = list(differs)
        if part:
            logged["folkways/part"] = part
        name = f"{run_name}-gen{generation:03d}-{self.job_type.value}" + (
            f"-{part}" if part else ""
        )
        (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
        settings = quiet_settings(wandb)
        if settings is not None:
            # Process-wide too: artifact uploads log through W&B's global terminal.
            wandb.setup(settings)
        self.run = wandb.init(
            project=project,
            group=group,
            job_type=self.job_type.value,
            name=name,
            dir=str(run_dir),
            config=logged,
            mode=self.mode,
            reinit="create_new",
            settings=settings,
        )
        for metric, step_metric in STEP_METRICS[self.job_type]:
            if step_metric is None:
                self.run.define_metric(metric)
            else:
                self.run.define_metric(metric, step_metric=step_metric)

    @classmethod
    def for_step(
        cls,
        cfg: ExperimentConfig,
        run_dir: Path,
        job_type: JobType | str,
        generation: int,
        *,
        part: str | None = None,
    ) -> WandbTracker:
        """The tracker of one step of ``generation``, everything else from ``cfg``."""
        return cls(
            cfg.tracking.wandb.value,
            cfg.tracking.project,
            cfg.run.name,
            run_dir,
            cfg.to_dict(),
            generation,
            job_type=job_type,
            group=cfg.tracking.group,
            differs=cfg.tracking.differs,
            part=part,
        )

    @property
    def enabled(self) -> bool:
        return self.run is not None

    def _check_step(self, method: str, *accepted: JobType) -> bool:
        """Whether to log (enabled); a method of another step is an error even when
        disabled, so a wrong call shows up in tests that do not run W&B."""
        if self.job_type not in accepted:
            steps = " or ".join(j.value for j in accepted)
            raise RuntimeError(
                f"WandbTracker.{method} logs the {steps} step; this tracker's job_type is "
                f"{self.job_type.value!r} (make one with job_type={accepted[0].value!r})"
            )
        return self.enabled

    def log_round(self, round_index: int, metrics: Mapping[str, float]) -> None:
        """Rollout step: one round's metrics as ``rollout/<key>`` against ``round``.

        Call it as each round ends (online runs show the rollout live) or afterwards;
        keys may carry an agent (``"agent_03/payoff"``).
        """
        if not self._check_step("log_round", JobType.ROLLOUT):
            return
        row: dict[str, Any] = {"round": round_index, "generation": self.generation}
        for key, value in metrics.items():
            row[f"rollout/{key}"] = value
        self.run.log(row)

    def log_rounds(self, records: Iterable[MetricRecord]) -> None:
        """Rollout step: every per-round record (``round`` set), one W&B row per round
        in round order; ``rollout/<agent>/<name>`` for an agent's. Records without a
        round (per-generation values) are left to the probe step's
        :meth:`log_generation`."""
        if not self._check_step("log_rounds", JobType.ROLLOUT):
            return
        by_round: dict[int, dict[str, float]] = {}
        for r in records:
            if r.round is not None:
                key = r.name if r.agent is None else f"{r.agent}/{r.name}"
                by_round.setdefault(r.round, {})[key] = r.value
        for round_index in sorted(by_round):
            self.log_round(round_index, by_round[round_index])

    def log_distill(self, outcome: DistillOutcome) -> None:
        """Distill step: one agent's training.

        Each logged training loss as ``train/<agent>/loss`` against ``train_step`` (the
        index of the logged loss: TRL logs every ``logging_steps`` optimiser steps, the
        batched backend every step), then one row against ``generation`` with
        ``distill/<agent>/``: examples, train_tokens, seconds, loss_first, loss_last and
        the outcome's own metrics (e.g. DPO's reward margins). The operation
        ("sft", "dpo", "carried_over") goes to the run's summary.
        """
        if not self._check_step("log_distill", JobType.DISTILL):
            return
        agent, g = outcome.agent, self.generation
        for i, loss in enumerate(outcome.losses):
            self.run.log({"train_step": i, f"train/{agent}/loss": loss, "generation": g})
        prefix = f"distill/{agent}"
        row: dict[str, Any] = {
            "generation": g,
            f"{prefix}/examples": outcome.examples,
            f"{prefix}/train_tokens": outcome.train_tokens,
            f"{prefix}/seconds": outcome.seconds,
        }
        if outcome.losses:
            row[f"{prefix}/loss_first"] = outcome.losses[0]
            row[f"{prefix}/loss_last"] = outcome.losses[-1]
        for key, value in outcome.metrics.items():
            row[f"{prefix}/{key}"] = value
        self.run.log(row)
        self.run.summary[f"{prefix}/operation"] = outcome.operation

    def log_generation(
        self,
        summary: GenerationSummary,
        records: list[MetricRecord],
        decisions: list[Decision],
    ) -> None:
        """Probe step: the generation's summary numbers, game metrics, every per-agent
        record (``agents/<agent>/<phase>/<name>``), per-round tables and the transcript."""
        if not self._check_step("log_generation", JobType.PROBE):
            return
        import wandb

        g = summary.generation
        row: dict[str, Any] = {"generation": g}
        for key in (
            "majority_share",
            "prior_on_majority_before",
            "prior_on_majority_after",
            "prior_entropy_before",
            "prior_entropy_after",
            "option_mass_mean",
        ):
            row[key] = getattr(summary, key)
        for key, value in summary.game_metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[key] = value
            elif value is None and key.endswith("_round"):  # a round never reached
                row[key] = -1
            # other values without a number (a tied majority_name) are not logged
        for r in records:
            if r.agent is not None:
                row[f"agents/{r.agent}/{r.phase}/{r.name}"] = r.value
        per_round = sorted({r.name for r in records if r.round is not None})
        for name in per_round:
            table = wandb.Table(columns=["generation", "round", name])
            for r in records:
                if r.name == name and r.round is not None:
                    table.add_data(g, r.round, r.value)
            row[f"{name}_by_round"] = table
        row["transcript"] = _transcript_table(decisions)
        self.run.log(row)

    def log_adapter(
        self, *, agent: str, generation: int, path: Path, metadata: dict[str, Any]
    ) -> None:
        """An adapter as an artifact referencing its folder in the run directory (no copy);
        from the distill step (as it is trained) or the probe step (as today).

        The artifact is named after the folkways run, not the group: the runs of a sweep
        share a group and their agents' names, and each keeps its own adapter lineage.
        """
        if not self._check_step("log_adapter", JobType.DISTILL, JobType.PROBE):
            return
        import wandb

        artifact = wandb.Artifact(
            name=adapter_artifact_name(self.run_name, agent),
            type="lora-adapter",
            metadata={"agent": agent, "generation": generation, **metadata},
        )
        artifact.add_reference(Path(path).resolve().as_uri(), name=agent)
        self.run.log_artifact(artifact, aliases=[f"generation-{generation}", "latest"])

    def finish(self, timeout: float = 120.0) -> None:
        """Finish the W&B run and wait until its log is on disk.

        ``run.finish`` returns before wandb-core has written the run's ``.wandb`` log
        (wandb 0.31: right after ``finish`` the log often holds only its 7-byte header,
        filled ~20 ms later), so wait for the exit record to be in the file: only then
        may the step be marked complete.

        Raises:
            TimeoutError: the log holds no exit record after ``timeout`` seconds (the
                step is then not marked complete, and a re-run logs it again).
        """
        if not self.enabled:
            return
        from trainer.wandb_sync import has_exit_record

        log = Path(self.run.settings.sync_file)
        self.run.finish()
        self.run = None
        deadline = time.monotonic() + timeout
        while not (log.exists() and has_exit_record(log)):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"W&B wrote no exit record to {log} within {timeout:.0f} s of finish; "
                    "its run may be incomplete (re-run to log the step again)"
                )
            time.sleep(0.02)


def _transcript_table(decisions: list[Decision]):
    import wandb

    table = wandb.Table(
        columns=[
            "generation",
            "round",
            "pair",
            "agent",
            "partner",
            "action",
            "partner_action",
            "payoff",
            "p_action",
            "option_mass",
        ]
    )
    for d in decisions:
        table.add_data(
            d.generation,
            d.round,
            d.pair,
            d.agent,
            d.partner,
            d.action,
            d.partner_action,
            d.payoff,
            d.prob_of(d.action),
            d.option_mass,
        )
    return table
