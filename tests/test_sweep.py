"""``folkways sweep``: grids of tiny runs and their aggregates.

The statistics are checked on synthetic outcomes with known answers (chi-square table
values and closed forms, exact small-sample p-values, a logistic curve with a known
critical fraction); the command on one 2-point × 2-seed sweep of the tiny naming game,
run once (in two worker processes) and then re-run, resumed and refused.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil

import numpy as np
import pytest

from tests.conftest import QUICKSTART
from trainer.config_loader import ConfigError
from trainer.run_dir import RunLayout
from trainer.sweep import add_sweep_parser, run_sweep
from trainer.sweep_aggregates import (
    GenerationOutcome,
    RunOutcome,
    aggregate,
    collective_bias,
    consensus,
)
from trainer.sweep_outcomes import committed_option
from trainer.sweep_plan import parse_grid, plan_sweep, run_name
from trainer.sweep_stats import (
    chi2_sf,
    fit_tipping,
    logistic,
    regularized_upper_gamma,
    winner_test,
)
from trainer.sweep_tables import csv_rows

# ----- chi-square -----------------------------------------------------------------------

# Upper-tail critical values from any chi-square table (e.g. NIST/SEMATECH e-Handbook,
# section 1.3.6.7.4): (df, x, P(X >= x)).
TABLE = [
    (1, 3.841, 0.05),
    (1, 6.635, 0.01),
    (1, 10.828, 0.001),
    (2, 5.991, 0.05),
    (3, 7.815, 0.05),
    (3, 0.352, 0.95),
    (5, 11.070, 0.05),
    (10, 23.209, 0.01),
    (20, 31.410, 0.05),
    (25, 52.620, 0.001),
]


@pytest.mark.parametrize(("df", "x", "p"), TABLE)
def test_chi2_sf_matches_table_values_with_and_without_scipy(df, x, p):
    # the tables round x to 3 decimals: about 1e-4 relative in the tail probability
    assert chi2_sf(x, df) == pytest.approx(p, rel=2e-3)
    assert regularized_upper_gamma(df / 2, x / 2) == pytest.approx(p, rel=2e-3)


@pytest.mark.parametrize("x", [1e-8, 0.3, 1.0, 2.5, 7.0, 30.0, 120.0])
def test_incomplete_gamma_matches_closed_forms(x):
    # df = 2: P(X >= x) = e^(-x/2); df = 1: erfc(sqrt(x/2)); df = 4: e^(-x/2) (1 + x/2)
    assert regularized_upper_gamma(1.0, x / 2) == pytest.approx(math.exp(-x / 2), rel=1e-12)
    assert regularized_upper_gamma(0.5, x / 2) == pytest.approx(
        math.erfc(math.sqrt(x / 2)), rel=1e-10
    )
    expected = math.exp(-x / 2) * (1 + x / 2)
    assert regularized_upper_gamma(2.0, x / 2) == pytest.approx(expected, rel=1e-12)
    assert chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-12)


def test_winner_test_textbook_example_against_uniform():
    # 100 seeds over 3 options: (20 - 100/3)^2/(100/3) + ... = 14, df 2, p = e^-7
    winners = ["A"] * 20 + ["B"] * 30 + ["C"] * 50
    uniform = [{o: 1 / 3 for o in "ABC"}] * 100
    test = winner_test(winners, uniform, draws=20_000)
    assert test.statistic == pytest.approx(14.0)
    assert test.df == 2
    assert test.p_value == pytest.approx(math.exp(-7), rel=1e-10)
    assert test.p_value_monte_carlo == pytest.approx(math.exp(-7), abs=6e-4)
    assert test.observed == {"A": 20, "B": 30, "C": 50}


def test_winner_test_monte_carlo_is_exact_for_few_seeds():
    # 10 seeds, W = 2, all won by A: X^2 = 10; only all-A or all-B reach it, so the exact
    # p-value is 2 / 2^10 = 0.00195, where the chi-square approximation says 0.00157.
    test = winner_test(["A"] * 10, [{"A": 0.5, "B": 0.5}] * 10, draws=40_000, seed=3)
    assert test.statistic == pytest.approx(10.0)
    assert test.p_value == pytest.approx(0.0015654, rel=1e-4)
    assert test.p_value_monte_carlo == pytest.approx(2 / 1024, abs=7e-4)


def test_winner_test_with_option_sets_differing_between_seeds():
    # seed 1 plays {A, B}, seed 2 {B, C}: expected A 0.5, B 1, C 0.5. Winners A, C give
    # X^2 = 0.5 + 1 + 0.5 = 2; of the four equally likely outcomes (A,B) (A,C) (B,B) (B,C),
    # with X^2 = 1, 2, 2, 1, half reach 2: the exact p-value is 0.5.
    nulls = [{"A": 0.5, "B": 0.5}, {"B": 0.5, "C": 0.5}]
    test = winner_test(["A", "C"], nulls, draws=20_000)
    assert test.expected == {"A": 0.5, "B": 1.0, "C": 0.5}
    assert test.statistic == pytest.approx(2.0) and test.df == 2
    assert test.p_value_monte_carlo == pytest.approx(0.5, abs=0.02)
    # an option the null rules out cannot win by chance
    ruled_out = winner_test(["C", "C"], [{"A": 0.5, "B": 0.5}] * 2)
    assert ruled_out.statistic == math.inf and ruled_out.p_value == 0.0


def test_collective_bias_absent_in_the_individual():
    # every agent alone is indifferent (uniform prior), yet 12 of 12 populations pick A
    options = [("A", "B", "C")] * 12
    priors = [{"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}] * 12
    bias = collective_bias(["A"] * 12, options, priors, draws=5000)
    assert bias.winner_share == {"A": 1.0, "B": 0.0, "C": 0.0}
    assert bias.individual_prior == pytest.approx({"A": 1 / 3, "B": 1 / 3, "C": 1 / 3})
    assert bias.uniform == pytest.approx({"A": 1 / 3, "B": 1 / 3, "C": 1 / 3})
    # X^2 = (12-4)^2/4 + 2 * 4^2/4 = 24, df 2: p = e^-12; exact: 3 / 3^12
    assert bias.vs_uniform.statistic == pytest.approx(24.0)
    assert bias.vs_uniform.p_value == pytest.approx(math.exp(-12), rel=1e-9)
    assert bias.vs_uniform.p_value_monte_carlo == pytest.approx(1 / 5001)
    assert bias.vs_individual_prior.statistic == pytest.approx(24.0)
    # a seed with no majority (no choices) is counted apart
    assert collective_bias([None, "A"], options[:2], priors[:2]).no_winner == 1


def test_consensus_share_and_quartiles_of_convergence_rounds():
    rounds = [3, 5, None, 7, 9]
    gens = [
        GenerationOutcome(0, "A", {"convergence_round": r, "success_rate_last": s})
        for r, s in zip(rounds, [1.0, 1.0, 0.5, 1.0, 0.5], strict=True)
    ]
    c = consensus(gens)
    assert c.seeds == 5 and c.converged == 4 and c.converged_share == pytest.approx(0.8)
    assert c.convergence_rounds == rounds
    assert c.quartiles == pytest.approx((4.5, 6.0, 7.5))  # linear interpolation of 3,5,7,9
    assert c.success_rate_last_mean == pytest.approx(0.8)
    assert consensus([GenerationOutcome(0, "50%", {"mean_donation_fraction": 0.5})]) is None


# ----- the tipping point ----------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logistic_fit_recovers_a_known_critical_fraction(seed):
    rng = np.random.default_rng(seed)
    fractions = np.repeat(np.linspace(0.0, 0.6, 7), 60)
    flipped = rng.random(fractions.size) < logistic(fractions, 0.3, 0.04)
    fit = fit_tipping(fractions, flipped)
    assert fit.critical_fraction == pytest.approx(0.3, abs=0.02)
    assert fit.scale == pytest.approx(0.04, abs=0.02)
    low, high = fit.interval
    assert low < 0.3 < high and high - low < 0.08
    assert fit.seeds == [60] * 7 and not fit.separated


def test_logistic_fit_interval_shrinks_with_more_seeds():
    rng = np.random.default_rng(7)
    widths = []
    for per_fraction in (10, 160):
        fractions = np.repeat(np.linspace(0.0, 0.6, 7), per_fraction)
        fit = fit_tipping(fractions, rng.random(fractions.size) < logistic(fractions, 0.25, 0.06))
        widths.append(fit.interval[1] - fit.interval[0])
    assert widths[1] < widths[0] / 2  # about 1/sqrt(16) of it


def test_logistic_fit_of_separated_outcomes_is_the_gap_midpoint():
    fit = fit_tipping([0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4], [0, 0, 0, 0, 1, 1, 1, 1])
    assert fit.separated and fit.critical_fraction == pytest.approx(0.25)
    low, high = fit.interval
    assert 0.15 < low < 0.2 and 0.3 < high < 0.35
    assert fit.flipped == [0, 0, 2, 2]


def test_logistic_fit_not_identified():
    none = fit_tipping([0.1, 0.2, 0.3], [False, False, False])
    assert none.critical_fraction is None and "no seed flipped" in none.note
    every = fit_tipping([0.1, 0.2], [True, True])
    assert every.critical_fraction is None and "every seed flipped" in every.note
    one = fit_tipping([0.2, 0.2], [True, False])
    assert one.critical_fraction is None and "fewer than two fractions" in one.note


def _synthetic_tipping_runs() -> list[RunOutcome]:
    """Fractions 0..0.4 x 4 seeds x two population sizes; generation 0 flips from 0.2 on,
    generation 1 (after distillation) from 0.1 on; the committed option is B."""
    runs = []
    for size in (4, 8):
        for f in (0.0, 0.1, 0.2, 0.3, 0.4):
            for seed in range(4):
                gens = tuple(
                    GenerationOutcome(g, "B" if f >= threshold else "A", {})
                    for g, threshold in ((0, 0.2), (1, 0.1))
                )
                runs.append(
                    RunOutcome(
                        run=f"size-{size}__f-{f}__seed-{seed}",
                        point={"population.size": size, "interventions.0.fraction": f},
                        seed=seed,
                        options=("A", "B"),
                        prior={"A": 0.5, "B": 0.5},
                        generations=gens,
                        committed_option=None if f == 0 else "B",
                    )
                )
    return runs


def test_tipping_point_per_generation_and_other_grid_value():
    runs = _synthetic_tipping_runs()
    # one run whose intervention record is missing: left out, and said so
    lost = runs[-1]
    runs[-1] = RunOutcome(**{**lost.__dict__, "committed_option": None})
    key = "interventions.0.fraction"
    agg = aggregate(runs, ["population.size", key], tipping_key=key, draws=200)
    assert len(agg.rows) == 2 * 5 * 2  # sizes x fractions x generations
    assert [e["run"] for e in agg.excluded] == [lost.run]
    curves = {(c.fixed["population.size"], c.generation): c.fit for c in agg.tipping}
    assert set(curves) == {(4, 0), (4, 1), (8, 0), (8, 1)}
    for size in (4, 8):
        assert curves[size, 0].critical_fraction == pytest.approx(0.15)  # between 0.1 and 0.2
        assert curves[size, 1].critical_fraction == pytest.approx(0.05)  # distillation moved it
        assert curves[size, 0].separated
    assert curves[8, 0].seeds == [4, 4, 4, 4, 3]  # the lost run is not counted at 0.4
    shares = {
        (r.point["population.size"], r.point[key], r.generation): r.flipped_share for r in agg.rows
    }
    assert shares[4, 0.0, 0] == 0.0 and shares[4, 0.1, 0] == 0.0 and shares[4, 0.2, 0] == 1.0
    assert shares[4, 0.1, 1] == 1.0
    table = csv_rows(agg)
    row = next(r for r in table if r["population.size"] == "4" and r["generation"] == 1)
    assert row["critical_fraction"] == pytest.approx(0.05)
    json.dumps(agg.to_dict())  # JSON-safe (no NaN, no tuples)


def test_tipping_key_must_be_a_numeric_grid_key():
    runs = _synthetic_tipping_runs()[:2]
    with pytest.raises(
        ValueError, match="'game.rounds' is not a grid key; accepted: population.size"
    ):
        aggregate(runs, ["population.size", "interventions.0.fraction"], tipping_key="game.rounds")


def test_committed_option_reads_intervention_records(tmp_path):
    assert committed_option(tmp_path) is None
    for g in (0, 1):
        (tmp_path / f"generation_00{g}").mkdir()
    record = {"kind": "committed_minority", "option": "Q", "agents": ["agent_03"]}
    other = {"kind": "something_else", "option": "Z"}
    (tmp_path / "generation_000/interventions.jsonl").write_text(
        json.dumps(other) + "\n" + json.dumps(record) + "\n"
    )
    (tmp_path / "generation_001/interventions.jsonl").write_text(json.dumps(record) + "\n")
    assert committed_option(tmp_path) == "Q"
    (tmp_path / "generation_001/interventions.jsonl").write_text(
        json.dumps({**record, "option": "R"}) + "\n"
    )
    with pytest.raises(ValueError, match="committed option 'R' differs from 'Q'"):
        committed_option(tmp_path)
    (tmp_path / "generation_001/interventions.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match=r"generation_001/interventions.jsonl:1: not JSON"):
        committed_option(tmp_path)


# ----- grid and names ---------------------------------------------------------------------


def test_grid_values_are_yaml_lists():
    grid = parse_grid(["game.num_names=2,4", "game.names=[A, B],[C, D]", "game.temperature=0.5, 1"])
    assert grid == {
        "game.num_names": [2, 4],
        "game.names": [["A", "B"], ["C", "D"]],
        "game.temperature": [0.5, 1],
    }
    for bad, message in [
        ("game.num_names", "not of the form key=v1,v2"),
        ("game.num_names=", "has an empty value"),
        ("game.num_names=2,2", "repeats a value"),
        ("run.seed=1,2", "seeds come from --seeds"),
        ("game.names=[A,B", "not a valid YAML list"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_grid([bad])
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["game.num_names=2", "game.num_names=4"])


def test_run_names_are_valid_run_names():
    name = run_name({"game.num_names": 2}, 3)
    assert name == "game.num_names-2__seed-3"
    odd = run_name({"game.names": ["A", "B c"], "interventions.0.fraction": 0.25}, 0)
    assert odd == "game.names-A-B-c__interventions.0.fraction-0.25__seed-0"
    long = run_name({"game.names": [f"name{i}" for i in range(60)]}, 1)
    for n in (name, odd, long):
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", n) and len(n) <= 120


# ----- the command on the tiny model --------------------------------------------------------


def tiny_sweep_overrides(output_dir) -> list[str]:
    """tests/conftest.py's tiny run, one generation, the game's W left to the grid.
    The batched distillation backend: a third of TRL's time at this size."""
    return [
        "model.name_or_path=tiny-random",
        f"run.output_dir={output_dir}",
        "run.name=t",
        "run.generations=1",
        "population.size=4",
        "game.rounds=4",
        "game.pairs_per_round=2",
        "probe.orders=2",
        "metrics.window=2",
        "distill.max_examples=4",
        "distill.epochs=1",
        "distill.batch_size=4",
        "distill.backend=batched",
        "model.batch_size=8",
    ]


