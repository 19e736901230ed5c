"""``folkways baseline``: the game comes from an experiment config, overrides are checked,
per-seed records are printed and per-round metrics written with the run's writers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from trainer.baseline_command import add_baseline_parser
from trainer.config import load_experiment
from trainer.config_loader import ConfigError
from trainer.games import build_game
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


def test_iql_on_the_quickstart_prints_records_and_writes_metrics(tmp_path, capsys):
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
    metrics = read_metrics(out / "seed_1" / "metrics.jsonl")
    assert {m.name for m in metrics} == {"agreement", "success"}
    assert len(metrics) == 2 * 30 and {m.phase for m in metrics} == {"baseline_iql"}
    assert sorted({m.round for m in metrics}) == list(range(30))


def test_dotted_overrides_set_the_config_and_the_table_is_readable(tmp_path, capsys):
    out = tmp_path / "rf"
    args = ["reinforce", DONOR, "rounds=12", "game.rounds=4", "observation=history", "--out", out]
    assert baseline(*args, "--seeds", "1") == 0
    text = capsys.readouterr().out
    assert "final_mean_donation" in text and "reinforce on donor_game: converged" in text
    written = json.loads((out / "args.json").read_text())
    assert written["args"]["rules"]["rounds"] == 4 and written["args"]["observation"] == "history"


def test_mng_takes_the_population_size(tmp_path, capsys):
    assert baseline("mng", QUICKSTART, "population.size=40", "--json", "--out", tmp_path) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 5 and all(r["converged_round"] is not None for r in records)
    assert json.loads((tmp_path / "args.json").read_text())["args"]["num_agents"] == 40


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
