"""``folkways compare CONFIG --seeds K``: one naming game, learnt five ways, side by side.

The methods (issue #12):

- ``in_context``: the LLM society's first generation, adapting in context only (no
  weights have changed yet);
- ``distilled``: the same society's second generation, which starts from adapters
  distilled from the first and adapts in context again (memory resets each generation);
- ``iql``, ``reinforce``: tabula-rasa learners on the same names, payoffs, population
  and pairs per round (``societies/baselines``);
- ``llm_rl``: the same LLM population with no in-context memory, its adapters updated
  online by policy gradient (:mod:`trainer.llm_rl`).

Every method writes ordinary run directories (the society under ``society/``, each
baseline seed under ``<method>/seed_<s>/``), and every outcome is read from them by one
reader, :func:`trainer.run_outcome.run_outcome`. Convergence means one thing for all
(``societies/baselines/convergence.py``): from a round to the end, every agent's most
probable choice is the same option. For the LLM society an agent's most probable choice
after a round is the argmax of the option probabilities of its latest decision (its
in-context policy), a tie counting as none; for a tabular learner, the argmax of its
table in the empty-history state; for llm_rl, of its prior probe after the round's
update. Rounds are rounds of the config's game (``game.pairs_per_round`` interactions
each). Final success is, for every method, the mean success rate over the last
``metrics.window`` rounds of the config (the baselines' own ``window`` args and
``llm_rl``'s are set to it), and the table says which window that is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from societies.atomic import atomic_write_json
from trainer.out_dirs import check_rerun_out
from trainer.run_dir import open_run_dir
from trainer.run_outcome import RunOutcome, run_outcome
from trainer.run_records import read_summary

METHODS = ("in_context", "distilled", "iql", "reinforce", "llm_rl")
# How a comparison's --out was made (config, overrides, seeds, methods, llm_rl rounds):
# the same command re-runs in place (the society resumes, complete llm_rl seeds are
# kept); any other command's output is refused, so two comparisons never mix.
RECORD_FILE = "compare_args.json"
ACCEPTED = (
    "expected a new folder, or the output of this same compare command (same config, "
    "overrides, --seeds, --methods and --llm-rl-rounds; re-run in place)"
)


@dataclass(frozen=True)
class MethodSeed:
    method: str
    seed: int
    rounds: int
    converged_round: int | None
    winner: str | None
    final_success: float | None
    window: int
    """Rounds at the end whose mean success rate is ``final_success`` (summary.json's)."""


def method_seed(method: str, seed: int, run_dir: Path, generation: int = 0) -> MethodSeed:
    """One method's seed, read back from its run directory."""
    outcome: RunOutcome = run_outcome(run_dir, generation)
    window = read_summary(open_run_dir(run_dir), generation).window
    return MethodSeed(
        method,
        seed,
        outcome.rounds,
        outcome.converged_round,
        outcome.winner,
        outcome.final_success,
        window,
    )


def run_comparison(
    config_path: str | Path,
    overrides: list[str],
    seeds: int,
    out_dir: Path,
    *,
    methods: Sequence[str] = METHODS,
    llm_rl_rounds: int | None = None,
    progress: bool = True,
) -> list[MethodSeed]:
    """Run every method on seeds ``run.seed .. run.seed + seeds - 1``, each seed into a
    run directory under ``out_dir``; read every outcome back from them and write
    ``compare.json``, ``compare.md`` and ``compare.png`` into ``out_dir``."""
    from societies.baselines.records import Method
    from trainer.baseline_command import check_config, resolve_args, run_recorded, write_results
    from trainer.config import load_experiment
    from trainer.generation_loop import run_experiment
    from trainer.llm_rl import LlmRlArgs, run_llm_rl

    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"methods {unknown}; accepted: {list(METHODS)}")
    # `is None`, not `or`: 0 rounds is refused like -5, not read as "the default".
    if llm_rl_rounds is not None and (isinstance(llm_rl_rounds, bool) or llm_rl_rounds < 1):
        raise ValueError(
            f"--llm-rl-rounds={llm_rl_rounds}; expected an integer >= 1 (default 4 x game.rounds)"
        )
    out_dir = Path(out_dir)
    base = load_experiment(config_path, overrides)
    first = base.run.seed
    seed_list = list(range(first, first + seeds))
    record = {
        "config": str(config_path),
        "seeds": seed_list,
        "methods": [m for m in METHODS if m in methods],
        "llm_rl_rounds": llm_rl_rounds,
        "overrides": list(overrides),
    }
    check_rerun_out(out_dir, RECORD_FILE, record, "a folkways compare output", ACCEPTED)
    if base.game.name.value != "naming_game":
        raise ValueError(f"compare plays the naming game; the config's is {base.game.name.value!r}")
    # The weight-update methods run no interventions: refused before the societies run.
    for method in methods:
        if method in ("iql", "reinforce", "llm_rl"):
            check_config(method, base)
    # One window for every method's final success: the config's (the baselines' and
    # llm_rl's own defaults, 10 and 4 rounds, would put different windows in one table).
    window = base.metrics.window
    rounds = base.game.rounds * 4 if llm_rl_rounds is None else llm_rl_rounds
    rl_args = LlmRlArgs(rounds=rounds, window=window)  # checked before any method runs
    atomic_write_json(out_dir / RECORD_FILE, record)
    rows: list[MethodSeed] = []
    society = [m for m in methods if m in ("in_context", "distilled")]
    for s in seed_list:
        if not society:
            break
        generations = 2 if "distilled" in society else 1
        where = [
            *overrides,
            f"run.seed={s}",
            f"run.generations={generations}",
            f"run.output_dir={out_dir / 'society'}",
            f"run.name=seed_{s}",
        ]
        config = load_experiment(config_path, where)
        run_experiment(config_path, where, progress=progress)
        for g, method in ((0, "in_context"), (1, "distilled")):
            if method in society:
                rows.append(method_seed(method, s, config.run_dir, g))
    for method in (Method.IQL, Method.REINFORCE):
        if method.value in methods:
            args = resolve_args(method, base, [f"window={window}"])
            results, log = run_recorded(method, args, seed_list)
            dirs = write_results(
                out_dir / method.value, method, args, results, log, base, config_path, overrides
            )
            for r, run_dir in zip(results, dirs, strict=True):
                rows.append(method_seed(method.value, r.seed, run_dir))
    if "llm_rl" in methods:
        for s in seed_list:
            config = load_experiment(config_path, [*overrides, f"run.seed={s}"])
            run_dir = out_dir / "llm_rl" / f"seed_{s}"
            if not (run_dir / "result.json").is_file():  # a re-run keeps complete seeds
                run_llm_rl(config, rl_args, run_dir, progress=progress)
            rows.append(method_seed("llm_rl", s, run_dir))
    write_comparison(out_dir, rows, [m for m in METHODS if m in methods])
    return rows


