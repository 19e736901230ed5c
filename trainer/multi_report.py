"""``folkways report RUN_DIR RUN_DIR ...``: several runs side by side, per generation.

For comparing conditions run on the same seeds (data policies, per-agent vs community
adapters, evolution on or off): each run's prior entropy, prior on its majority option
before and after distillation, drift of the priors from generation 0 (mean
Jensen–Shannon divergence, bits) and homogenisation of the adapters (mean pairwise
cosine of their deltas). Everything is read from the run directories; drift is
computed from ``probes.json``, so runs made before drift was recorded compare too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from societies.measures.drift import js_divergence
from trainer.run_dir import open_run_dir
from trainer.run_records import read_probes, read_summary
from trainer.tracking import read_metrics


@dataclass(frozen=True)
class GenerationRow:
    run: str
    generation: int
    majority_option: str | None
    majority_share: float
    prior_on_majority_before: float
    prior_on_majority_after: float
    prior_entropy_after: float
    js_from_gen0_bits: float
    adapter_pairwise_cosine: float | None


@dataclass(frozen=True)
class Comparison:
    rows: list[GenerationRow]
    figures: list[Path]

    def to_dict(self) -> dict:
        return {"rows": [asdict(r) for r in self.rows], "figures": [str(f) for f in self.figures]}


def comparison_rows(run_dir: Path) -> list[GenerationRow]:
    """One row per completed generation of ``run_dir``."""
    layout = open_run_dir(run_dir)
    done = layout.completed_generations()
    if not done:
        raise FileNotFoundError(f"{run_dir} has no completed generation yet; nothing to compare")
    gen0 = read_probes(layout, 0)["before"]
    cosines = {
        r.generation: r.value
        for r in read_metrics(layout.metrics)
        if r.name == "adapter_pairwise_cosine" and r.agent is None
    }
    rows = []
    for g in done:
        s = read_summary(layout, g)
        after = read_probes(layout, g)["after"]
        js = [js_divergence(p.probs, gen0[a].probs) for a, p in after.items() if a in gen0]
        rows.append(
            GenerationRow(
                run=layout.root.name,
                generation=g,
                majority_option=s.majority_option,
                majority_share=s.majority_share,
                prior_on_majority_before=s.prior_on_majority_before,
                prior_on_majority_after=s.prior_on_majority_after,
                prior_entropy_after=s.prior_entropy_after,
                js_from_gen0_bits=sum(js) / len(js) if js else float("nan"),
                adapter_pairwise_cosine=cosines.get(g),
            )
        )
    return rows


def compare_runs(run_dirs: list[Path], out_dir: Path) -> Comparison:
    """Write ``comparison.png`` and ``comparison.md`` into ``out_dir``; every run is read
    (and checked) before anything is written."""
    names = [Path(r).name for r in run_dirs]
    if len(set(names)) != len(names):
        raise ValueError(f"run directories {names} share a name; give runs distinct names")
    rows = [row for r in run_dirs for row in comparison_rows(Path(r))]
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; expected a folder (created if missing)")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "comparison.md").write_text(format_rows(rows))
    figure = _plot(rows, out_dir / "comparison.png")
    return Comparison(rows, [figure])


def format_rows(rows: list[GenerationRow]) -> str:
    def num(x):
        return "—" if x is None else f"{x:.3f}"

    lines = [
        "| run | gen | majority (share) | prior on majority before → after | prior entropy after (bits) | JS from gen 0 (bits) | adapter cosine |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.run} | {r.generation} | {r.majority_option} ({r.majority_share:.0%}) | "
            f"{r.prior_on_majority_before:.3f} → {r.prior_on_majority_after:.3f} | "
            f"{r.prior_entropy_after:.3f} | {r.js_from_gen0_bits:.3f} | "
            f"{num(r.adapter_pairwise_cosine)} |"
        )
    return "\n".join(lines) + "\n"


def _plot(rows: list[GenerationRow], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [
        ("prior_entropy_after", "prior entropy after (bits)"),
        ("prior_on_majority_after", "prior on the majority option, after"),
        ("js_from_gen0_bits", "drift: mean JS from generation 0 (bits)"),
        ("adapter_pairwise_cosine", "adapter delta cosine (homogenisation)"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4))
    runs = list(dict.fromkeys(r.run for r in rows))
    for ax, (field, title) in zip(axes, panels, strict=True):
        for run in runs:
            mine = [r for r in rows if r.run == run and getattr(r, field) is not None]
            ax.plot(
                [r.generation for r in mine],
                [getattr(r, field) for r in mine],
                marker="o",
                markersize=7 - 2 * runs.index(run) % 6,  # identical curves stay visible
                label=run,
            )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("generation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
