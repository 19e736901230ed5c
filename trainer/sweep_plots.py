"""The figures of ``folkways sweep``: consensus, collective bias, tipping point.

Drawn from a :class:`~trainer.sweep_aggregates.SweepAggregate` only (never from run
directories), with matplotlib's Agg backend: files, no display.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from trainer.sweep_aggregates import SweepAggregate, point_label
from trainer.sweep_stats import logistic


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def _panels(plt, count: int, width: float = 4.6, height: float = 3.6):
    cols = min(count, 3)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def write_figures(agg: SweepAggregate, out_dir: Path) -> list[Path]:
    """``consensus.png`` (when the game reports convergence), ``bias.png`` (when its
    agents choose among options: not for debate), and ``tipping.png`` (when the sweep has
    a tipping key); returns the paths written."""
    written = []
    if any(row.consensus for row in agg.rows):
        written.append(plot_consensus(agg, Path(out_dir) / "consensus.png"))
    if any(not row.bias.not_applicable for row in agg.rows):
        written.append(plot_bias(agg, Path(out_dir) / "bias.png"))
    if agg.tipping:
        written.append(plot_tipping(agg, Path(out_dir) / "tipping.png"))
    return written


def _points(agg: SweepAggregate) -> list[str]:
    return list(dict.fromkeys(point_label(row.point) for row in agg.rows))


def plot_consensus(agg: SweepAggregate, path: Path) -> Path:
    """Top: share of seeds converged per grid point and generation. Bottom: each seed's
    convergence round, with the median and quartiles over converged seeds."""
    plt = _pyplot()
    points = _points(agg)
    generations = sorted({row.generation for row in agg.rows})
    width = 0.8 / len(generations)
    # two rows, so that many grid points widen the figure only up to a readable size
    fig, (left, right) = plt.subplots(2, 1, figsize=(min(16, max(6, 1.1 * len(points) + 3)), 8))
    for k, gen in enumerate(generations):
        offset = (k - (len(generations) - 1) / 2) * width
        rows = [r for r in agg.rows if r.generation == gen and r.consensus]
        x = np.array([points.index(point_label(r.point)) for r in rows], dtype=float)
        left.bar(x + offset, [r.consensus.converged_share for r in rows], width, label=f"gen {gen}")
        for xi, r in zip(x, rows, strict=True):
            done = [v for v in r.consensus.convergence_rounds if v is not None]
            right.scatter([xi + offset] * len(done), done, color=f"C{k}", alpha=0.4, s=14)
            if r.consensus.quartiles:
                q1, median, q3 = r.consensus.quartiles
                right.errorbar(
                    xi + offset,
                    median,
                    yerr=[[median - q1], [q3 - median]],
                    color=f"C{k}",
                    marker="o",
                    capsize=3,
                    label=f"gen {gen}" if xi == x[0] else None,
                )
    for ax in (left, right):
        ax.set_xticks(range(len(points)), points, rotation=20, ha="right", fontsize=8)
    left.set(
        title="Seeds converged (3N successes in a row)", ylabel="share of seeds", ylim=(0, 1.05)
    )
    right.set(title="Convergence round (converged seeds)", ylabel="round")
    left.legend(fontsize=8)
    if right.get_legend_handles_labels()[0]:
        right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bias(agg: SweepAggregate, path: Path) -> Path:
    """Per grid point, the last generation: winners' shares (over the seeds with a sole
    winner) vs the generation-0 individual prior, the uniform expectation dashed; seeds
    tied at the top or without choices are counted in the title, apart."""
    plt = _pyplot()
    last = {}
    for row in agg.rows:  # rows are in generation order within a point
        if not row.bias.not_applicable:
            last[point_label(row.point)] = row
    fig, axes = _panels(
        plt, len(last), width=max(4.6, 0.5 * max(len(r.bias.uniform) for r in last.values()))
    )
    for ax, (label, row) in zip(axes, last.items(), strict=True):
        b = row.bias
        apart = []
        if b.ties:
            kinds = "; ".join(dict.fromkeys("=".join(t) for t in b.ties))
            apart.append(f"{len(b.ties)} tied ({kinds})")
        if b.no_winner:
            apart.append(f"{b.no_winner} without choices")
        counted = f"{sum(b.winners.values())} with a winner" + (
            f", {', '.join(apart)}: not counted" if apart else ""
        )
        names = list(b.winner_share)
        if not names:  # no seed had a sole winner: nothing to draw but the reason
            ax.text(0.5, 0.5, "no sole winner:\n" + counted, ha="center", va="center")
            ax.axis("off")
            ax.set_title(f"{label}\ngen {row.generation}, {len(row.seeds)} seeds")
            ax.title.set_fontsize(9)
            continue
        x = np.arange(len(names))
        ax.bar(x - 0.2, [b.winner_share[o] for o in names], 0.4, label="collective: winners")
        if b.individual_prior:
            ax.bar(
                x + 0.2,
                [b.individual_prior.get(o, 0) for o in names],
                0.4,
                color="tab:gray",
                label="individual: gen-0 prior",
            )
        if b.uniform:
            ax.step(
                np.append(x - 0.5, x[-1] + 0.5),
                [*(b.uniform.get(o, 0) for o in names), b.uniform.get(names[-1], 0)],
                where="post",
                color="0.3",
                ls="--",
                lw=0.8,
                label="uniform",
            )
        test = b.vs_uniform
        p = f"p={test.p_value:.2g} (MC {test.p_value_monte_carlo:.2g})" if test else "no test"
        ax.set_xticks(x, names)
        ax.set(
            title=f"{label}\ngen {row.generation}, {len(row.seeds)} seeds ({counted})\n"
            f"vs uniform {p}",
            ylabel="share",
            ylim=(0, 1.05),
        )
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    fig.suptitle("Collective bias: winning option across seeds\nvs the individual prior")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_tipping(agg: SweepAggregate, path: Path) -> Path:
    """Per value of the other grid keys: share of seeds flipped to the committed option
    per fraction (dot area ∝ seeds), the fitted logistic and f_c with its interval, one
    colour per generation."""
    plt = _pyplot()
    groups: dict[str, list] = {}
    for curve in agg.tipping:
        groups.setdefault(point_label(curve.fixed), []).append(curve)
    fig, axes = _panels(plt, len(groups))
    for ax, (label, curves) in zip(axes, groups.items(), strict=True):
        for k, curve in enumerate(sorted(curves, key=lambda c: c.generation)):
            fit, colour = curve.fit, f"C{k}"
            f = np.array(fit.fractions)
            n = np.array(fit.seeds)
            ax.scatter(f, np.array(fit.flipped) / n, s=12 + 8 * n, color=colour, alpha=0.6)
            if fit.critical_fraction is None:
                ax.plot([], [], color=colour, label=f"gen {curve.generation}: {fit.note[:40]}")
                continue
            xs = np.linspace(f.min(), f.max(), 200)
            ax.plot(
                xs,
                logistic(xs, fit.critical_fraction, fit.scale),
                color=colour,
                label=f"gen {curve.generation}: f_c={fit.critical_fraction:.3f}",
            )
            ax.axvline(fit.critical_fraction, color=colour, ls=":", lw=1)
            low, high = fit.interval or (None, None)
            ax.axvspan(
                f.min() if low is None else low,
                f.max() if high is None else high,
                color=colour,
                alpha=0.12,
            )
        ax.set(
            title=label, xlabel=agg.tipping_key, ylabel="share of seeds flipped", ylim=(-0.05, 1.05)
        )
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    fig.suptitle("Tipping point: committed minority vs\nthe population's final convention")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
