"""The statistics of ``folkways sweep`` on synthetic outcomes with known answers.

Chi-square table values and closed forms, exact small-sample p-values, consensus and
collective bias, a logistic curve with a known critical fraction, and the committed
option read back from a run's intervention records.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from societies.metrics import majority
from societies.transcripts import append_decisions
from tests.test_data_builders import debate_decision, pair
from trainer.run_dir import RunLayout
from trainer.summary import GenerationSummary
from trainer.sweep_aggregates import (
    GenerationOutcome,
    RunOutcome,
    aggregate,
    collective_bias,
    consensus,
)
from trainer.sweep_outcomes import committed_option, window_choices
from trainer.sweep_stats import (
    chi2_sf,
    fit_tipping,
    logistic,
    regularized_upper_gamma,
    winner_test,
)
from trainer.sweep_tables import csv_rows, format_aggregate

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


# ----- ties: a seed whose top share is shared has no winner -------------------------------


def _naming_generation(tmp_path, rounds_of_pairs, *, window=2):
    """A run directory holding one naming-game generation's transcript (rounds of pairs
    (a, b)) and its summary, whose majority is the game's rule: ``majority`` over the
    last ``window`` rounds (a tie recorded as ``majority_tied``)."""
    decisions = [
        d
        for r, pairs in enumerate(rounds_of_pairs)
        for i, (a, b) in enumerate(pairs)
        for d in pair(r, i, a, b, f"x{i}", f"y{i}")
    ]
    layout = RunLayout(tmp_path)
    layout.generation(0).mkdir(parents=True)
    append_decisions(layout.transcripts(0), decisions)
    rounds = len(rounds_of_pairs)
    top = majority(d for d in decisions if d.round >= rounds - window)
    summary = GenerationSummary(
        0,
        "naming_game",
        rounds,
        window,
        top.option,
        top.share,
        *[float("nan")] * 5,
        0,
        0,
        majority_tied=list(top.tied),
    )
    return layout, summary


def test_window_choices_tell_a_tie_from_a_win(tmp_path):
    # rounds 0-1 all A (outside the window); window rounds 2-3: A 4, B 4, a tie that
    # summary.json records as such (50% each, no majority option)
    tie = [[("A", "A"), ("A", "A")]] * 2 + [[("A", "B"), ("B", "B")], [("A", "A"), ("B", "A")]]
    layout, summary = _naming_generation(tmp_path / "tie", tie)
    assert (summary.majority_option, summary.majority_share) == (None, 0.5)
    assert summary.majority_tied == ["A", "B"]
    # a schema-3 summary records the tie: taken as written, the transcript not counted
    assert window_choices(layout, summary) == (None, False)
    assert GenerationOutcome(0, None, majority_tied=("A", "B")).winner() == (None, ("A", "B"))
    # a schema-2 summary gave the tie to A, the alphabetically first: the counts tell
    old = GenerationSummary(
        **{**summary.to_dict(), "majority_option": "A", "majority_tied": [], "schema_version": 2}
    )
    counts, free_text = window_choices(layout, old)
    assert counts == {"A": 4, "B": 4} and not free_text
    assert GenerationOutcome(0, "A", window_choices=counts).winner() == (None, ("A", "B"))
    # one more B in round 3: B 5 of 8 wins, and is the summary's majority too
    win = [*tie[:3], [("A", "B"), ("B", "A")]]
    layout, summary = _naming_generation(tmp_path / "win", win)
    old = GenerationSummary(**{**summary.to_dict(), "schema_version": 2})
    counts, _ = window_choices(layout, old)
    assert counts == {"A": 3, "B": 5} and summary.majority_option == "B"
    assert GenerationOutcome(0, "B", window_choices=counts).winner() == ("B", ())
    # a schema-2 summary whose majority is not the transcript's: refused, naming the file
    wrong = GenerationSummary(**{**old.to_dict(), "majority_option": "A"})
    with pytest.raises(ValueError, match=r"generation_000/summary.json: majority_option 'A'"):
        window_choices(layout, wrong)
    # no transcript: nothing to count; the summary's majority stands (as in old records)
    layout.transcripts(0).unlink()
    assert window_choices(layout, old) == (None, False)
    assert GenerationOutcome(0, "B").winner() == ("B", ())
    assert GenerationOutcome(0, None, window_choices={}).winner() == (None, ())


def _tie_run(share, seed, choices, committed):
    return RunOutcome(
        run=f"share-{share}__seed-{seed}",
        point={"interventions.0.share": share},
        seed=seed,
        options=("A", "B"),
        prior={"A": 0.5, "B": 0.5},
        # majority_option as a schema-2 summary.json has it: ties go to A
        generations=(
            GenerationOutcome(0, "A" if choices["A"] >= choices["B"] else "B", {}, choices),
        ),
        committed_option=committed,
    )


def test_a_tie_is_no_winner_and_no_flip_whatever_the_names(tmp_path):
    key = "interventions.0.share"
    runs = [
        _tie_run(0.25, 0, {"A": 4, "B": 4}, "B"),  # tie; by alphabet a non-flip
        _tie_run(0.25, 1, {"A": 4, "B": 4}, "A"),  # tie; by alphabet a flip
        _tie_run(0.5, 0, {"A": 2, "B": 6}, "B"),  # B wins: flipped
        _tie_run(0.5, 1, {"A": 5, "B": 3}, "B"),  # A wins: not flipped
    ]
    agg = aggregate(runs, [key], tipping_key=key, draws=200)
    tied, decided = agg.rows
    assert tied.flipped_share == 0.0 and decided.flipped_share == 0.5
    assert tied.bias.winners == {} and tied.bias.ties == [("A", "B"), ("A", "B")]
    assert tied.bias.no_winner == 0 and tied.bias.winner_share == {}
    assert tied.bias.vs_uniform is None  # no seed with a winner: nothing to test
    assert decided.bias.winners == {"A": 1, "B": 1} and decided.bias.ties == []
    assert decided.bias.winner_share == {"A": 0.5, "B": 0.5}
    (curve,) = agg.tipping
    assert curve.fit.fractions == [0.25, 0.5] and curve.fit.flipped == [0, 1]
    table = format_aggregate(agg).splitlines()
    assert "| none, 2 tied (A=B) |" in table[1]
    assert "| A=B (50%) |" in table[2]  # level winners across seeds: both named
    rows = csv_rows(agg)
    assert (rows[0]["ties"], rows[0]["tied"], rows[0]["top_winner"]) == (2, "A=B;A=B", None)
    assert (rows[1]["ties"], rows[1]["top_winner"], rows[1]["top_winner_share"]) == (0, "A=B", 0.5)
    assert json.loads(json.dumps(agg.to_dict()))["rows"][0]["bias"]["ties"] == [["A", "B"]] * 2
    # one tie beside one win: the win is 100% of the one seed with a winner
    mixed = collective_bias(["B", None], [("A", "B")] * 2, [{}] * 2, tied=[(), ("A", "B")])
    assert mixed.winner_share == {"A": 0.0, "B": 1.0} and mixed.ties == [("A", "B")]
    assert mixed.vs_uniform.observed == {"A": 0, "B": 1}
    from trainer.sweep_plots import write_figures

    names = sorted(p.name for p in write_figures(agg, tmp_path))
    assert names == ["bias.png", "tipping.png"]  # a panel with no winner draws its reason


# ----- a game without competing options (debate) has no collective bias -----------------


def test_debate_has_no_winner_and_says_why(tmp_path):
    # two debaters, one question, two rounds, both wrong: summary.json still says
    # majority_option "correct" (societies/games/debate_society.py) with share 0
    layout = RunLayout(tmp_path)
    layout.generation(0).mkdir(parents=True)
    append_decisions(
        layout.transcripts(0),
        [debate_decision(r, 0, a, "The answer is 7.") for r in (0, 1) for a in ("x", "y")],
    )
    summary = GenerationSummary(0, "debate", 2, 2, "correct", 0.0, *[0.0] * 5, 0, 2)
    assert window_choices(layout, summary) == (None, True)  # from the first decision
    old = GenerationSummary(**{**summary.to_dict(), "schema_version": 2})
    assert window_choices(layout, old) == ({}, True)  # replies are not counted as choices
    runs = [
        RunOutcome(
            run=f"t-{t}__seed-0",
            point={"game.temperature": t},
            seed=0,
            options=("correct", "incorrect"),  # the held-out probe's outcomes
            prior={"correct": 0.0, "incorrect": 1.0},
            generations=(
                GenerationOutcome(0, "correct", {"accuracy_final": 0.0}, {}, free_text=True),
            ),
        )
        for t in (0.5, 0.9)
    ]
    agg = aggregate(runs, ["game.temperature"], draws=100)
    for row in agg.rows:
        b = row.bias
        assert "free text" in b.not_applicable and "'correct' is a label" in b.not_applicable
        assert (b.winners, b.winner_share, b.no_winner, b.ties) == ({}, {}, 0, [])
        assert b.vs_uniform is None and b.vs_individual_prior is None
    text = format_aggregate(agg)
    assert "correct (" not in text and text.count("| n/a (free-text replies") == 2
    assert text.splitlines()[-1].startswith("collective bias n/a: the agents reply in free text")
    rows = csv_rows(agg)
    assert rows[0]["top_winner"] is None and "free text" in rows[0]["bias_not_applicable"]
    from trainer.sweep_plots import write_figures

    assert write_figures(agg, tmp_path) == []  # no bias.png: nothing competed
