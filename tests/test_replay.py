"""Counterfactual replay on the tiny model: an unchanged replay is byte-identical, a
swapped adapter changes nothing before its agent's first decision, attribution resets
one agent at a time, and the command's bad input is named before anything is written."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest

from societies.transcripts import read_decisions
from tests.conftest import run_tiny
from trainer.replay import attribution, replay_generation, start_sources
from trainer.replay_command import add_replay_parser, run_replay_command
from trainer.replay_records import AgentEffect, ReplayResult
from trainer.run_dir import RunLayout

WEIGHTS = "adapter_model.safetensors"


@pytest.fixture(scope="module")
def extended(reference, tmp_path_factory):
    """The reference run copied and extended by a third generation. In the reference no
    agent had a success in generation 0, so generation 1 starts from the base model for
    everyone; generation 2 starts from adapters distilled in generation 1."""
    root = tmp_path_factory.mktemp("extended")
    shutil.copytree(reference.run_dir, root / "t")
    run_tiny(root, **{"run.generations": 3})
    return root / "t"


@pytest.fixture(scope="module")
def unchanged(extended) -> ReplayResult:
    return replay_generation(extended, 2)


def first_round_of(decisions, agent: str) -> int:
    return min(d.round for d in decisions if d.agent == agent)


def weights(folder) -> bytes:
    return (folder / WEIGHTS).read_bytes()


def test_an_unchanged_replay_is_byte_identical(extended, unchanged):
    out = extended.with_name("t-replay-g002-same")
    assert unchanged.out_dir == str(out)
    source, replay = RunLayout(extended), RunLayout(out)
    assert replay.transcripts(2).read_bytes() == source.transcripts(2).read_bytes()
    assert unchanged.identical and unchanged.first_difference is None
    assert unchanged.original == unchanged.replay
    assert unchanged.success_rate_delta == unchanged.mean_payoff_delta == 0.0
    assert set(unchanged.payoff_delta_by_agent.values()) == {0.0}
    # The start adapters it played with are the source's generation-1 adapters.
    for agent in ("agent_00", "agent_03"):
        assert weights(replay.adapter(1, agent)) == weights(source.adapter(1, agent))
    saved = json.loads((out / "comparison.json").read_text())
    assert ReplayResult.from_dict(saved) == unchanged
    # Nothing changed, so nobody's effect is anything but zero.
    effect = AgentEffect.of("agent_00", unchanged)
    assert (effect.success_rate_effect, effect.majority_share_effect) == (0.0, 0.0)
    assert effect.first_difference_round is None


def test_a_swapped_adapter_changes_nothing_before_its_agents_first_decision(extended, tmp_path):
    source = RunLayout(extended)
    # The premise: the two agents' distilled adapters differ.
    assert weights(source.adapter(1, "agent_01")) != weights(source.adapter(1, "agent_03"))
    result = replay_generation(
        extended, 2, swap_adapters={"agent_01": "agent_03"}, out_dir=tmp_path / "swap"
    )
    replay = RunLayout(tmp_path / "swap")
    assert weights(replay.adapter(1, "agent_01")) == weights(source.adapter(1, "agent_03"))
    assert weights(replay.adapter(1, "agent_03")) == weights(source.adapter(1, "agent_03"))

    original = read_decisions(source.transcripts(2))
    replayed = read_decisions(replay.transcripts(2))
    r0 = first_round_of(original, "agent_01")
    assert [d for d in original if d.round < r0] == [d for d in replayed if d.round < r0]
    assert not result.identical
    assert result.first_difference.round == r0
    (mine,) = [d for d in original if d.round == r0 and d.agent == "agent_01"]
    (theirs,) = [d for d in replayed if d.round == r0 and d.agent == "agent_01"]
    assert mine.option_probs != theirs.option_probs  # another adapter, another belief
    # In that round, the interactions agent_01 is not part of are untouched too.
    untouched = [d for d in original if d.round == r0 and "agent_01" not in (d.agent, d.partner)]
    assert untouched and all(d in replayed for d in untouched)
    assert result.spec.label == "swap-agent_01-from-agent_03"


def test_attribution_resets_one_agent_to_its_initial_adapter(extended, tmp_path):
    (effect,) = attribution(extended, 2, agents=["agent_02"], out_root=tmp_path)
    out = tmp_path / "t-replay-g002-reset-agent_02"
    assert effect.out_dir == str(out)
    replay, source = RunLayout(out), RunLayout(extended)
    assert weights(replay.adapter(1, "agent_02")) == weights(source.initial_adapter("agent_02"))
    original = read_decisions(source.transcripts(2))
    assert effect.first_difference_round == first_round_of(original, "agent_02")
    # The same replay asked for directly is resumed from its folder (no model) and agrees.
    again = replay_generation(extended, 2, reset_to_start=["agent_02"], out_dir=out)
    assert effect == AgentEffect.of("agent_02", again)
    assert effect.majority_share_effect == pytest.approx(
        again.original.majority_share - again.original_majority_share_in_replay
    )


def test_start_sources_apply_swaps_simultaneously(extended):
    from trainer.replay_records import ReplaySpec

    source = RunLayout(extended)
    spec = ReplaySpec(
        str(extended),
        2,
        swap_adapters={"agent_00": "agent_01", "agent_01": "agent_00"},
        reset_to_start=("agent_02",),
    )
    starts = start_sources(source, spec, ["agent_00", "agent_01", "agent_02", "agent_03"])
    assert starts == {
        "agent_00": source.adapter(1, "agent_01"),
        "agent_01": source.adapter(1, "agent_00"),
        "agent_02": source.initial_adapter("agent_02"),
        "agent_03": source.adapter(1, "agent_03"),
    }


# --- the command ------------------------------------------------------------------------


def command(argv):
    parser = argparse.ArgumentParser(prog="folkways")
    add_replay_parser(parser.add_subparsers(dest="command"))
    return run_replay_command(parser.parse_args(["replay", *argv]))


def test_the_command_prints_the_comparison_as_json(extended, unchanged, capsys):
    # The replay exists, so the command resumes it: no model call, same numbers.
    argv = [str(extended), "--generation", "2", "--out", unchanged.out_dir, "--json"]
    assert command([*argv, "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert ReplayResult.from_dict(printed) == unchanged
    assert command(argv[:-1] + ["--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "identical to the original, byte for byte" in text
    assert "success rate" in text


@pytest.mark.parametrize(
    ("argv", "error", "message"),
    [
        (["--swap-adapter", "agent_01"], ValueError, "is not of the form AGENT=DONOR"),
        (
            ["--swap-adapter", "agent_99=agent_01"],
            ValueError,
            r"swap_adapters: \['agent_99'\] not LLM agents of .*; LLM agents .*\['agent_00'",
        ),
        (["--reset", "agent_01", "--swap-adapter", "agent_01=agent_02"], ValueError, "both"),
        (["--set", "run.name=x"], ValueError, "accepted: any config key but run.name"),
        (["--set", "population.szie=3"], ValueError, "unknown key 'population.szie'"),
        (["--attribution", "--reset", "agent_01"], ValueError, "takes no --swap-adapter"),
        (["--generation", "7"], FileNotFoundError, r"generation 7 .* not complete; .*\[0, 1, 2\]"),
    ],
)
def test_bad_input_is_named_and_writes_nothing(extended, argv, error, message):
    before = sorted(p.name for p in extended.parent.iterdir())
    if "--generation" not in argv:
        argv = [*argv, "--generation", "2"]
    with pytest.raises(error, match=message):
        command([str(extended), *argv, "--no-progress"])
    assert sorted(p.name for p in extended.parent.iterdir()) == before


def test_a_folder_holding_another_replay_is_refused(extended, unchanged):
    with pytest.raises(ValueError, match="holds another replay"):
        replay_generation(extended, 2, reset_to_start=["agent_00"], out_dir=unchanged.out_dir)
    with pytest.raises(ValueError, match="is the run directory itself"):
        replay_generation(extended, 2, out_dir=extended)


def test_the_table_says_each_rows_window_and_matches_the_runs_summary(extended, unchanged):
    """`run`/`report` print success over the last metrics.window rounds (here 2 of 4);
    the replay's table gives that number under the same window, labelled, beside the
    whole generation's."""
    from trainer.replay_command import format_result

    saved = json.loads((RunLayout(extended).generation(2) / "summary.json").read_text())
    assert saved["window"] == 2
    a = unchanged.original
    assert a.window == 2
    assert a.success_rate_last == pytest.approx(saved["game_metrics"]["success_rate_last"])
    assert a.success_rate == pytest.approx(saved["game_metrics"]["success_rate"])
    assert a.majority_share == pytest.approx(saved["majority_share"])
    text = format_result(unchanged)
    last = f"{'success rate, last 2 rounds':30}{a.success_rate_last:>12.3f}"
    assert last in text
    assert f"{'success rate, all rounds':30}{a.success_rate:>12.3f}" in text
    assert f"{'majority share, last 2 rounds':30}{a.majority_share:>12.3f}" in text


