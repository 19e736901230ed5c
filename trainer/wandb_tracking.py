"""Weights & Biases tracking (DESIGN.md, decision 8), on top of ``metrics.jsonl``.

One W&B run per ``folkways run`` invocation: ``group`` = run name (a resumed run adds
a run to the same group), ``job_type`` = "generations", ``generation`` as the step
metric. Per generation it logs the summary numbers, per-agent priors, the transcript
as a table, and each agent's adapter as an artifact whose metadata carries its
lineage (offline mode cannot ``use_artifact``, so lineage lives in metadata and in
``lineage.json``). Files go to ``<run_dir>/wandb``; offline runs are uploaded later
with ``wandb sync <run_dir>/wandb/offline-run-*``.

Modes: ``disabled`` (default; nothing imported), ``offline``, ``online``, and
``auto`` = online when credentials exist (``WANDB_API_KEY`` or a netrc entry), else offline;
``auto`` follows ``WANDB_MODE=offline``/``disabled`` when it is set, so a key in the
environment never turns a run its user made offline into an upload. The key itself is
left to wandb, which reads it from the environment: folkways never passes or writes it.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from societies.records import Decision
from trainer.summary import GenerationSummary
from trainer.tracking import MetricRecord


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    """``auto`` -> ``WANDB_MODE`` if it says offline/disabled, else ``online`` with
    credentials, else ``offline``; other modes unchanged."""
    if mode == "auto":
        # Our explicit mode= overrides WANDB_MODE inside wandb.init, so honour it here.
        env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
        if env_mode in ("offline", "dryrun"):
            return "offline"
        if env_mode == "disabled":
            return "disabled"
        return "online" if has_wandb_credentials() else "offline"
    if mode not in ("disabled", "offline", "online"):
        raise ValueError(f"tracking.wandb={mode!r}; accepted: disabled, offline, online, auto")
    return mode


class WandbTracker:
    """Logs one generation of a run to W&B; a no-op when the mode is ``disabled``.

    One W&B run per generation (grouped by the folkways run's name), finished before
    the generation is marked complete: W&B writes asynchronously, and only ``finish``
    waits until everything logged is on disk, so a kill after COMPLETE cannot lose a
    generation's metrics (a kill before it re-logs the generation in a new W&B run).
    """

    def __init__(
        self,
        mode: str,
        project: str,
        run_name: str,
        run_dir: Path,
        config: dict[str, Any],
        generation: int = 0,
    ):
        self.mode = resolve_mode(mode)
        self.run = None
        if self.mode == "disabled":
            return
        import wandb

        (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project,
            group=run_name,
            job_type="generation",
            name=f"{run_name}-gen{generation:03d}",
            dir=str(run_dir),
            config=config,
            mode=self.mode,
            reinit="create_new",
        )
        self.run.define_metric("generation")
        self.run.define_metric("*", step_metric="generation")

    @property
    def enabled(self) -> bool:
        return self.run is not None

    def log_generation(
        self,
        summary: GenerationSummary,
        records: list[MetricRecord],
        decisions: list[Decision],
    ) -> None:
        if not self.enabled:
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
            elif value is None:  # e.g. a convergence round never reached
                row[key] = -1
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
        """An adapter as an artifact referencing its folder in the run directory (no copy)."""
        if not self.enabled:
            return
        import wandb

        artifact = wandb.Artifact(
            name=f"{self.run.group}-{agent}",
            type="lora-adapter",
            metadata={"agent": agent, "generation": generation, **metadata},
        )
        artifact.add_reference(Path(path).resolve().as_uri(), name=agent)
        self.run.log_artifact(artifact, aliases=[f"generation-{generation}", "latest"])

    def finish(self) -> None:
        if self.enabled:
            self.run.finish()
            self.run = None


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
