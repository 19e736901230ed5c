"""One seed of :class:`societies.envs.DonorGameEnv`, stepped with index arrays.

The tabular learners drive the PettingZoo env itself: a donor-game episode is 12 rounds
among 12 agents, cheap enough to play a few hundred times per seed. This wrapper turns
the env's dicts into arrays: the coming round's donors (agent indices), their states
and, after a step, their rewards and every agent's reward.

States (``observation``):

- ``"none"``: one constant state, for stateless learners;
- ``"history"``: the recipient's reputation as the env shows it, feature 2 (the share
  it gave the last time it was a donor, snapped to the rules' nearest level, or "no
  history yet") and feature 3 (it punished). The empty-history state is "no history".
"""

from __future__ import annotations

import numpy as np

from societies.envs.donor_env import NO_HISTORY, DonorGameEnv
from societies.envs.naming_env import ObservationMode
from societies.games.donor_game import ActionKind, DonorGameRules, resource_stats


class DonorPlay:
    """The donor game of root seed ``seed``: episode e is generation e of that seed."""

    def __init__(
        self, rules: DonorGameRules, num_agents: int, seed: int, observation: ObservationMode
    ) -> None:
        self.env = DonorGameEnv(rules, num_agents=num_agents)
        self.rules = self.env.rules
        self.seed = int(seed)
        self.observation = ObservationMode(observation)
        self.agent_names = list(self.env.possible_agents)
        self._levels = np.asarray(self.rules.fractions)
        self._obs: dict[str, np.ndarray] = {}
        self._infos: dict[str, dict] = {}

    @property
    def num_agents(self) -> int:
        return len(self.agent_names)

    @property
    def num_options(self) -> int:
        return len(self.env.choices)

    def reset(self, episode: int) -> None:
        """Start episode ``episode`` (generation ``episode`` of the seed)."""
        self._obs, self._infos = self.env.reset(seed=self.seed, options={"generation": episode})

    @property
    def done(self) -> bool:
        return not self.env.agents

    def donors(self) -> tuple[np.ndarray, np.ndarray]:
        """The coming round's donors (K,) and their states (K, D)."""
        names = [a for a in self.agent_names if self._infos[a]["next_role"] == "donor"]
        donors = np.array([self.agent_names.index(a) for a in names], dtype=np.int64)
        states = np.stack([self._state(self._obs[a]) for a in names])
        return donors, states

    def empty_state(self) -> np.ndarray:
        """The state a donor facing a recipient without history is in: (D,)."""
        return np.zeros(1 if self.observation is ObservationMode.NONE else 2, dtype=np.int8)

    def step(self, donors: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Play the round: ``actions`` (K,) option indices of ``donors``; returns every
        agent's reward (N,), its change in resources."""
        obs, rewards, _, _, infos = self.env.step(
            {self.agent_names[d]: int(a) for d, a in zip(donors, actions, strict=True)}
        )
        self._obs, self._infos = obs, infos
        return np.array([rewards[a] for a in self.agent_names])

    def pairings(self, round_index: int, donors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each of ``donors`` (K,) sits in round ``round_index`` of this episode's
        schedule, and its recipient (agent index): two (K,) arrays."""
        schedule = self.env.schedule[round_index]
        seats = {p.donor: (i, self.agent_names.index(p.recipient)) for i, p in enumerate(schedule)}
        pair, recipient = zip(*(seats[self.agent_names[d]] for d in donors.tolist()), strict=True)
        return np.array(pair, dtype=np.int64), np.array(recipient, dtype=np.int64)

    def round_donation(self, round_index: int) -> float:
        """Mean share given by the donors of ``round_index`` in this episode (punishing: 0)."""
        shares = [
            e.fraction if e.kind is ActionKind.DONATE else 0.0
            for e in self.env.events
            if e.round == round_index
        ]
        return float(np.mean(shares))

    def mean_resources(self) -> float:
        return resource_stats(self.env.resources).mean

    def _state(self, obs: np.ndarray) -> np.ndarray:
        if self.observation is ObservationMode.NONE:
            return np.zeros(1, dtype=np.int8)
        given, punished = float(obs[2]), int(obs[3])
        if given == NO_HISTORY:
            return np.array([0, punished], dtype=np.int8)
        level = int(np.argmin(np.abs(self._levels - given)))
        return np.array([level + 1, punished], dtype=np.int8)
