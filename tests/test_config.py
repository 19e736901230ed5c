"""Every shipped config loads; bad configs are errors naming key, value and what is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.config import ExperimentConfig, load_experiment
from trainer.config_loader import ConfigError
from trainer.datasets import Selection

CONFIGS = sorted(
    p
    for p in (Path(__file__).parents[1] / "configs").rglob("*.yaml")
    if "accelerate" not in p.parts
)


def test_configs_are_shipped():
    names = {p.relative_to(CONFIGS[0].parents[1]).as_posix() for p in CONFIGS}
    assert {"naming_game/quickstart.yaml", "naming_game/ashery2025.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    config = load_experiment(path)
    assert isinstance(config, ExperimentConfig)
    assert config.to_dict()["run"]["name"]


def test_ashery2025_matches_the_paper():
    c = load_experiment(Path(__file__).parents[1] / "configs/naming_game/ashery2025.yaml")
    assert (c.population.size, c.game.num_names, c.game.memory, c.game.temperature) == (
        24,
        10,
        5,
        0.5,
    )
    assert (c.game.payoff_match, c.game.payoff_mismatch) == (100.0, -50.0)


def test_overrides_are_typed():
    c = load_experiment(
        None,
        [
            "population.size=8",
            "game.temperature=1",
            "distill.selection=own_successes",
            "game.names=[A, B, C]",
        ],
    )
    assert c.population.size == 8
    assert c.game.temperature == 1.0 and isinstance(c.game.temperature, float)
    assert c.distill.selection is Selection.OWN_SUCCESSES
    assert c.game.names == ["A", "B", "C"] and c.game.num_options == 3


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (["population.szie=8"], ["population.szie", "known keys under 'population': size"]),
        (["nonsense=1"], ["unknown key 'nonsense'", "run, model"]),
        (["population.size=1"], ["population.size=1", "2 <= size <= 4096"]),
        (["population.size=eight"], ["population.size='eight'", "not int"]),
        (["game.temperature=-0.5"], ["game.temperature=-0.5", ">= 0"]),
        (
            ["distill.selection=best"],
            ["distill.selection='best'", "'own_successes', 'community_successes'"],
        ),
        (["game.pairs_per_round=4"], ["game.pairs_per_round=4", "1..3", "population.size=6"]),
        (["probe.orders=11"], ["probe.orders=11", "1..10"]),
        (["game.names=[A, A]"], ["game.names", "distinct"]),
        (["run.name=a/b"], ["run.name='a/b'", "names a directory"]),
        (["population=3"], ["population=3", "a mapping"]),
        (["population.size"], ["not of the form key=value"]),
    ],
)
def test_bad_overrides_name_key_value_and_accepted(overrides, fragments):
    with pytest.raises(ConfigError) as err:
        load_experiment(None, overrides)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_metrics_window_error_names_the_keys_that_set_the_games_rounds():
    with pytest.raises(ConfigError) as err:
        load_experiment(None, ["game.rounds=3", "metrics.window=4"])
    assert "metrics.window=4" in str(err.value) and "1..3 (game.rounds)" in str(err.value)
    debate = Path(__file__).parents[1] / "configs/debate/arithmetic.yaml"
    # 2 questions x (2 revision rounds + the first answer) = 6 rounds; debate has no game.rounds.
    overrides = ["game.questions_per_generation=2", "game.rounds_per_question=2"]
    with pytest.raises(ConfigError) as err:
        load_experiment(debate, [*overrides, "metrics.window=7"])
    message = str(err.value)
    assert "1..6 (the game's rounds: game.questions_per_generation x" in message
    assert "(game.rounds)" not in message


def test_an_unknown_game_key_lists_the_chosen_games_keys_only():
    donor = Path(__file__).parents[1] / "configs/donor_game/quickstart.yaml"
    with pytest.raises(ConfigError) as err:
        load_experiment(donor, ["game.memroy=3"])
    message = str(err.value)
    assert "known keys under 'game' (donor_game): name, rounds" in message
    assert "num_names" not in message and "questions_per_generation" not in message
    # The game an override chooses is the one whose keys are listed.
    with pytest.raises(ConfigError) as err:
        load_experiment(None, ["game.name=donor_game", "game.endowmen=5"])
    assert "(donor_game)" in str(err.value) and "endowment" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_experiment(None, ["game.endowment=5"])  # a donor key on the naming game
    assert "(naming_game)" in str(err.value) and "endowment," not in str(err.value)


def test_a_list_items_range_error_names_its_index():
    minority = Path(__file__).parents[1] / "configs/naming_game/committed_minority.yaml"
    with pytest.raises(ConfigError, match=r"interventions\[0\]\.share=1\.5 is out of range"):
        load_experiment(minority, ["interventions.0.share=1.5"])


def test_an_empty_config_file_is_refused_not_run_with_defaults(tmp_path):
    path = tmp_path / "experiment.yaml"
    for text in ("", "# only a comment\n"):
        path.write_text(text)
        with pytest.raises(ConfigError, match=f"{path} is empty; expected an experiment YAML"):
            load_experiment(path)


def test_a_binary_file_is_named_as_not_a_config(tmp_path):
    path = tmp_path / "report.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert f"{path}: not a text file (byte 0 is b'\\x89', not UTF-8)" in str(err.value)


def test_unknown_key_in_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("population:\n  size: 4\ngame:\n  rouns: 3\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert (
        str(path) in str(err.value)
        and "game.rouns" in str(err.value)
        and "rounds" in str(err.value)
    )


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_experiment(tmp_path / "list.yaml")


def test_round_trip_through_yaml(tmp_path):
    import yaml

    c = load_experiment(None, ["population.size=8", "game.names=[X, Y]"])
    path = tmp_path / "resolved.yaml"
    path.write_text(yaml.safe_dump(c.to_dict()))
    assert load_experiment(path) == c


def test_an_override_reaches_into_a_list_section_by_index():
    """Sweeps vary one intervention's share: interventions.0.share=..."""
    from trainer.config import ConfigError, load_experiment

    base = ["interventions=[{kind: committed_minority, round: 5, share: 0.34}]"]
    config = load_experiment(
        "configs/naming_game/quickstart.yaml", [*base, "interventions.0.share=0.5"]
    )
    assert config.interventions[0].share == 0.5 and config.interventions[0].round == 5
    with pytest.raises(ConfigError, match="'3' is not an index of the 1-item list"):
        load_experiment("configs/naming_game/quickstart.yaml", [*base, "interventions.3.share=0.5"])
    with pytest.raises(ConfigError, match="unknown key 'interventions.0.shar'"):
        load_experiment("configs/naming_game/quickstart.yaml", [*base, "interventions.0.shar=0.5"])