def sweep_command(*argv) -> int:
    """``folkways sweep ...`` through a parser built as trainer/cli.py builds it."""
    parser = argparse.ArgumentParser(prog="folkways")
    add_sweep_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sweep", *map(str, argv)])
    return args.func(args)


@pytest.fixture(scope="module")
def swept(tiny_model_path, tmp_path_factory):
    """One 2-point x 2-seed sweep of the tiny naming game, in two worker processes."""
    root = tmp_path_factory.mktemp("sweep")
    plan = plan_sweep(QUICKSTART, parse_grid(["game.num_names=2,4"]), 2, tiny_sweep_overrides(root))
    logs: list[str] = []
    result = run_sweep(plan, jobs=2, progress=False, log=logs.append, draws=2000)
    return plan, result, logs


def test_sweep_runs_every_point_and_seed_and_writes_manifest_table_and_plots(swept):
    plan, result, logs = swept
    out = plan.out
    assert out.name == "t-sweep"  # <run.output_dir>/<run.name>-sweep
    names = [
        "game.num_names-2__seed-0",
        "game.num_names-2__seed-1",
        "game.num_names-4__seed-0",
        "game.num_names-4__seed-1",
    ]
    assert sorted(result.ran) == names and result.skipped == []
    assert sorted(line.split()[1] for line in logs) == names  # "ran <name> in N s"
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["grid"] == {"game.num_names": [2, 4]} and manifest["seeds"] == [0, 1]
    assert [r["name"] for r in manifest["runs"]] == names
    first = manifest["runs"][0]
    assert first["point"] == {"game.num_names": 2} and first["seed"] == 0
    assert first["overrides"][-4:] == [
        "game.num_names=2",
        "run.seed=0",
        f"run.name={names[0]}",
        f'run.output_dir="{out}"',
    ]
    for name in names:
        layout = RunLayout(out / name)
        assert layout.is_complete(0)
        assert (out / "logs" / f"{name}.log").read_text().count("generation 0 complete") == 1

    agg = json.loads((out / "aggregate.json").read_text())
    assert agg == result.aggregate.to_dict()
    rows = {r["point"]["game.num_names"]: r for r in agg["rows"]}
    assert set(rows) == {2, 4} and all(r["generation"] == 0 for r in rows.values())
    for w, row in rows.items():
        assert row["seeds"] == [0, 1]
        bias = row["bias"]
        assert sum(bias["winners"].values()) + bias["no_winner"] == 2
        # each seed draws its own W letters: an option's uniform share is 1/W times the
        # share of the two seeds that have it
        assert sum(bias["uniform"].values()) == pytest.approx(1.0)
        assert {round(v * 2 * w, 9) for v in bias["uniform"].values()} <= {1, 2}
        assert sum(bias["individual_prior"].values()) == pytest.approx(1.0)
        assert row["consensus"]["seeds"] == 2
        assert len(row["consensus"]["convergence_rounds"]) == 2
        if bias["vs_uniform"] is not None:
            assert bias["vs_uniform"]["df"] == len(bias["uniform"]) - 1
    csv_lines = (out / "aggregate.csv").read_text().splitlines()
    assert csv_lines[0].startswith("game.num_names,generation,seeds,converged_share")
    assert [line.split(",")[:3] for line in csv_lines[1:]] == [["2", "0", "2"], ["4", "0", "2"]]
    assert sorted(f.name for f in result.figures) == ["bias.png", "consensus.png"]
    for figure in result.figures:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000


