"""What the tabular learners (IQL, REINFORCE) share: which game they play and checks
of the arguments both take."""

from __future__ import annotations

from societies.baselines.records import Game
from societies.envs.naming_env import ObservationMode, default_rules
from societies.games.donor_game import DonorGameRules
from societies.games.naming_game import NamingGameRules
from societies.topology import NetworkSpec

LEARNER_GAMES = (Game.NAMING_GAME, Game.DONOR_GAME)


def check(ok: bool, name: str, value: object, accepted: str) -> None:
    """An argument's range check: the error names it, its value and what is accepted."""
    if not ok:
        raise ValueError(f"{name}={value!r}; expected {accepted}")


def learner_game(game: Game | str) -> Game:
    try:
        chosen = Game(game)
    except ValueError:
        chosen = None
    accepted = [g.value for g in LEARNER_GAMES]
    check(chosen in LEARNER_GAMES, "game", game, f"one of {accepted}")
    return chosen


def observation_mode(observation: ObservationMode | str) -> ObservationMode:
    try:
        return ObservationMode(observation)
    except ValueError:
        modes = [m.value for m in ObservationMode]
        raise ValueError(f"observation={observation!r}; expected one of {modes}") from None


def game_rules(
    game: Game, rules: NamingGameRules | DonorGameRules | None
) -> NamingGameRules | DonorGameRules:
    """``rules``, or the env's defaults when None; an error if they are another game's."""
    expected = NamingGameRules if game is Game.NAMING_GAME else DonorGameRules
    if rules is None:
        return default_rules() if game is Game.NAMING_GAME else DonorGameRules()
    check(
        isinstance(rules, expected),
        "rules",
        type(rules).__name__,
        f"{expected.__name__} (or None) for game={game.value!r}",
    )
    return rules


def check_common(
    num_agents: int, rounds: int, episode_rounds: int, pairs_per_round: int | None, window: int
) -> None:
    """Range checks of the arguments every tabular learner takes."""
    check(isinstance(num_agents, int) and num_agents >= 2, "num_agents", num_agents, "an int >= 2")
    check(isinstance(rounds, int) and rounds >= 1, "rounds", rounds, "an int >= 1")
    check(
        isinstance(episode_rounds, int) and episode_rounds >= 1,
        "episode_rounds",
        episode_rounds,
        "an int >= 1",
    )
    most = num_agents // 2
    check(
        pairs_per_round is None or 1 <= pairs_per_round <= most,
        "pairs_per_round",
        pairs_per_round,
        f"null (N/2) or 1..{most} for num_agents={num_agents}",
    )
    check(isinstance(window, int) and window >= 1, "window", window, "an int >= 1")


def check_network(game: Game, network: NetworkSpec) -> None:
    """The naming game plays any network; the donor game the complete graph only."""
    check(
        isinstance(network, NetworkSpec),
        "network",
        type(network).__name__,
        "a NetworkSpec (an experiment config's network: section)",
    )
    check(
        game is Game.NAMING_GAME or network.complete,
        "network.topology",
        network.topology.value,
        f"'complete' for game={game.value!r} (the donor game's schedule is the paper's)",
    )
