"""Per-round bookkeeping of a tabular learner on the vectorised naming game, shared by
IQL and REINFORCE: consensus and agreement of the agents' most probable names (the one
convergence definition, :mod:`societies.baselines.convergence`) and the success rate,
then one :class:`SeedResult` per seed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from societies.baselines import convergence
from societies.baselines.records import Game, Method, RoundSeries, SeedResult, final_success


class NamingProgress:
    """Series of ``seeds × rounds``: consensus, agreement and success per round."""

    def __init__(self, num_seeds: int, rounds: int) -> None:
        self.held = np.empty((num_seeds, rounds), dtype=np.int64)
        self.agree = np.empty((num_seeds, rounds))
        self.success = np.empty((num_seeds, rounds))

    def record(self, t: int, empty_values: np.ndarray, said: np.ndarray) -> None:
        """After round ``t``: ``empty_values`` [seeds, agents, names] (Q-values or
        logits in the empty-history state), ``said`` [seeds, pairs, 2] names spoken."""
        choices = convergence.most_probable(empty_values)
        self.held[:, t] = convergence.consensus(choices)
        self.agree[:, t] = convergence.agreement(choices)
        self.success[:, t] = (said[..., 0] == said[..., 1]).mean(axis=-1)

    def results(
        self, method: Method, seeds: Sequence[int], names: Sequence[str], window: int
    ) -> list[SeedResult]:
        results = []
        for k, seed in enumerate(seeds):
            at = convergence.converged_round(self.held[k])
            results.append(
                SeedResult(
                    method=method,
                    game=Game.NAMING_GAME,
                    seed=seed,
                    rounds=self.held.shape[1],
                    converged_round=at,
                    winner=None if at is None else names[self.held[k, -1]],
                    final_success=final_success(self.success[k], window),
                    series=RoundSeries(
                        agreement=tuple(self.agree[k]), success=tuple(self.success[k])
                    ),
                )
            )
        return results