def summarize(rows: Sequence[MethodSeed], methods: Sequence[str]) -> list[dict]:
    """Per method: seeds, share converged, convergence-round median and quartiles,
    mean final success and the window it is over, and the winners."""
    table = []
    for m in methods:
        mine = [r for r in rows if r.method == m]
        rounds = [r.converged_round for r in mine if r.converged_round is not None]
        success = [r.final_success for r in mine if r.final_success is not None]
        winners = [r.winner for r in mine if r.winner is not None]
        windows = sorted({r.window for r in mine})
        table.append(
            {
                "method": m,
                "seeds": len(mine),
                "converged": len(rounds) / len(mine) if mine else float("nan"),
                "round_median": float(np.median(rounds)) if rounds else None,
                "round_q1_q3": [float(np.percentile(rounds, 25)), float(np.percentile(rounds, 75))]
                if rounds
                else None,
                "final_success": float(np.mean(success)) if success else None,
                "final_success_window": windows[0] if len(windows) == 1 else windows or None,
                "winners": {w: winners.count(w) for w in sorted(set(winners))},
            }
        )
    return table


def write_comparison(out_dir: Path, rows: Sequence[MethodSeed], methods: Sequence[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    table = summarize(rows, methods)
    (out_dir / "compare.json").write_text(
        json.dumps({"summary": table, "seeds": [asdict(r) for r in rows]}, indent=2)
    )
    lines = [
        "| method | seeds | converged | convergence round, median [q1, q3] | final success "
        "(mean success rate, last N rounds) | winners |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for t in table:
        q = t["round_q1_q3"]
        when = f"{t['round_median']:.0f} [{q[0]:.0f}, {q[1]:.0f}]" if q else "—"
        w = t["final_success_window"]
        success = "—" if t["final_success"] is None else f"{t['final_success']:.2f} (N={w})"
        winners = ", ".join(f"{w} ×{n}" for w, n in t["winners"].items()) or "—"
        lines.append(
            f"| {t['method']} | {t['seeds']} | {t['converged']:.0%} | {when} | {success} | {winners} |"
        )
    (out_dir / "compare.md").write_text("\n".join(lines) + "\n")
    _plot(rows, methods, out_dir / "compare.png")


def _plot(rows: Sequence[MethodSeed], methods: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    last = "/".join(str(w) for w in sorted({r.window for r in rows}))
    for i, m in enumerate(methods):
        mine = [r for r in rows if r.method == m]
        done = [r.converged_round for r in mine if r.converged_round is not None]
        left.scatter([i] * len(done), done, alpha=0.7)
        never = len(mine) - len(done)
        if never:
            left.annotate(f"{never} never", (i, 0), ha="center", va="bottom", fontsize=8)
        success = [r.final_success for r in mine if r.final_success is not None]
        right.bar(i, float(np.mean(success)) if success else 0.0, color="tab:blue")
    for ax, title, label in (
        (left, "time to convergence (each seed)", "round"),
        (
            right,
            f"final success rate, last {last} rounds (mean over seeds)",
            "share of interactions",
        ),
    ):
        ax.set_xticks(range(len(methods)), methods, rotation=15)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, axis="y")
    right.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
