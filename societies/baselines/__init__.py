"""Tabula-rasa baselines for the societies' games (issue #12).

- :mod:`~societies.baselines.iql`: independent Q-learning, stateless or on a history state;
- :mod:`~societies.baselines.reinforce`: REINFORCE with a population-mean baseline;
- :mod:`~societies.baselines.minimal_naming_game`: the agent-based minimal naming game
  (Baronchelli et al. 2006), optionally with committed agents (Xie et al. 2011).

Each has a typed args dataclass and ``run(args, seeds) -> list[SeedResult]``; what
"converged" means is defined once, in :mod:`~societies.baselines.convergence`.
"""

from societies.baselines.records import Game, Method, RoundSeries, SeedResult

__all__ = ["Game", "Method", "RoundSeries", "SeedResult"]
