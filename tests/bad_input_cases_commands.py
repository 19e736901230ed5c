"""Bad-input cases of the commands beside run/probe/report/release: step, baseline,
compare, sweep and slurm render. Rows of the README's "Bad input" table, in its order.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.bad_input_harness import Bad, Ctx
from tests.conftest import QUICKSTART


def step_agents_empty(ctx: Ctx) -> Bad:
    """``--agents "$NAMES"`` from an empty shell variable (it used to train every agent)."""
    run = ctx.run_copy()
    return Bad(
        ["step", "distill", str(run), "--generation", "1", "--agents", ""],
        ["--agents '' names no agent"],
    )


def baseline_out_not_empty(ctx: Ctx) -> Bad:
    """``baseline --out`` names a folder with other work in it."""
    out = ctx.my_work()
    return Bad(
        ["baseline", "iql", str(QUICKSTART), "--out", str(out)],
        [str(out), "not a folkways baseline output (it holds thesis.tex)", "re-run in place"],
    )


def compare_out_not_empty(ctx: Ctx) -> Bad:
    """``compare --out`` names a folder with other work in it (it used to be written into)."""
    out = ctx.my_work()
    return Bad(
        ["compare", str(QUICKSTART), "--methods", "iql", "--out", str(out)],
        [str(out), "not a folkways compare output (it holds thesis.tex)", "re-run in place"],
    )


def sweep_tipping_key_not_a_share(ctx: Ctx) -> Bad:
    """``--tipping-key`` that is no committed minority's share."""
    out = ctx.tmp / "sweep"
    return Bad(
        ["sweep", str(QUICKSTART), "--grid", "game.memory=3,5", "--tipping-key", "game.memory"]
        + ["--seeds", "1", "--out", str(out)],
        ["--tipping-key 'game.memory' is not the share of a committed minority", "accepted:"],
    )


def slurm_render_out_is_a_file(ctx: Ctx) -> Bad:
    """``slurm render --out`` names a file."""
    out = ctx.a_file("scripts.txt")
    return Bad(
        ["slurm", "render", str(QUICKSTART), "--out", str(out)],
        [str(out), "is a file", "a folder for the sbatch scripts"],
    )


COMMAND_CASES: dict[str, Callable[[Ctx], Bad]] = {
    "step-agents-empty": step_agents_empty,
    "baseline-out-not-empty": baseline_out_not_empty,
    "compare-out-not-empty": compare_out_not_empty,
    "sweep-tipping-key-not-a-share": sweep_tipping_key_not_a_share,
    "slurm-render-out-is-a-file": slurm_render_out_is_a_file,
}