def test_a_seed_override_keeps_the_source_runs_names(extended, tmp_path):
    """game.names is empty, so the run drew its names from run.seed; --set run.seed=3
    must change the draws, not the names (else "share of X" compares other options)."""
    import yaml

    from trainer.config import load_experiment
    from trainer.games import build_game
    from trainer.replay_command import format_result

    source = load_experiment(extended / "config.yaml")
    assert source.game.names == []
    names = build_game(source.game, source.run.seed).rules.names
    redrawn = build_game(source.game, 3).rules.names
    assert set(redrawn) != set(names)  # what the replay played before names were pinned
    result = replay_generation(extended, 2, overrides=["run.seed=3"], out_dir=tmp_path / "seed3")
    assert result.pinned_names == tuple(names)
    replayed = read_decisions(RunLayout(tmp_path / "seed3").transcripts(2))
    original = read_decisions(RunLayout(extended).transcripts(2))
    assert {o for d in replayed for o in d.options} == set(names)
    assert {d.action for d in replayed} <= set(names)
    assert {o for d in original for o in d.options} == set(names)
    config = yaml.safe_load((tmp_path / "seed3/config.yaml").read_text())
    assert config["game"]["names"] == list(names) and config["run"]["seed"] == 3
    assert f"game.names={list(names)}" in format_result(result)
    # An override of the names themselves is the user's change: nothing is pinned.
    from trainer.replay import pinned_names

    assert pinned_names(source, ["game.num_names=3", "run.seed=3"]) == ()
    assert pinned_names(source, ["run.seed=3"]) == tuple(names)
