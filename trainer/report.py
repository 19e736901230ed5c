"""``folkways report``: plots and a summary from a run directory's records.

Everything is read from the run directory (summaries, metrics, probes), never
recomputed, so a report can be made while a run is still going (completed
generations only) or long after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from societies.records import AgentPrior
from trainer.out_dirs import check_out_dir
from trainer.person_situation import read_person_situation
from trainer.provenance import distinct_environments, environments_markdown, read_environments
from trainer.report_measures import Measures, load_measures, measures_markdown
from trainer.report_measures_plot import plot_measures
from trainer.run_dir import RunLayout, open_run_dir
from trainer.run_records import read_probes, read_summary
from trainer.summary import GenerationSummary, format_table, majority_label
from trainer.tracking import MetricRecord, read_metrics


@dataclass(frozen=True)
class Report:
    run_dir: Path
    summaries: list[GenerationSummary]
    figures: list[Path]
    measures: Measures

    def to_dict(self) -> dict:
        return {
            "run_dir": str(self.run_dir),
            "generations": [s.to_dict() for s in self.summaries],
            "measures": self.measures.to_dict(),
            "figures": [str(f) for f in self.figures],
        }


def load_summaries(run_dir: Path) -> list[GenerationSummary]:
    layout = open_run_dir(run_dir)
    return [read_summary(layout, g) for g in layout.completed_generations()]


def make_report(run_dir: Path, out_dir: Path | None = None) -> Report:
    """Write ``report.png``, ``measures.png`` and ``summary.md`` into ``out_dir`` (default:
    the run directory).

    Everything is read (and checked) before anything is written.
    """
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    summaries = load_summaries(run_dir)
    if not summaries:
        raise FileNotFoundError(
            f"{run_dir} has no completed generation yet; nothing to report "
            "(a generation is complete when generation_NNN/COMPLETE exists)"
        )
    out_dir = Path(out_dir) if out_dir else run_dir
    check_out_dir(out_dir, "expected a folder (created if missing) for report.png and summary.md")
    metrics = read_metrics(layout.metrics)
    probes = [read_probes(layout, s.generation) for s in summaries]
    measures = load_measures(
        [s.generation for s in summaries], metrics, probes, read_person_situation(run_dir)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = out_dir / "report.png"
    _plot(layout, summaries, metrics, probes, figure)
    second = plot_measures(measures, out_dir / "measures.png", run_dir.name)
    (out_dir / "summary.md").write_text(
        f"# {run_dir.name}\n\n![report](report.png)\n\n```\n{format_table(summaries)}\n```\n\n"
        + measures_markdown(measures)
        + "\n"
        + environments_markdown(distinct_environments(read_environments(layout.environment)))
    )
    return Report(run_dir, summaries, [figure, second], measures)


def _natural(option: str) -> tuple[float, str]:
    """Options in reading order: "0%" < "10%" < "100%" by value, names alphabetically."""
    try:
        return (float(option.rstrip("%")), option)
    except ValueError:
        return (float("inf"), option)


# Each game's per-round curve (Game.round_metrics): (title, y label).
ROUND_CURVES = {
    "success_rate": ("Coordination success per round", "success rate"),
    "mean_donation_fraction": ("Mean share donated per round", "share of resources given"),
    "accuracy": ("Debate: share of correct answers per round", "accuracy"),
}


def _plot(
    layout: RunLayout,
    summaries: list[GenerationSummary],
    metrics: list[MetricRecord],
    probes: list[dict[str, dict[str, AgentPrior]]],
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    first_probe = next(iter(probes[0]["after"].values()), None)
    names = sorted(first_probe.probs, key=_natural) if first_probe else []  # none: all scripted
    chance = 1 / len(names) if names else float("nan")  # uniform choice: 1/W
    curve = next(
        (n for n in ROUND_CURVES if any(m.name == n and m.round is not None for m in metrics)),
        "success_rate",
    )
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))

    # 1. success rate per round, generations side by side
    ax = axes[0]
    offset = 0
    for s in summaries:
        rounds = sorted(
            (m.round, m.value)
            for m in metrics
            if m.generation == s.generation and m.name == curve and m.round is not None
        )
        ax.plot(
            [offset + r for r, _ in rounds],
            [v for _, v in rounds],
            marker=".",
            label=f"gen {s.generation}",
        )
        offset += s.rounds
        ax.axvline(offset - 0.5, color="0.85", lw=0.8)
    if curve == "success_rate" and names:
        ax.axhline(chance, color="0.5", ls="--", lw=0.8, label=f"chance (1/{len(names)})")
    ax.set(
        title=ROUND_CURVES[curve][0],
        xlabel="round (generations in sequence)",
        ylabel=ROUND_CURVES[curve][1],
        ylim=(-0.02, 1.02),
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds: no 2.5 ticks
    ax.legend(fontsize=8)

    # 2. prior mass on the generation's majority name, before vs after distillation
    ax = axes[1]
    gens = [s.generation for s in summaries]
    for phase, colour, shift in (
        ("probe_before", "tab:gray", -0.12),
        ("probe_after", "tab:blue", 0.12),
    ):
        for s in summaries:
            values = [
                m.value
                for m in metrics
                if m.generation == s.generation
                and m.name == "prior_on_majority"
                and m.phase == phase
            ]
            ax.scatter([s.generation + shift] * len(values), values, color=colour, alpha=0.5, s=14)
    # A generation without a majority option (options tied at the top) has no prior on
    # it (NaN): no mean points, no arrow, and the tie is written where they would be.
    measured = [
        s
        for s in summaries
        if not (math.isnan(s.prior_on_majority_before) or math.isnan(s.prior_on_majority_after))
    ]
    for i, s in enumerate(measured):
        ax.annotate(
            "",
            xy=(s.generation + 0.12, s.prior_on_majority_after),
            xytext=(s.generation - 0.12, s.prior_on_majority_before),
            arrowprops={"arrowstyle": "->", "color": "tab:blue", "lw": 1.5},
        )
        ax.scatter(
            [s.generation - 0.12],
            [s.prior_on_majority_before],
            color="tab:gray",
            s=40,
            zorder=3,
            label="mean before distillation" if i == 0 else None,
        )
        ax.scatter(
            [s.generation + 0.12],
            [s.prior_on_majority_after],
            color="tab:blue",
            s=40,
            zorder=3,
            label="mean after distillation" if i == 0 else None,
        )
        ax.annotate(
            s.majority_option or "",
            (s.generation, max(s.prior_on_majority_after, s.prior_on_majority_before)),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
        )
    ax.axhline(chance, color="0.5", ls="--", lw=0.8, label="uniform prior")
    for s in summaries:
        if s.majority_tied:
            ax.annotate(
                f"{majority_label(None, s.majority_tied)}:\nno majority",
                (s.generation, chance),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                fontsize=8,
                color="tab:red",
            )
    ax.set(
        title="Empty-history prior on the majority option",
        xlabel="generation",
        ylabel="P(majority option)",
        ylim=(-0.02, 1.12),
        xticks=gens,
    )
    ax.legend(fontsize=8)

    # 3. mean prior over names after each generation's distillation
    ax = axes[2]
    grid = [
        [sum(a.probs[n] for a in p["after"].values()) / max(1, len(p["after"])) for n in names]
        for p in probes
    ]
    image = ax.imshow(grid if names else [[0.0]], aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set(
        title="Mean prior after distillation" if names else "No LLM agents: no priors",
        xlabel="option",
        ylabel="generation",
        xticks=range(len(names)),
        xticklabels=names,
        yticks=range(len(gens)),
        yticklabels=gens,
    )
    fig.colorbar(image, ax=ax, fraction=0.046)

    fig.suptitle(f"folkways run {layout.root.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
