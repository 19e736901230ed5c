"""``measures.png``: the four panels of :mod:`trainer.report_measures`.

(a) prior drift per agent, (b) influence graph, (c) person/situation shares, (d) trait
trajectories. A panel without data keeps its title and says what is missing and how to
produce it, so the figure always has the same layout.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from trainer.report_measures import (
    HOW_TO_ENABLE_TRAITS,
    HOW_TO_MAKE_SHARES,
    DriftTable,
    InfluenceMatrix,
    Measures,
    ShareRow,
    TraitPoint,
)

# The "start" (generation 0's starting adapters) sits left of generation 0 on the x axis
# of (a) and (d).
START_X = -1
# Up to this many agents get their own legend entry in (a); more would hide the plot.
LEGEND_AGENTS = 8


def plot_measures(measures: Measures, path: Path, title: str) -> Path:
    """Draw the four panels into ``path`` (PNG)."""
    fig = measures_figure(measures, title)
    import matplotlib.pyplot as plt  # after measures_figure chose the file-only backend

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def measures_figure(measures: Measures, title: str):
    """The figure, open (the caller closes it); axes in reading order (a)..(d), then the
    influence colour bar when there is one."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 10.5))
    _drift(axes[0, 0], measures.drift)
    _influence(fig, axes[0, 1], measures.influence)
    _shares(axes[1, 0], measures.shares)
    _traits(axes[1, 1], measures.traits)
    fig.suptitle(f"What changed in the agents: run {title}", fontsize=13)
    fig.tight_layout(h_pad=2.5, w_pad=2.5)
    return fig


