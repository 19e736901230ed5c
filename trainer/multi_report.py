"""``folkways report RUN_DIR RUN_DIR ...``: several runs side by side, per generation.

For comparing conditions run on the same seeds (data policies, per-agent vs community
adapters, evolution on or off): each run's prior entropy, prior on its majority option
before and after distillation, drift of the priors from generation 0 (mean
Jensen–Shannon divergence, bits) and homogenisation of the adapters (mean pairwise
cosine of their deltas). Everything is read from the run directories; drift is
computed from ``probes.json``, so runs made before drift was recorded compare too.

Each run's curves are labelled by what sets it apart: the keys of its resolved
``config.yaml`` (flattened to dotted names, e.g. ``distill.data_policy``) whose values
differ between the runs, ``run.name`` and ``run.output_dir`` aside. Runs whose configs
do not differ are labelled by their directory name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from societies.measures.drift import js_divergence
from trainer.out_dirs import check_out_dir
from trainer.run_dir import open_run_dir
from trainer.run_records import read_probes, read_summary
from trainer.summary import majority_label
from trainer.tracking import read_metrics


@dataclass(frozen=True)
class GenerationRow:
    """One run's generation. ``majority_tied``: the options tied at the top (the
    summary's); then ``majority_option`` is None and the priors on it are NaN."""

    run: str
    generation: int
    majority_option: str | None
    majority_share: float
    prior_on_majority_before: float
    prior_on_majority_after: float
    prior_entropy_after: float
    js_from_gen0_bits: float
    adapter_pairwise_cosine: float | None
    majority_tied: tuple[str, ...] = ()


# Keys every run has its own value for whatever the experiment: not what sets it apart.
IGNORED_KEYS = frozenset({"run.name", "run.output_dir"})
UNSET = "(unset)"  # the key is not in that run's config (e.g. written by an older folkways)


@dataclass(frozen=True)
class Comparison:
    """Rows of every run, and how the runs differ.

    Attributes:
        rows: one per (run, completed generation); ``run`` is the directory name.
        figures: written figures.
        differing: config key -> {run: value} for the keys whose values differ.
        label_keys: the differing keys the labels name (:func:`label_keys`).
        labels: run -> its label in the figure (:func:`run_labels`).
    """

    rows: list[GenerationRow]
    figures: list[Path]
    differing: dict[str, dict[str, Any]]
    label_keys: list[str]
    labels: dict[str, str]

    def to_dict(self) -> dict:
        return {
            "rows": [asdict(r) for r in self.rows],
            "differing_keys": self.differing,
            "label_keys": self.label_keys,
            "labels": self.labels,
            "figures": [str(f) for f in self.figures],
        }


