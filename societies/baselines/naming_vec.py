"""The naming game of :class:`societies.envs.NamingGameEnv`, for many seeds at once.

Tabular learners need hundreds of rounds on a hundred seeds; stepping the PettingZoo env
seed by seed and agent by agent costs more than the learning. :class:`VecNamingGame`
plays the env's game for S root seeds with arrays and keeps it exactly the env's:

- pairs: :meth:`societies.topology.InteractionGraph.matching` on seed s's graph of
  ``network`` (the society's, :meth:`NetworkSpec.graph`), drawn from
  ``seeding.rng(seed, Stream.PAIRING, generation, round)`` as the society's naming game
  draws them, as ``NamingGameEnv(network=network).pairs_of_round``; on the complete
  graph that is :func:`~societies.topology.sample_pairs`;
- rewards: :meth:`societies.games.naming_game.NamingGame.payoff`, tabulated once into a
  W x W matrix;
- history observations: the env's codes (own name + 1, partner's name + 1, payoff sign
  + 2) for the last ``rules.memory`` interactions, right-aligned, then the "paired"
  flag; memory is cleared when an episode ends.

Global round t is round ``t % episode_rounds`` of generation ``t // episode_rounds``:
what ``NamingGameEnv(rounds=episode_rounds, network=network)`` plays after
``reset(seed=s)`` and then an unseeded ``reset()`` at every truncation.
``tests/test_baselines_tabular.py`` checks both agree on graphs, pairs, rewards and
observations, on the complete graph and on networks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from societies import seeding
from societies.envs.naming_env import ObservationMode
from societies.games.naming_game import NamingGame, NamingGameRules
from societies.population_spec import agent_names
from societies.seeding import Stream
from societies.topology import NetworkSpec, Topology, sample_pairs


class VecNamingGame:
    """The repeated naming game among ``num_agents`` agents, for each root seed in ``seeds``.

    Agents are indices 0..N-1 (the env's ``agent_00``..). Arrays have a leading seed axis.
    Pairs are drawn on each seed's graph of ``network`` (default: the complete graph).
    """

    def __init__(
        self,
        rules: NamingGameRules,
        num_agents: int,
        pairs_per_round: int | None,
        episode_rounds: int,
        seeds: Sequence[int],
        network: NetworkSpec | None = None,
    ) -> None:
        if not isinstance(episode_rounds, int) or episode_rounds < 1:
            raise ValueError(f"episode_rounds={episode_rounds!r}; expected an integer >= 1")
        if not seeds:
            raise ValueError("seeds is empty; expected at least one root seed")
        self.game = NamingGame(rules)
        self.names = rules.names
        self.num_agents = num_agents
        self.pairs_per_round = num_agents // 2 if pairs_per_round is None else pairs_per_round
        self.episode_rounds = episode_rounds
        self.seeds = [int(s) for s in seeds]
        self.agent_names = agent_names(num_agents)
        self._index = {name: i for i, name in enumerate(self.agent_names)}
        # sample_pairs owns the check on pairs_per_round (and num_agents)
        sample_pairs(
            Topology.COMPLETE, self.agent_names, self.pairs_per_round, np.random.default_rng(0)
        )
        # seed s plays the graph a society of root seed s plays
        network = network or NetworkSpec()
        self.graphs = [network.graph(self.agent_names, s) for s in self.seeds]
        for graph in set(self.graphs):  # once per distinct graph: a max matching costs
            graph.check_pairs_per_round(self.pairs_per_round)
        w = len(self.names)
        self.payoffs = np.array(
            [[self.game.payoff(a, b) for b in self.names] for a in self.names], dtype=float
        )
        # memory[s, agent, slot] = (own + 1, partner + 1, sign + 2); slot -1 is the latest
        self.memory = np.zeros((len(self.seeds), num_agents, rules.memory, 3), dtype=np.int8)
        if w + 1 > np.iinfo(np.int8).max:  # pragma: no cover - names are at most 26 letters
            raise ValueError(f"{w} names do not fit the int8 history codes")

    @property
    def num_seeds(self) -> int:
        return len(self.seeds)

    def pairs(self, t: int) -> np.ndarray:
        """The pairs of global round ``t``: int array (S, pairs_per_round, 2)."""
        generation, r = divmod(t, self.episode_rounds)
        out = np.empty((self.num_seeds, self.pairs_per_round, 2), dtype=np.int64)
        for k, seed in enumerate(self.seeds):
            rng = seeding.rng(seed, Stream.PAIRING, generation, r)
            drawn = self.graphs[k].matching(self.pairs_per_round, rng)
            out[k] = [(self._index[a], self._index[b]) for a, b in drawn]
        return out

    def start_round(self, t: int) -> None:
        """Clear every agent's memory when round ``t`` starts an episode."""
        if t % self.episode_rounds == 0:
            self.memory[:] = 0

    def states(self, agents: np.ndarray, mode: ObservationMode) -> np.ndarray:
        """The observation of ``agents`` (S, K) when they next act, as (S, K, D) int8.

        ``"history"``: the env's history codes then the paired flag, 1 (an agent acts only
        when paired); ``"none"``: the constant ``[0]``.
        """
        s, k = agents.shape
        if ObservationMode(mode) is ObservationMode.NONE:
            return np.zeros((s, k, 1), dtype=np.int8)
        rows = self.memory[np.arange(s)[:, None], agents].reshape(s, k, -1)
        return np.concatenate([rows, np.ones((s, k, 1), dtype=np.int8)], axis=-1)

    def empty_state(self, mode: ObservationMode) -> np.ndarray:
        """The observation an agent acts on first in an episode: (D,) int8."""
        if ObservationMode(mode) is ObservationMode.NONE:
            return np.zeros(1, dtype=np.int8)
        return np.concatenate([np.zeros(3 * self.game.rules.memory, np.int8), [1]]).astype(np.int8)

    def play(self, pairs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Play one round: ``actions`` (S, P, 2) name indices of each pair's two seats.

        Returns the rewards (S, P, 2) and appends the interactions to the paired
        agents' memories.
        """
        own, other = actions, actions[..., ::-1]
        rewards = self.payoffs[own, other]
        h = self.game.rules.memory
        if h:
            seat = (np.arange(self.num_seeds)[:, None, None], pairs)
            codes = np.stack([own + 1, other + 1, np.sign(rewards).astype(np.int64) + 2], -1)
            self.memory[seat] = np.concatenate(
                [self.memory[seat][..., 1:, :], codes[..., None, :].astype(np.int8)], axis=-2
            )
        return rewards