def _missing(ax, title: str, *paragraphs: str) -> None:
    """An empty panel: its title and, in a box, what is missing and how to produce it
    (a command or setting given as its own paragraph stays on one line)."""
    ax.set_title(title)
    text = "\n".join(
        textwrap.fill(p, 48, break_on_hyphens=False, break_long_words=False) for p in paragraphs
    )
    ax.text(
        0.5,
        0.5,
        text,
        ha="center",
        va="center",
        fontsize=10,
        color="0.3",
        transform=ax.transAxes,
        bbox={"boxstyle": "round,pad=0.6", "fc": "0.96", "ec": "0.8"},
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _generation_ticks(ax, generations) -> None:
    ax.set_xticks([START_X, *generations], ["start", *map(str, generations)])
    ax.set_xlim(START_X - 0.3, max(generations, default=0) + 0.3)


def _drift(ax, drift: DriftTable | None) -> None:
    title = "(a) Prior drift from generation 0, per agent"
    if drift is None:
        _missing(
            ax,
            title,
            "No priors to compare: the run has no LLM agent, or generation 0 is not complete yet.",
        )
        return
    import matplotlib.pyplot as plt

    xs = [START_X, *drift.generations]
    colours = plt.get_cmap("tab10" if len(drift.agents) <= 10 else "tab20")
    for i, (agent, row) in enumerate(zip(drift.agents, drift.js_bits, strict=True)):
        ys = [0.0, *(math.nan if v is None else v for v in row)]  # JS from itself: 0
        ax.plot(
            xs,
            ys,
            marker=".",
            lw=1,
            alpha=0.75,
            color=colours(i % colours.N),
            label=agent if len(drift.agents) <= LEGEND_AGENTS else None,
        )
    mean = [0.0, *(math.nan if v is None else v for v in drift.population_mean())]
    ax.plot(xs, mean, marker="o", lw=2.8, color="black", label="population mean", zorder=3)
    if len(drift.agents) > LEGEND_AGENTS:
        ax.plot([], [], color="0.5", lw=1, label=f"agents (n={len(drift.agents)})")
    top = max((v for row in drift.js_bits for v in row if v is not None), default=0.0)
    ax.set_ylim(0, 1.25 * top if top > 0 else 0.01)  # zoomed: early drifts are small
    _generation_ticks(ax, drift.generations)
    ax.set(
        title=title,
        xlabel="after distillation of generation",
        ylabel="JS divergence from own gen-0 prior (bits)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="upper left")


def _influence(fig, ax, influence: InfluenceMatrix | None) -> None:
    title = "(b) Influence graph: transfer entropy between agents"
    if influence is None or not influence.edges():
        _missing(
            ax,
            title,
            "No transfer-entropy records in metrics.jsonl: a run from before they were "
            "recorded, or too few decisions per pair of agents.",
        )
        return
    import matplotlib.pyplot as plt
    import networkx as nx
    from matplotlib.colors import Normalize

    edges = influence.edges()
    top = max(bits for _, _, bits in edges) or 1.0  # all zero: draw them thin and pale
    graph = nx.DiGraph()
    graph.add_nodes_from(influence.agents)
    graph.add_weighted_edges_from(edges)
    pos = nx.circular_layout(graph)
    cmap = plt.get_cmap("viridis_r")
    norm = Normalize(0.0, top)
    node_size = 1500
    nx.draw_networkx_nodes(
        graph, pos, ax=ax, node_size=node_size, node_color="white", edgecolors="0.25"
    )
    nx.draw_networkx_labels(
        graph, pos, ax=ax, labels={a: a.replace("_", "\n") for a in graph}, font_size=8
    )
    nx.draw_networkx_edges(
        graph,
        pos,
        ax=ax,
        edgelist=[(s, t) for s, t, _ in edges],
        width=[0.6 + 4.4 * bits / top for _, _, bits in edges],
        edge_color=[cmap(norm(bits)) for _, _, bits in edges],
        alpha=[0.25 + 0.75 * bits / top for _, _, bits in edges],
        arrows=True,
        arrowstyle="-|>",
        arrowsize=14,
        node_size=node_size,
        connectionstyle="arc3,rad=0.12",  # A->B and B->A side by side, not on top
    )
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.046)
    bar.set_label("T(source → target) (bits)")
    ax.set_title(f"{title}\n(generation {influence.generation}; arrow: source → target)")
    ax.set_axis_off()
    ax.margins(0.12)


def _shares(ax, shares: tuple[ShareRow, ...]) -> None:
    title = "(c) Person vs situation: variance of P(majority option)"
    if not shares:
        _missing(
            ax,
            title,
            "Not measured for this run. Run",
            HOW_TO_MAKE_SHARES,
            "(it writes person_situation.json into the run directory), then report again.",
        )
        return
    parts = (
        ("share_agent", "agent (person: adapter)", "tab:blue"),
        ("share_context", "context (situation)", "tab:orange"),
        ("share_interaction", "agent × context (interaction)", "0.65"),
    )
    xs = [s.generation for s in shares]
    bottom = [0.0] * len(shares)
    for field, label, colour in parts:
        values = [getattr(s, field) for s in shares]
        heights = [0.0 if math.isnan(v) else v for v in values]
        ax.bar(xs, heights, bottom=bottom, width=0.6, color=colour, label=label)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    for s in shares:
        note = "no variance" if math.isnan(s.share_agent) else f"{s.option!r}"
        ax.annotate(
            f"{note}\n{s.agents}×{s.contexts}",
            (s.generation, 1.0 if not math.isnan(s.share_agent) else 0.0),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(xs)
    ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
    ax.set_ylim(0, 1.42)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set(
        title=title,
        xlabel="generation (adapters after its distillation)",
        ylabel="share of variance (sums to 1)",
    )
    ax.legend(
        fontsize=8,
        loc="upper center",
        ncol=2,
        title="above each bar: majority option; agents × contexts",
        title_fontsize=8,
    )


def _traits(ax, traits: tuple[TraitPoint, ...]) -> None:
    title = "(d) Big-Five trait trajectories (population mean ± std)"
    if not traits:
        _missing(
            ax,
            title,
            "The run did not ask the Big-Five questionnaire. To measure traits after "
            "every generation, set",
            HOW_TO_ENABLE_TRAITS,
            "in the config or as a key=value override.",
        )
        return
    names = sorted({t for p in traits for t in p.means})
    generations = sorted({p.generation for p in traits if p.stage == "after"})
    for i, trait in enumerate(names):
        shift = (i - (len(names) - 1) / 2) * 0.06  # error bars side by side
        points = [p for p in traits if trait in p.means]
        xs = [(START_X if p.stage == "start" else p.generation) + shift for p in points]
        ax.errorbar(
            xs,
            [p.means[trait] for p in points],
            yerr=[p.stds.get(trait, 0.0) for p in points],
            marker="o",
            markersize=4,
            capsize=3,
            lw=1.5,
            label=trait.replace("_", " "),
        )
    _generation_ticks(ax, generations)
    ax.set_ylim(0.8, 5.9)
    ax.set_yticks([1, 2, 3, 4, 5])
    ax.set(
        title=title,
        xlabel="after distillation of generation",
        ylabel="trait score (IPIP Likert, 1..5)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=3, loc="upper center")
