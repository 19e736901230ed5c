"""A generation whose top share is tied has no majority option: it is recorded as a tie
(``majority_tied``), its priors on a majority are NaN (``null`` in summary.json) with no
``prior_on_majority`` records, and every reader says "tie", never the alphabetically
first option. Schema-2 summaries (before ties were recorded) still read."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import pytest

from societies.games.naming_game import NamingGame, NamingGameRules
from societies.records import AgentPrior
from tests.conftest import read_decisions, run_tiny, tiny_experiment_config
from tests.test_data_builders import donation, donor_game
from tests.test_metrics import pair
from tests.test_strict_json import strict_loads
from trainer.drift_metrics import drift_records
from trainer.measure_generation import measure_generation
from trainer.run_dir import RunLayout
from trainer.run_records import read_summary
from trainer.summary import GenerationSummary, completion_line, format_table

NAMES = ("A", "B", "C")
PRIORS = {
    "x": AgentPrior("x", {"A": 0.6, "B": 0.3, "C": 0.1}, 0.1, 3),
    "y": AgentPrior("y", {"A": 0.2, "B": 0.7, "C": 0.1}, 0.1, 3),
}
# Rounds 0-2 of x and y; the window is rounds 1-2. Round 0 (outside it) is all A.
TIE = pair(0, 0, "A", "A") + pair(1, 0, "A", "B") + pair(2, 0, "B", "A")  # window A 2, B 2
WIN = pair(0, 0, "A", "A") + pair(1, 0, "A", "B") + pair(2, 0, "B", "B")  # window B 3 of 4


def _measure(decisions):
    return measure_generation(
        0,
        NamingGame(NamingGameRules(NAMES)),
        decisions,
        PRIORS,
        PRIORS,
        [],
        rounds=3,
        window=2,
        population_size=2,
    )


def test_a_tied_window_has_no_majority_and_no_prior_on_one():
    summary, records = _measure(TIE)
    assert summary.majority_option is None and summary.majority_tied == ["A", "B"]
    assert summary.majority_share == 0.5  # the share each tied option holds
    assert math.isnan(summary.prior_on_majority_before)
    assert math.isnan(summary.prior_on_majority_after)
    assert summary.game_metrics["majority_name"] is None
    names = [r.name for r in records]
    assert "prior_on_majority" not in names
    assert names.count("prior_entropy_bits") == 4  # the rest of the probe is measured
    assert not any("on_majority" in r.name for r in drift_records(0, PRIORS, PRIORS, None))
    # strict JSON: no majority, null priors, the tie; it reads back as written
    data = strict_loads(json.dumps(summary.to_dict()))
    assert (data["majority_option"], data["majority_tied"]) == (None, ["A", "B"])
    assert data["prior_on_majority_before"] is None and data["schema_version"] == 3
    assert GenerationSummary.from_dict(data).to_dict() == data

    # one more B: B leads alone, and the priors are measured on it
    summary, records = _measure(WIN)
    assert (summary.majority_option, summary.majority_tied) == ("B", [])
    assert summary.majority_share == 0.75
    assert summary.prior_on_majority_before == pytest.approx((0.3 + 0.7) / 2)
    on = sorted(r.value for r in records if r.name == "prior_on_majority")
    assert on == [0.3, 0.3, 0.7, 0.7]  # two agents, before and after
    drift = {r.name: r.value for r in drift_records(0, PRIORS, PRIORS, summary.majority_option)}
    assert drift["prior_mean_on_majority"] == pytest.approx(0.5)


def test_a_summary_that_says_both_a_majority_and_a_tie_is_refused():
    summary, _ = _measure(TIE)
    with pytest.raises(ValueError, match="^generation 0: majority option 'A', tied \\['A', 'B'\\]"):
        dataclasses.replace(summary, majority_option="A")
    with pytest.raises(ValueError, match="2\\+ distinct options in sorted order"):
        dataclasses.replace(summary, majority_tied=["B", "A"])


def test_donor_levels_tied_at_the_top_leave_no_majority_level():
    # two donations a round; in the window (rounds 1-2) 50% twice and 100% twice
    given = [("0%", "0%"), ("50%", "100%"), ("100%", "50%")]
    decisions = [
        donation(r, i, donor, recipient, level)
        for r, levels in enumerate(given)
        for i, (donor, recipient, level) in enumerate(
            zip(("a", "b"), ("c", "d"), levels, strict=True)
        )
    ]
    measured = donor_game().generation_metrics(decisions, rounds=3, window=2, population_size=4)
    assert measured.majority_option is None and measured.majority_tied == ("100%", "50%")
    assert measured.majority_share == 0.5 and measured.values["majority_level"] is None
    # one more 50%: it leads alone
    decisions[-2] = dataclasses.replace(decisions[-2], action="50%")  # round 2: a gives 50%
    measured = donor_game().generation_metrics(decisions, rounds=3, window=2, population_size=4)
    assert (measured.majority_option, measured.majority_tied) == ("50%", ())
    assert measured.majority_share == 0.75


def test_the_table_and_the_log_line_say_tie():
    tie, _ = _measure(TIE)
    win, _ = _measure(WIN)
    table = format_table([tie, dataclasses.replace(win, generation=1)]).splitlines()
    tie_cells = [c.strip() for c in table[2].split("  ") if c.strip()]
    assert tie_cells[2:4] == ["tie A=B (50%)", "-"] and tie_cells[4] == "n/a -> n/a"
    assert "B (75%)" in table[3] and "0.500 -> 0.500" in table[3]
    assert completion_line(tie) == (
        "generation 0 complete: tie A=B (50% each of the last 2 rounds): no majority, so no "
        "prior on it"
    )
    assert completion_line(win) == (
        "generation 0 complete: majority B (75% of the last 2 rounds), prior on it 0.500 -> 0.500"
    )


def test_a_scripted_society_split_two_and_two_ends_in_a_tie(tmp_path, monkeypatch):
    """End to end without a model: two seats always say A, two always B, so every round
    of the window is 2-2. The summary, the log line, the table, the report and the sweep
    all read a tie."""
    from tests.test_game_protocol import _no_model
    from trainer.report import make_report
    from trainer.sweep_outcomes import read_run_outcome

    _no_model(monkeypatch)
    seats = "[{policy: fixed_name, name: B, count: 2}, {policy: fixed_name, name: A, count: 2}]"
    logs: list[str] = []
    overrides = {"game.names": "[A, B, C, D]", "population.scripted": seats}
    result = run_tiny(tmp_path, logs, **{**overrides, "run.generations": 1})
    (summary,) = result.summaries
    assert len(read_decisions(tmp_path / "t", 0)) == 16  # 4 rounds x 4 seats
    saved = strict_loads(RunLayout(tmp_path / "t").summary(0).read_text())
    assert (saved["majority_option"], saved["majority_tied"]) == (None, ["A", "B"])
    assert saved["majority_share"] == 0.5 and saved["game_metrics"]["majority_name"] is None
    assert any("tie A=B (50% each of the last 2 rounds): no majority" in line for line in logs)
    assert "tie A=B (50%)" in format_table(result.summaries)
    report = make_report(tmp_path / "t", tmp_path / "report")
    assert "tie A=B (50%)" in (tmp_path / "report/summary.md").read_text()
    assert report.summaries == [summary]
    outcome = read_run_outcome(tmp_path / "t", point={}, seed=0, options=["A", "B", "C", "D"])
    (generation,) = outcome.generations
    assert generation.window_choices is None  # the schema-3 summary's tie, not recounted
    assert generation.winner() == (None, ("A", "B"))


@pytest.fixture
def tied_copy(reference, tmp_path):
    """The reference run copied, its generation 1 rewritten as a tie between two of its
    names (no majority, null priors, no prior_on_majority records) and its generation 0
    summary as schema 2 (no majority_tied)."""
    run = tmp_path / "tied"
    shutil.copytree(reference.run_dir, run)
    layout = RunLayout(run)
    names = sorted(json.loads(layout.probes(1).read_text())["orders"][0])
    first, second = names[:2]
    path = layout.summary(1)
    data = json.loads(path.read_text())
    data.update(
        majority_option=None,
        majority_tied=[first, second],
        majority_share=0.5,
        prior_on_majority_before=None,
        prior_on_majority_after=None,
    )
    path.write_text(json.dumps(data))
    for metrics in (layout.generation_metrics(1), layout.metrics):
        kept = [
            line
            for line in metrics.read_text().splitlines()
            if not ('"prior_on_majority"' in line and '"generation": 1' in line)
        ]
        metrics.write_text("".join(line + "\n" for line in kept))
    old = json.loads(layout.summary(0).read_text())
    del old["majority_tied"]
    layout.summary(0).write_text(json.dumps({**old, "schema_version": 2}))
    return run, first, second


def test_a_schema_2_summary_still_reads_and_prints(tied_copy, reference):
    run, _, _ = tied_copy
    layout = RunLayout(run)
    old = read_summary(layout, 0)
    assert old.schema_version == 2 and old.majority_tied == []
    assert old.majority_option == reference.summaries[0].majority_option  # as written
    line = format_table([old]).splitlines()[2]
    assert f"{old.majority_option} (" in line
    data = json.loads(layout.summary(0).read_text())
    layout.summary(0).write_text(json.dumps({**data, "schema_version": 1}))
    with pytest.raises(ValueError, match="schema_version=1; this folkways reads schema_version 3"):
        read_summary(layout, 0)


def test_the_report_the_comparison_and_the_card_say_tie(tied_copy, reference, tmp_path):
    from trainer.multi_report import compare_runs
    from trainer.release import release_adapter
    from trainer.report import make_report

    run, first, second = tied_copy
    report = make_report(run, tmp_path / "report")
    assert [s.majority_tied for s in report.summaries] == [[], [first, second]]
    text = (tmp_path / "report/summary.md").read_text()
    assert f"tie {first}={second} (50%)" in text and "n/a -> n/a" in text
    assert (tmp_path / "report/report.png").stat().st_size > 10_000

    comparison = compare_runs([reference.run_dir, run], tmp_path / "cmp")
    tied_row = comparison.rows[3]
    assert tied_row.majority_option is None and tied_row.majority_tied == (first, second)
    assert math.isnan(tied_row.prior_on_majority_after)
    table = (tmp_path / "cmp/comparison.md").read_text()
    assert f"| tied | 1 | tie {first}={second} (50%) | — → — |" in table
    assert (tmp_path / "cmp/comparison.png").stat().st_size > 10_000

    release_adapter(run, "agent_01", tmp_path / "release")
    card = (tmp_path / "release/README.md").read_text()
    assert f"society was tied between {first} and {second} (50% of choices each" in card
    assert "it had no majority option" in card and "majority option was" not in card


def test_a_replay_of_a_tie_has_no_original_majority_to_follow(tmp_path):
    from trainer.replay_command import format_attribution, format_result
    from trainer.replay_records import AgentEffect, ReplayResult, ReplaySpec, compare

    config = tiny_experiment_config(tmp_path)  # game.rounds 4, metrics.window 2
    assert (config.game.rounds, config.metrics.window) == (4, 2)
    game = NamingGame(NamingGameRules(NAMES))
    start = pair(0, 0, "A", "A") + pair(1, 0, "A", "A")
    original = start + pair(2, 0, "A", "B") + pair(3, 0, "B", "A")  # window A 2, B 2
    replayed = start + pair(2, 0, "B", "B") + pair(3, 0, "B", "A")  # window B 3 of 4
    spec = ReplaySpec(source="runs/t", generation=0, reset_to_start=("x",))
    result = compare(spec, "out", game, config, ["x", "y"], original, replayed, identical=False)
    assert result.original.majority_option is None
    assert result.original.majority_tied == ("A", "B")
    assert (result.replay.majority_option, result.replay.majority_tied) == ("B", ())
    assert math.isnan(result.original_majority_share_in_replay)
    assert math.isnan(result.original_majority_share_delta)
    text = format_result(result)
    assert f"{'majority option, last 2 rounds':30}{'tie A=B':>12}{'B':>12}" in text
    assert "the original had no single majority (tie A=B)" in text
    assert "share of A" not in text
    data = strict_loads(json.dumps(result.to_dict()))
    assert data["original_majority_share_in_replay"] is None
    assert data["original"]["majority_tied"] == ["A", "B"]
    assert json.loads(json.dumps(ReplayResult.from_dict(data).to_dict())) == data

    effect = AgentEffect.of("x", result)
    assert strict_loads(json.dumps(effect.to_dict()))["majority_share_effect"] is None
    row = format_attribution("runs/t", 0, [effect]).splitlines()[-1]
    # success 0.5 in the original, 0.75 in the replay: effect (original - replay) -0.25
    assert row.split()[:3] == ["x", "-0.250", "n/a"] and row.split()[-3:] == ["B", "round", "2"]
    # the other way round: the replay ties, the original had B
    back = compare(spec, "out", game, config, ["x", "y"], replayed, original, identical=False)
    assert back.original_majority_share_in_replay == 0.5
    assert "tie A=B" in format_attribution("runs/t", 0, [AgentEffect.of("x", back)])


def test_a_minimal_naming_game_seed_whose_last_words_tie(tmp_path):
    from societies.baselines.minimal_naming_game import MngArgs, run
    from societies.baselines.mng_log import MngLog
    from trainer.baseline_run_dir import write_mng_run

    args = MngArgs(num_agents=40, max_rounds=2000)
    log = MngLog()
    result = run(args, [3], log=log)[0]
    play = log.play(3)
    assert play.majority().option == result.winner and play.majority().tied == ()
    tied = dataclasses.replace(play, last_words=("w7", "w2") * 5)
    assert (tied.majority().option, tied.majority().tied) == (None, ("w2", "w7"))
    layout = write_mng_run(
        tmp_path / "seed_3", tiny_experiment_config(tmp_path), result, tied, args
    )
    summary = read_summary(layout, 0)
    assert (summary.majority_option, summary.majority_tied) == (None, ["w2", "w7"])
    assert summary.majority_share == 0.5 and summary.game_metrics["majority_name"] is None
    assert "tie w2=w7 (50%)" in format_table([summary])
