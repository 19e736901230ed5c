"""The registry of games: ``game.name`` -> the game its config section builds.

A game is a plugin (societies.games.protocol.Game); adding one means a rules module in
``societies/games/``, a config section in ``trainer/game_configs.py`` and a line here.
"""

from __future__ import annotations

from societies import seeding
from societies.games.protocol import Game
from societies.seeding import Stream
from societies.topology import InteractionGraph
from trainer.game_configs import DebateConfig, DonorGameConfig, GameName, NamingGameConfig


def build_game(
    game: NamingGameConfig | DonorGameConfig | DebateConfig,
    root_seed: int,
    graph: InteractionGraph | None = None,
) -> Game:
    """The game of a config's ``game:`` section (names drawn from the seed if not given),
    its pairs drawn on ``graph`` (None: the complete graph).

    Raises:
        ValueError: a naming game asking for more pairs per round than ``graph``'s
            largest matching holds (named, with the range accepted).
    """
    if game.name is GameName.NAMING_GAME:
        from societies.games.naming_game import NamingGame, NamingGameRules, draw_letter_names

        names = tuple(game.names) or draw_letter_names(
            game.num_names, seeding.rng(root_seed, Stream.NAMES)
        )
        if graph is not None:
            graph.check_pairs_per_round(game.pairs_per_round, "game.pairs_per_round")
        rules = NamingGameRules(
            names=names,
            memory=game.memory,
            payoff_match=game.payoff_match,
            payoff_mismatch=game.payoff_mismatch,
        )
        return NamingGame(rules, pairs_per_round=game.pairs_per_round, graph=graph)
    if game.name is GameName.DONOR_GAME:
        from societies.games.donor_society import DonorSocietyGame

        return DonorSocietyGame(game.rules(), survivors=game.survivors)
    if game.name is GameName.DEBATE:
        from societies.games.debate_society import DebateSocietyGame

        return DebateSocietyGame(game.rules(), root_seed, graph)
    raise NotImplementedError(game.name)  # pragma: no cover - the enum is closed
