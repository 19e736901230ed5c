"""``folkways baseline``: the game comes from an experiment config, overrides are checked,
per-seed records are printed and each seed written as an ordinary run directory, which
``folkways report`` and the comparison's reader read."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from societies.baselines import iql
from societies.baselines.records import Method
from societies.model_store import ModelNotFoundError
from societies.transcripts import read_decisions
from tests.conftest import model_libraries_imported_by
from trainer.baseline_command import add_baseline_parser, resolve_args
from trainer.config import load_experiment
from trainer.config_loader import ConfigError
from trainer.games import build_game
from trainer.report import make_report
from trainer.run_dir import RunLayout
from trainer.run_outcome import RunOutcome, run_outcome
from trainer.tracking import read_metrics

CONFIGS = Path(__file__).parents[1] / "configs"
QUICKSTART = CONFIGS / "naming_game/quickstart.yaml"
DONOR = CONFIGS / "donor_game/quickstart.yaml"


def baseline(*argv: str) -> int:
    """``folkways baseline ...`` through a parser built as trainer/cli.py builds it."""
    parser = argparse.ArgumentParser(prog="folkways")
    add_baseline_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["baseline", *map(str, argv)])
    return args.func(args)


def test_iql_on_the_quickstart_prints_records_and_writes_run_directories(tmp_path, capsys):
    out = tmp_path / "iql"
    assert baseline("iql", QUICKSTART, "rounds=30", "--seeds", "2", "--json", "--out", out) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["seed"] for r in records] == [0, 1]  # run.seed = 0
    assert all(r["method"] == "iql" and r["rounds"] == 30 for r in records)
    # the config's names, drawn from run.seed as in the LLM run
    names = build_game(load_experiment(QUICKSTART).game, 0).rules.names
    assert {r["winner"] for r in records} - {None} <= set(names)

    written = json.loads((out / "args.json").read_text())
    assert written["args"]["num_agents"] == 6  # population.size
    assert written["args"]["pairs_per_round"] == 3 and written["args"]["episode_rounds"] == 10
    assert written["args"]["rules"]["names"] == list(names)
    assert json.loads((out / "results.json").read_text()) == records

    # seed 1's run directory: the society's records, checked against the learner itself
    run_dir = out / "seed_1"
    layout = RunLayout(run_dir)
    seeded = load_experiment(layout.config)  # config.yaml loads as an experiment config
    assert (seeded.run.seed, seeded.run.name, seeded.game.names) == (1, "seed_1", list(names))
    args = resolve_args(Method.IQL, load_experiment(QUICKSTART), ["rounds=30"])
    learner = iql.run(args, [1])[0]
    metrics = read_metrics(layout.metrics)
    success = sorted(
        (m.round, m.value) for m in metrics if m.name == "success_rate" and m.round is not None
    )
    assert [v for _, v in success] == list(learner.series.success)
    agreement = [m.value for m in metrics if m.name == "agreement"]
    assert agreement == list(learner.series.agreement)
    assert {m.phase for m in metrics if m.name == "agreement"} == {"baseline_iql"}
    decisions = read_decisions(layout.transcripts(0))
    assert len(decisions) == 30 * 3 * 2 and {d.policy for d in decisions} == {"iql"}
    assert set(decisions[0].options) == set(names) and decisions[0].messages == ()
    assert run_outcome(run_dir) == RunOutcome(
        30, learner.converged_round, learner.winner, learner.final_success
    )


def test_report_reads_an_iql_seed_as_a_society_run(tmp_path, capsys):
    out = tmp_path / "iql"
    assert baseline("iql", QUICKSTART, "rounds=80", "--seeds", "1", "--json", "--out", out) == 0
    result = json.loads(capsys.readouterr().out)[0]
    assert result["converged_round"] is not None  # seed 0 converges (round 45 of 80)
    report = make_report(out / "seed_0")
    (summary,) = report.summaries
    assert summary.game_metrics["success_rate_last"] == pytest.approx(result["final_success"])
    assert summary.majority_option == result["winner"] and summary.rounds == 80
    # the probes are the epsilon-greedy policies: uniform at the start (W = 10 names),
    # 1 - eps + eps / W on the convention at consensus
    assert summary.prior_on_majority_before == pytest.approx(0.1)
    assert summary.prior_on_majority_after == pytest.approx(1 - 0.05 + 0.005)
    text = (out / "seed_0/summary.md").read_text()
    assert f"{result['final_success']:.0%} (last 10 of 80)" in text
    assert (out / "seed_0/report.png").stat().st_size > 10_000


def test_report_reads_a_minimal_naming_game_seed(tmp_path, capsys):
    out = tmp_path / "mng"
    args = ["mng", QUICKSTART, "population.size=40", "--seeds", "2", "--json", "--out", out]
    assert baseline(*args) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 2 and all(r["converged_round"] is not None for r in results)
    assert json.loads((out / "args.json").read_text())["args"]["num_agents"] == 40
    result = results[1]
    report = make_report(out / "seed_1")
    (summary,) = report.summaries
    assert summary.game == "minimal_naming_game" and summary.rounds == result["rounds"]
    assert summary.game_metrics["success_rate_last"] == result["final_success"]
    assert summary.game_metrics["peak_words"] == result["peak_words"]
    assert summary.majority_option == result["winner"]
    assert run_outcome(out / "seed_1") == RunOutcome(
        result["rounds"], result["converged_round"], result["winner"], result["final_success"]
    )
    # game.pairs_per_round = 3 interactions a round, all below the cap: one speaker each
    decisions = read_decisions(RunLayout(out / "seed_1").transcripts(0))
    assert len(decisions) == 3 * result["rounds"] and decisions[-1].role == "speaker"


def test_a_donor_seed_has_one_generation_per_game(tmp_path, capsys):
    out = tmp_path / "rf"
    args = ["reinforce", DONOR, "rounds=12", "game.rounds=4", "--seeds", "1", "--json"]
    assert baseline(*args, "--out", out) == 0
    result = json.loads(capsys.readouterr().out)[0]
    layout = RunLayout(out / "seed_0")
    assert layout.completed_generations() == [0, 1, 2]
    summaries = make_report(layout.root).summaries
    # resources replayed from the last generation's decisions: the learner's final ones
    last = summaries[-1].game_metrics["mean_final_resources"]
    assert last == pytest.approx(result["final_mean_resources"])
    assert summaries[-1].game_metrics["mean_donation_fraction"] == pytest.approx(
        result["final_mean_donation"]
    )
    assert run_outcome(layout.root, 2).final_success is None  # the donor game has no success


def test_dotted_overrides_set_the_config_and_the_table_is_readable(tmp_path, capsys):
    out = tmp_path / "rf"
    args = ["reinforce", DONOR, "rounds=12", "game.rounds=4", "observation=history", "--out", out]
    assert baseline(*args, "--seeds", "1") == 0
    text = capsys.readouterr().out
    assert "final_mean_donation" in text and "reinforce on donor_game: converged" in text
    written = json.loads((out / "args.json").read_text())
    assert written["args"]["rules"]["rounds"] == 4 and written["args"]["observation"] == "history"


def test_an_unknown_arg_is_named_with_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match="'epsilo' is not an arg of baseline iql") as err:
        baseline("iql", QUICKSTART, "epsilo=0.1", "--out", tmp_path)
    assert "epsilon" in str(err.value) and "rules" not in str(err.value).split("valid")[1]


def test_a_bad_value_and_a_game_without_baseline_are_errors(tmp_path):
    with pytest.raises(ValueError, match="epsilon=2"):
        baseline("iql", QUICKSTART, "epsilon=2", "--out", tmp_path)
    with pytest.raises(ConfigError, match="epsilon='high' is not float"):
        baseline("iql", QUICKSTART, "epsilon=high", "--out", tmp_path)
    with pytest.raises(ConfigError, match="plays naming_game"):
        baseline("mng", DONOR, "--out", tmp_path)
    with pytest.raises(ValueError, match="--seeds=0"):
        baseline("iql", QUICKSTART, "--seeds", "0", "--out", tmp_path)


@pytest.mark.parametrize("config", [QUICKSTART, DONOR])
def test_a_tabular_baseline_imports_no_model_library(config, tmp_path):
    """IQL is numpy: it starts in about a second, not after ~8 s of torch and transformers."""
    argv = ["baseline", "iql", str(config), "rounds=5", "--seeds", "1", "--out", str(tmp_path)]
    assert model_libraries_imported_by(argv) == []
    assert (tmp_path / "results.json").is_file()


COMMITTED = CONFIGS / "naming_game/committed_minority.yaml"


@pytest.mark.parametrize("method", ["iql", "reinforce", "mng", "llm_rl"])
def test_an_intervention_is_refused_before_any_work(method, tmp_path):
    """It used to be recorded in each seed's config.yaml but not played:
    committed_minority.yaml ran with no committed seat."""
    out = tmp_path / "out"
    message = r"interventions=\['committed_minority'\]: the baselines run no scheduled"
    with pytest.raises(ConfigError, match=message):
        baseline(method, COMMITTED, "--seeds", "1", "--out", out)
    assert not out.exists()


def test_a_config_section_override_clears_the_interventions(tmp_path, capsys):
    """``interventions=[]`` (no dot) sets the config, not a baseline arg: the way to run a
    baseline on a config file that has interventions."""
    out = tmp_path / "iql"
    argv = ["interventions=[]", "rounds=5", "--seeds", "1", "--json", "--out", out]
    assert baseline("iql", COMMITTED, *argv) == 0
    assert json.loads(capsys.readouterr().out)[0]["rounds"] == 5
    assert load_experiment(out / "seed_0/config.yaml").interventions == []
    with pytest.raises(ConfigError, match="'epsilonn' is not an arg of baseline iql"):
        baseline("iql", COMMITTED, "interventions=[]", "epsilonn=0.1", "--out", tmp_path / "x")


def test_the_complete_network_is_accepted_and_recorded(tmp_path, capsys):
    out = tmp_path / "iql"
    argv = ["network.topology=complete", "network.k=2", "rounds=5", "--seeds", "1", "--json"]
    assert baseline("iql", QUICKSTART, *argv, "--out", out) == 0
    assert json.loads(capsys.readouterr().out)[0]["rounds"] == 5
    assert load_experiment(out / "seed_0/config.yaml").network.topology.value == "complete"
    network = json.loads((out / "args.json").read_text())["args"]["network"]
    assert network == {"topology": "complete", "k": 2, "p": 0.1, "m": 2, "edge_list": None}
    assert not (out / "seed_0/graph.json").exists()  # as before networks: nothing to add


RING = ["network.topology=ring_lattice", "network.k=2"]  # the quickstart's 6 agents


@pytest.mark.parametrize("method", ["iql", "reinforce", "mng"])
def test_a_ring_is_played_and_recorded_where_the_society_records_it(method, tmp_path, capsys):
    """The config's ring: args.json, each seed's config.yaml and graph.json say so (the
    graph a society of that seed plays), and every recorded pair is a ring edge; they
    used to be refused (IQL had paired the 6 agents of a ring on all 15 pairs)."""
    out = tmp_path / method
    rounds = "max_rounds=40" if method == "mng" else "rounds=40"
    assert baseline(method, QUICKSTART, *RING, rounds, "--seeds", "2", "--out", out) == 0
    capsys.readouterr()
    written = json.loads((out / "args.json").read_text())
    assert written["args"]["network"]["topology"] == "ring_lattice"
    ring = {frozenset((f"agent_{i:02d}", f"agent_{(i + 1) % 6:02d}")) for i in range(6)}
    config = load_experiment(QUICKSTART, RING)
    agents = [f"agent_{i:02d}" for i in range(6)]
    for seed in (0, 1):
        layout = RunLayout(out / f"seed_{seed}")
        assert load_experiment(layout.config).network == config.network
        graph = json.loads(layout.graph.read_text())
        assert graph == json.loads(json.dumps(config.network.graph(agents, seed).to_node_link()))
        assert {frozenset((e["source"], e["target"])) for e in graph["links"]} == ring
        decisions = read_decisions(layout.transcripts(0))
        assert decisions and {frozenset((d.agent, d.partner)) for d in decisions} == ring


def test_resolved_args_take_the_configs_network_and_no_override_of_it(tmp_path):
    config = load_experiment(QUICKSTART, RING)
    for method in Method:
        assert resolve_args(method, config, []).network == config.network
    with pytest.raises(ConfigError, match="'network' is not an arg of baseline iql"):
        resolve_args(Method.IQL, config, ["network=complete"])


@pytest.mark.parametrize("method", ["iql", "llm_rl"])
def test_an_out_that_is_a_file_or_inside_one_is_refused_before_any_work(method, tmp_path):
    """It used to end in a FileExistsError traceback after every seed (or the model) ran."""
    afile = tmp_path / "afile"
    afile.write_text("notes\n")
    with pytest.raises(ValueError, match=f"--out {afile} is a file; expected a new folder"):
        baseline(method, QUICKSTART, "--seeds", "1", "--out", afile)
    inside = afile / "sub" / "out"
    with pytest.raises(ValueError, match=f"--out {inside} is inside {afile}, which is a file"):
        baseline(method, QUICKSTART, "--seeds", "1", "--out", inside)
    assert sorted(tmp_path.iterdir()) == [afile] and afile.read_text() == "notes\n"


def test_llm_rl_on_a_game_it_does_not_play_writes_nothing(tmp_path):
    """It used to leave args.json in --out before refusing the donor game."""
    out = tmp_path / "X"
    with pytest.raises(ConfigError, match="game.name='donor_game': `folkways baseline llm_rl` "):
        baseline("llm_rl", DONOR, "--out", out)
    with pytest.raises(ConfigError, match="llm_rl args: rounds='many' is not int"):
        baseline("llm_rl", QUICKSTART, "rounds=many", "--out", out)
    with pytest.raises(ModelNotFoundError, match="model.name_or_path='nope'"):
        baseline("llm_rl", QUICKSTART, "model.name_or_path=nope", "--out", out)
    assert list(tmp_path.iterdir()) == []


def test_an_out_holding_other_work_is_refused_and_left_as_it_was(tmp_path, capsys):
    out = tmp_path / "Y"
    assert baseline("iql", QUICKSTART, "rounds=5", "--seeds", "2", "--out", out) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert {p.name for p in out.iterdir()} == {"args.json", "results.json", "seed_0", "seed_1"}

    # another method, other seeds, another arg: each named with both values
    with pytest.raises(ValueError, match=r"method='iql' in its args.json, 'reinforce' in this"):
        baseline("reinforce", QUICKSTART, "rounds=5", "--seeds", "2", "--out", out)
    with pytest.raises(ValueError, match=r"seeds=\[0, 1\] in its args.json, \[0\] in this"):
        baseline("iql", QUICKSTART, "rounds=5", "--seeds", "1", "--out", out)
    with pytest.raises(ValueError, match="args.epsilon=0.05 in its args.json, 0.2 in this"):
        baseline("iql", QUICKSTART, "rounds=5", "epsilon=0.2", "--seeds", "2", "--out", out)
    with pytest.raises(ValueError, match="args.rounds=5 in its args.json, 500 in this"):
        baseline("iql", QUICKSTART, "--seeds", "2", "--out", out)
    with pytest.raises(ValueError, match=r"overrides=\['rounds=5'\] in its args.json, \['r"):
        baseline("iql", QUICKSTART, "rounds=5", "epsilon=0.05", "--seeds", "2", "--out", out)
    # a folder of other work
    work = tmp_path / "work"
    work.mkdir()
    (work / "thesis.tex").write_text("x")
    with pytest.raises(ValueError, match="work is not empty and not a folkways baseline output"):
        baseline("iql", QUICKSTART, "--seeds", "1", "--out", work)
    assert [p.name for p in work.iterdir()] == ["thesis.tex"]
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before

    # the same command re-runs in place: the same records (the seeds determine them)
    (out / "seed_1/generation_000/COMPLETE").unlink()  # as if interrupted while writing
    capsys.readouterr()
    assert baseline("iql", QUICKSTART, "rounds=5", "--seeds", "2", "--out", out) == 0
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
