"""A sweep's aggregate as tables: ``aggregate.csv`` rows and the printed digest.

The aggregate itself (consensus, collective bias, tipping fits) is computed in
:mod:`trainer.sweep_aggregates`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from trainer.sweep_aggregates import CollectiveBias, SweepAggregate, json_safe, point_label


def top_winners(bias: CollectiveBias) -> tuple[str, float] | None:
    """The option(s) that won most seeds and their share of the seeds with a winner;
    options level at the top are all named (``A=B``), never one picked by name."""
    if not bias.winner_share:
        return None
    most = max(bias.winner_share.values())
    return "=".join(o for o, v in bias.winner_share.items() if v == most), most


def winner_cell(bias: CollectiveBias) -> str:
    """``B (100%)``; with seeds that had no sole winner, how many and why:
    ``B (100% of 1), 1 tied (A=B)`` or ``none, 2 tied (A=B)``; ``n/a (free text)``
    for a game without competing options."""
    if bias.not_applicable:
        return "n/a (free-text replies: no options compete)"
    top = top_winners(bias)
    apart = len(bias.ties) + bias.no_winner
    decided = sum(bias.winners.values())
    if top is None:
        text = "none" if apart else "-"
    else:
        text = f"{top[0]} ({top[1]:.0%}" + (f" of {decided})" if apart else ")")
    if bias.ties:
        kinds = "; ".join(dict.fromkeys("=".join(t) for t in bias.ties))
        text += f", {len(bias.ties)} tied ({kinds})"
    if bias.no_winner:
        text += f", {bias.no_winner} without choices"
    return text


def csv_rows(agg: SweepAggregate) -> list[dict[str, Any]]:
    """``aggregate.csv``: one flat row per grid point × generation (lists joined by ';')."""
    fits = {(json.dumps(c.fixed, sort_keys=True), c.generation): c.fit for c in agg.tipping}
    rows = []
    for row in agg.rows:
        c, b = row.consensus, row.bias
        top = top_winners(b)
        top_prior = max(b.individual_prior.items(), key=lambda kv: kv[1], default=None)
        flat: dict[str, Any] = {k: json.dumps(row.point.get(k)) for k in agg.grid_keys}
        flat |= {
            "generation": row.generation,
            "seeds": len(row.seeds),
            "converged_share": c.converged_share if c else None,
            "convergence_q1": c.quartiles[0] if c and c.quartiles else None,
            "convergence_median": c.quartiles[1] if c and c.quartiles else None,
            "convergence_q3": c.quartiles[2] if c and c.quartiles else None,
            "convergence_rounds": ";".join(
                "-" if r is None else str(r) for r in c.convergence_rounds
            )
            if c
            else None,
            "success_rate_last_mean": c.success_rate_last_mean if c else None,
            "bias_not_applicable": b.not_applicable,
            "winners": ";".join(f"{o}:{n}" for o, n in b.winners.items()),
            "ties": len(b.ties),
            "tied": ";".join("=".join(t) for t in b.ties),
            "top_winner": top[0] if top else None,
            "top_winner_share": top[1] if top else None,
            "top_prior_option": top_prior[0] if top_prior else None,
            "top_prior": top_prior[1] if top_prior else None,
        }
        for name, test in (("uniform", b.vs_uniform), ("prior", b.vs_individual_prior)):
            flat[f"chi2_vs_{name}"] = test.statistic if test else None
            flat[f"df_vs_{name}"] = test.df if test else None
            flat[f"p_vs_{name}"] = test.p_value if test else None
            flat[f"p_mc_vs_{name}"] = test.p_value_monte_carlo if test else None
        if agg.tipping_key is not None:
            fixed = {k: v for k, v in row.point.items() if k != agg.tipping_key}
            fit = fits.get((json.dumps(fixed, sort_keys=True), row.generation))
            low, high = fit.interval if fit and fit.interval else (None, None)
            flat |= {
                "flipped_share": row.flipped_share,
                "critical_fraction": fit.critical_fraction if fit else None,
                "critical_low": low,
                "critical_high": high,
            }
        rows.append(json_safe(flat))
    return rows


def format_aggregate(agg: SweepAggregate) -> str:
    """A plain-text digest: one line per grid point × generation, then the tipping fits."""

    def num(x: float | None, fmt: str = ".2f") -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)

    lines = [
        "point | gen | seeds | converged | round median [q1, q3] | top winner | p uniform (MC)"
    ]
    for row in agg.rows:
        c, b = row.consensus, row.bias
        conv = f"{num(c.converged_share)}" if c else "n/a"
        q = c.quartiles if c else None
        when = f"{num(q[1], '.1f')} [{num(q[0], '.1f')}, {num(q[2], '.1f')}]" if q else "-"
        test = b.vs_uniform
        p = f"{test.p_value:.3g} ({test.p_value_monte_carlo:.3g})" if test else "-"
        lines.append(
            f"{point_label(row.point)} | {row.generation} | {len(row.seeds)} | {conv} | {when} "
            f"| {winner_cell(b)} | {p}"
        )
    for curve in agg.tipping:
        fit = curve.fit
        where = point_label(curve.fixed)
        if fit.critical_fraction is None:
            lines.append(f"tipping ({where}, gen {curve.generation}): {fit.note}")
            continue
        low, high = fit.interval or (None, None)
        lines.append(
            f"tipping ({where}, gen {curve.generation}): {curve.key} critical = "
            f"{fit.critical_fraction:.3f}, {fit.level:.0%} interval [{num(low, '.3f')}, "
            f"{num(high, '.3f')}]" + (" (separated outcomes)" if fit.separated else "")
        )
    for reason in dict.fromkeys(r.bias.not_applicable for r in agg.rows if r.bias.not_applicable):
        lines.append(f"collective bias n/a: {reason}")
    for item in agg.excluded:
        lines.append(f"excluded {item['run']}: {item['reason']}")
    return "\n".join(lines)