def flat_config(run_dir: Path) -> dict[str, Any]:
    """The run's resolved ``config.yaml`` as ``{"section.key": value}`` (lists stay values)."""
    path = open_run_dir(run_dir).config
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(
            f"{path}: not valid YAML ({err}); expected the config folkways wrote"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a YAML {type(data).__name__}; expected a mapping of sections")
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = value

    walk("", data)
    return flat


def differing_keys(configs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{key: {run: value}}`` for the flattened keys whose values are not the same in
    every run (a key missing from a run's config counts as :data:`UNSET`), sorted by key;
    :data:`IGNORED_KEYS` are left out."""
    keys = sorted(set().union(*configs.values()) - IGNORED_KEYS) if configs else []
    result = {}
    for key in keys:
        values = {run: config.get(key, UNSET) for run, config in configs.items()}
        first = next(iter(values.values()))
        if any(v != first for v in values.values()):
            result[key] = values
    return result


def label_keys(differing: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The differing keys that tell the runs apart in labels.

    A key missing from some configs (:data:`UNSET`: written by an older folkways, before
    the key existed) but equal in all the others is most likely a new setting at its
    default, not a condition of the experiment; it is left out of the labels (it stays in
    ``differing``). A key the runs that have it disagree on is kept.
    """
    keep = []
    for key, values in differing.items():
        present = [v for v in values.values() if not (isinstance(v, str) and v == UNSET)]
        if len(present) == len(values) or any(v != present[0] for v in present):
            keep.append(key)
    return keep


def format_value(value: Any) -> str:
    """A config value as written in YAML: ``true``, ``null``, ``0.1``, ``[a, b]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def run_labels(runs: list[str], differing: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Each run's label: ``"key=value, key=value"`` over the differing keys, e.g.
    ``"distill.data_policy=anchor, run.seed=1"`` (the keys of :func:`label_keys`); the
    directory name when nothing differs, and the label followed by the directory name for runs whose labels would
    be equal (their configs are equal but another run's is not)."""
    keys = label_keys(differing)
    if not keys:
        return {run: run for run in runs}
    labels = {
        run: ", ".join(f"{key}={format_value(differing[key][run])}" for key in keys) for run in runs
    }
    counts = {label: list(labels.values()).count(label) for label in labels.values()}
    return {
        run: label if counts[label] == 1 else f"{label} ({run})" for run, label in labels.items()
    }


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
                majority_tied=tuple(s.majority_tied),
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
    differing = differing_keys(
        {name: flat_config(Path(r)) for name, r in zip(names, run_dirs, strict=True)}
    )
    labels = run_labels(names, differing)
    out_dir = Path(out_dir)
    check_out_dir(out_dir, "expected a folder (created if missing)")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "comparison.md").write_text(
        format_differences(names, differing, labels) + "\n## Per generation\n\n" + format_rows(rows)
    )
    figure = _plot(rows, labels, out_dir / "comparison.png")
    return Comparison(rows, [figure], differing, label_keys(differing), labels)


def format_differences(
    runs: list[str], differing: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str]
) -> str:
    """Markdown: each run's label, and a key x run table of the config keys that differ."""
    lines = ["![comparison](comparison.png)", "", "| run | label in the figure |", "| --- | --- |"]
    lines += [f"| {run} | {labels[run]} |" for run in runs]
    lines.append("")
    if not differing:
        lines.append(
            "No config key differs between the runs (run.name and run.output_dir aside); "
            "they are labelled by directory name."
        )
        return "\n".join(lines) + "\n"
    lines += [
        "Config keys that differ (run.name and run.output_dir aside):",
        "",
        "| key | " + " | ".join(runs) + " |",
        "| --- |" + " --- |" * len(runs),
    ]
    for key, values in differing.items():
        lines.append(f"| {key} | " + " | ".join(format_value(values[r]) for r in runs) + " |")
    unlabelled = [k for k in differing if k not in label_keys(differing)]
    if unlabelled:
        lines += [
            "",
            f"Not in the labels: {', '.join(unlabelled)} ({UNSET} in some configs, written "
            "before the key existed, and the same in the others).",
        ]
    return "\n".join(lines) + "\n"


def format_rows(rows: list[GenerationRow]) -> str:
    """The per-generation table; a tie reads ``tie A=B (45%)``, and a prior without a
    majority option to measure (a tie, or scripted seats only) ``—``."""

    def num(x):
        return "—" if x is None or math.isnan(x) else f"{x:.3f}"

    lines = [
        "| run | gen | majority (share) | prior on majority before → after | prior entropy after (bits) | JS from gen 0 (bits) | adapter cosine |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.run} | {r.generation} | {majority_label(r.majority_option, r.majority_tied)} "
            f"({_pct(r.majority_share)}) | "
            f"{num(r.prior_on_majority_before)} → {num(r.prior_on_majority_after)} | "
            f"{num(r.prior_entropy_after)} | {num(r.js_from_gen0_bits)} | "
            f"{num(r.adapter_pairwise_cosine)} |"
        )
    return "\n".join(lines) + "\n"


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.0%}"


def _plot(rows: list[GenerationRow], labels: Mapping[str, str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [  # field, title, y label
        ("prior_entropy_after", "Prior entropy after distillation", "entropy (bits)"),
        (
            "prior_on_majority_after",
            "Prior on the majority option, after",
            "P(majority option)",
        ),
        ("js_from_gen0_bits", "Drift: mean JS from generation 0", "JS divergence (bits)"),
        (
            "adapter_pairwise_cosine",
            "Adapter homogenisation",
            "mean pairwise cosine of deltas",
        ),
    ]
    runs = list(dict.fromkeys(r.run for r in rows))
    # The legend goes below the panels, one run per line when labels are long.
    columns = 1 if max(len(labels[r]) for r in runs) > 60 else min(len(runs), 3)
    legend_lines = -(-len(runs) // columns)
    height = 3.6 + 0.25 * legend_lines
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), height))
    for ax, (field, title, ylabel) in zip(axes, panels, strict=True):
        for run in runs:
            # None: not measured, left out. NaN (a tie has no majority option to hold a
            # prior on) stays: matplotlib leaves a gap there, so no line bridges the tie.
            mine = [r for r in rows if r.run == run and getattr(r, field) is not None]
            ax.plot(
                [r.generation for r in mine],
                [getattr(r, field) for r in mine],
                marker="o",
                markersize=7 - 2 * runs.index(run) % 6,  # identical curves stay visible
                label=labels[run],
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("generation")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=columns, fontsize=9, frameon=False)
    fig.suptitle("Runs compared per generation", fontsize=12)
    fig.tight_layout(rect=(0, (0.15 + 0.22 * legend_lines) / height, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