def test_rerun_skips_complete_runs(swept, monkeypatch, capsys):
    plan, _, _ = swept

    def must_not_run(*args, **kwargs):
        raise AssertionError("run_experiment called for a complete run")

    monkeypatch.setattr("trainer.generation_loop.run_experiment", must_not_run)
    before = {p: p.stat().st_mtime_ns for p in plan.out.rglob("generation_000/*")}
    logs: list[str] = []
    again = plan_sweep(
        QUICKSTART, parse_grid(["game.num_names=2,4"]), 2, tiny_sweep_overrides(plan.out.parent)
    )
    result = run_sweep(again, progress=False, log=logs.append, draws=2000)
    assert result.ran == [] and len(result.skipped) == 4
    assert logs == [f"skip {r.name}: complete" for r in plan.runs]
    assert {p: p.stat().st_mtime_ns for p in plan.out.rglob("generation_000/*")} == before
    # the command line: the same, the aggregate as JSON on stdout
    args = ["--grid", "game.num_names=2,4", "--seeds", 2, "--json", "--no-progress"]
    assert sweep_command(QUICKSTART, *tiny_sweep_overrides(plan.out.parent), *args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ran"] == [] and printed["aggregate"]["grid_keys"] == ["game.num_names"]


def test_rerun_with_another_config_is_refused_before_writing(swept):
    plan, _, _ = swept
    manifest = (plan.out / "sweep.json").read_text()
    changed = plan_sweep(
        QUICKSTART,
        parse_grid(["game.num_names=2,4"]),
        2,
        [*tiny_sweep_overrides(plan.out.parent), "game.rounds=5"],
    )
    with pytest.raises(
        ConfigError,
        match="game.num_names-2__seed-0 was started with a different config .game.rounds differ",
    ):
        run_sweep(changed, progress=False, log=lambda _: None)
    assert (plan.out / "sweep.json").read_text() == manifest


def test_rerun_resumes_an_unfinished_run(swept):
    plan, _, _ = swept
    unfinished = plan.out / "game.num_names-4__seed-1"
    summary = (unfinished / "generation_000/summary.json").read_text()
    (unfinished / "generation_000/COMPLETE").unlink()
    logs: list[str] = []
    result = run_sweep(plan, jobs=1, progress=False, log=logs.append, draws=2000)
    assert result.ran == [unfinished.name] and len(result.skipped) == 3
    assert RunLayout(unfinished).is_complete(0)
    assert (unfinished / "generation_000/summary.json").read_text() == summary  # same seeds


def test_bad_grid_key_fails_before_anything_is_written(tiny_model_path, tmp_path):
    overrides = tiny_sweep_overrides(tmp_path)
    with pytest.raises(
        ConfigError, match=r"--grid point game.num_namez=2 .*unknown key 'game.num_namez'"
    ):
        sweep_command(QUICKSTART, *overrides, "--grid", "game.num_namez=2,4", "--seeds", 2)
    # the second point is out of range: still nothing run or written for the first
    with pytest.raises(ConfigError, match="game.num_names=30 is out of range"):
        sweep_command(QUICKSTART, *overrides, "--grid", "game.num_names=2,30", "--seeds", 1)
    with pytest.raises(ConfigError, match="sets the grid key game.rounds"):
        sweep_command(
            QUICKSTART, *overrides, "game.rounds=3", "--grid", "game.rounds=2,4", "--seeds", 1
        )
    with pytest.raises(ValueError, match="--tipping-key 'game.rounds' is not a grid key"):
        args = ["--grid", "game.num_names=2,4", "--seeds", 1, "--tipping-key", "game.rounds"]
        sweep_command(QUICKSTART, *overrides, *args)
    with pytest.raises(ValueError, match="--seeds=0; expected an integer >= 1"):
        sweep_command(QUICKSTART, *overrides, "--grid", "game.num_names=2,4", "--seeds", 0)
    assert list(tmp_path.iterdir()) == []


def test_tipping_sweep_on_disk_reads_committed_options(tiny_model_path, tmp_path, swept):
    """A tipping sweep's aggregate from run directories whose intervention records are
    written by hand (the grid key stands in for a committed fraction)."""
    plan, _, _ = swept
    out = tmp_path / "copy"
    shutil.copytree(plan.out, out)
    tipping = plan_sweep(
        QUICKSTART,
        parse_grid(["game.num_names=2,4"]),
        2,
        tiny_sweep_overrides(plan.out.parent),
        out=out,
        tipping_key="game.num_names",
    )
    for run in tipping.runs:
        summary = json.loads((out / run.name / "generation_000/summary.json").read_text())
        option = summary["majority_option"] if run.seed == 0 else "none-of-them"
        record = {"kind": "committed_minority", "option": option}
        (out / run.name / "generation_000/interventions.jsonl").write_text(
            json.dumps(record) + "\n"
        )
    result = run_sweep(tipping, progress=False, log=lambda _: None, draws=200)
    assert result.ran == []
    (curve,) = result.aggregate.tipping
    assert curve.fit.fractions == [2.0, 4.0] and curve.fit.flipped == [1, 1]
    assert curve.fit.interval == (None, None)  # one of two flipped at each value: no curve
    assert [r.flipped_share for r in result.aggregate.rows] == [0.5, 0.5]
    assert (out / "tipping.png").is_file()


# ----- --slurm without a scheduler (tests/test_slurm.py runs it on a real one) --------------


class _RecordingExecutor:
    """Stands in for submitit.SlurmExecutor: records what would be submitted."""

    def __init__(self, folder, max_requeues):
        self.folder, self.max_requeues = folder, max_requeues

    def update_parameters(self, **params):
        self.params = params

    def map_array(self, fn, *iterables):
        self.fn, self.args = fn, iterables
        return [argparse.Namespace(job_id=f"42_{i}") for i in range(len(iterables[0]))]


def test_slurm_submission_is_one_array_of_runs_as_a_local_sweep_runs_them(
    tiny_model_path, tmp_path
):
    from trainer.sweep_slurm import submit_sweep

    slurm = ["slurm.rollout.cpus=3", "slurm.max_parallel_tasks=1", "slurm.max_requeues=5"]
    overrides = [*tiny_sweep_overrides(tmp_path), *slurm]
    plan = plan_sweep(QUICKSTART, parse_grid(["game.num_names=2,4"]), 1, overrides)
    executors = []

    def factory(folder, max_requeues):
        executors.append(_RecordingExecutor(folder, max_requeues))
        return executors[-1]

    submission = submit_sweep(plan, executor_factory=factory)
    (executor,) = executors
    names = ["game.num_names-2__seed-0", "game.num_names-4__seed-0"]
    assert submission.array_id == "42" and submission.runs == names
    assert executor.folder == plan.out / "slurm" / "logs" / "%j" and executor.max_requeues == 5
    params = executor.params
    assert (params["cpus_per_task"], params["array_parallelism"]) == (3, 1)
    assert params["job_name"] == "fw-sweep-t-sweep" and params["additional_parameters"]["requeue"]
    # Each task: the run's own overrides, as a local sweep runs it, and its log file.
    assert executor.args == (
        names,
        [r.overrides for r in plan.runs],
        [str(plan.out / "logs" / f"{n}.log") for n in names],
    )
    assert executor.fn.config == str(QUICKSTART.resolve())
    requeued = executor.fn.checkpoint(names[0], plan.runs[0].overrides, "x.log")
    assert requeued.function is executor.fn and requeued.args[0] == names[0]
    recorded = json.loads((plan.out / "slurm_jobs.json").read_text())
    assert [(s["array_id"], s["runs"]) for s in recorded] == [("42", names)]
    assert json.loads((plan.out / "sweep.json").read_text()) == plan.manifest()


def test_slurm_sweep_refuses_jobs_and_gridded_resources_before_writing(tiny_model_path, tmp_path):
    overrides = tiny_sweep_overrides(tmp_path)
    with pytest.raises(ValueError, match="--jobs=2 with --slurm"):
        sweep_command(QUICKSTART, *overrides, "--seeds", 1, "--slurm", "--jobs", 2)
    with pytest.raises(ValueError, match="different slurm: sections; one job array"):
        grid = ["--grid", "slurm.rollout.cpus=1,2", "--seeds", 1, "--slurm"]
        sweep_command(QUICKSTART, *overrides, *grid)
    assert list(tmp_path.iterdir()) == []
