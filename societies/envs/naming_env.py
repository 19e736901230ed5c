"""The naming game as a PettingZoo ``ParallelEnv``, for multi-agent RL baselines.

The rules are those the LLM societies play: payoffs come from
:meth:`societies.games.naming_game.NamingGame.payoff`, the pairs of each round from
:meth:`societies.topology.InteractionGraph.matching` on the graph of ``network`` (an
experiment config's ``network:`` section; default the complete graph, where a matching is
:func:`societies.topology.sample_pairs`), drawn from the same seeded stream as the
society's :meth:`NamingGame.turns <societies.games.naming_game.NamingGame.turns>`
(``Stream.PAIRING`` keyed by generation and round). Root seed s plays
``network.graph(agents, s)``, the graph a society run of ``run.seed = s`` plays (drawn
from the seed's graph stream; a ring lattice or an edge list is the same for every seed).
With agents ``agent_00``.. and the same root seed, generation, network and
``pairs_per_round``, an episode meets exactly the pairs an LLM society's generation meets:
on a ring, only ring edges.

Choices made here (the paper fixes none of them for RL):

- One ``step`` is one round: ``pairs_per_round`` disjoint pairs play, every other agent
  idles. Every live agent may send an action; only paired agents' actions count, and a
  paired agent without an action is an error. Idle agents get reward 0.
- An action is an index into ``rules.names`` in their fixed order. LLM prompts shuffle
  the names against a first-option bias (the embedded model: 0.48 on the first of 10); a tabular or neural policy has no
  such bias, so the RL env never shuffles.
- Reward is the game's payoff (+100 / -50 by default), unscaled; scale in the learner.
- Observations (``observation=``):

  * ``"history"``: the agent's last ``rules.memory`` interactions, oldest first and
    right-aligned (the last slot is the latest, as in the prompt), each as three codes
    ``(own name + 1, partner's name + 1, payoff sign + 2)`` with 0 marking an empty slot,
    then a flag that is 1 when the agent is paired in the coming round. A
    ``MultiDiscrete`` space, so ``tuple(obs)`` is a key for a tabular learner.
  * ``"none"``: a constant ``[0]`` in ``MultiDiscrete([1])``, for stateless learners.

- The episode is truncated (never terminated) after ``rounds`` steps.

Seeding: ``reset(seed=s)`` fixes the whole episode (generation 0 of root seed ``s``,
on its graph ``env.graph``);
``options={"generation": g}`` picks another generation. ``reset()`` without a seed plays
the next generation of the same root seed (a fresh random root seed on the first reset).
Other option keys are ignored: PettingZoo's conformance test passes arbitrary ones.
``pairs_per_round`` beyond N/2 is refused at construction; beyond the largest matching of
a seed's graph, at the reset that draws it (a random family's graph is the seed's), as
the society refuses it when it builds its game.
"""

from __future__ import annotations

import string
from collections import deque
from collections.abc import Mapping
from enum import Enum
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from societies import seeding
from societies.envs.episodes import action_index, next_episode
from societies.games.naming_game import NamingGame, NamingGameRules
from societies.population_spec import agent_names
from societies.seeding import Stream
from societies.topology import InteractionGraph, NetworkSpec, Topology, sample_pairs

EMPTY = 0  # code of an empty history slot (names are coded 1..W)
SIGN_CODES = 4  # empty, payoff < 0, payoff == 0, payoff > 0


class ObservationMode(str, Enum):
    HISTORY = "history"  # last `memory` interactions + "paired this round" flag
    NONE = "none"  # a constant: stateless learners


def default_rules() -> NamingGameRules:
    """The paper's W=10 names (as letters A..J), memory 5, +100 / -50."""
    return NamingGameRules(names=tuple(string.ascii_uppercase[:10]))


class NamingGameEnv(ParallelEnv):
    """Repeated naming game among ``num_agents`` agents; one step is one round.

    Args:
        rules: names, memory length (history observations) and payoffs.
        num_agents: population size N (the paper's is 24).
        pairs_per_round: disjoint pairs per round, 1..N/2 (default N/2: everyone plays).
        rounds: steps before truncation.
        observation: ``"history"`` or ``"none"`` (see the module docstring).
        render_mode: only ``None``.
        network: the graph pairs are drawn on, root seed s playing ``network.graph(agents,
            s)`` as a society of root seed s does; None: the complete graph.
    """

    metadata = {"name": "folkways_naming_game_v0", "is_parallelizable": True, "render_modes": []}

    def __init__(
        self,
        rules: NamingGameRules | None = None,
        num_agents: int = 24,
        pairs_per_round: int | None = None,
        rounds: int = 100,
        observation: ObservationMode | str = ObservationMode.HISTORY,
        render_mode: str | None = None,
        network: NetworkSpec | None = None,
    ) -> None:
        if render_mode is not None:
            raise ValueError(f"render_mode={render_mode!r}; this env renders nothing (None)")
        if not isinstance(num_agents, int) or num_agents < 2:
            raise ValueError(f"num_agents={num_agents!r}; expected an integer >= 2")
        if not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds={rounds!r}; expected an integer >= 1")
        try:
            self.observation_mode = ObservationMode(observation)
        except ValueError:
            modes = [m.value for m in ObservationMode]
            raise ValueError(f"observation={observation!r}; expected one of {modes}") from None
        if network is not None and not isinstance(network, NetworkSpec):
            raise ValueError(
                f"network={network!r}; expected a NetworkSpec (an experiment config's "
                "network: section) or None (the complete graph)"
            )
        self.network = NetworkSpec() if network is None else network
        self.game = NamingGame(rules if rules is not None else default_rules())
        self.names = self.game.options
        self.pairs_per_round = num_agents // 2 if pairs_per_round is None else pairs_per_round
        self.rounds = rounds
        self.render_mode = render_mode
        self.possible_agents = agent_names(num_agents)
        self.agents: list[str] = []
        # sample_pairs owns the check on pairs_per_round; call it once to fail here, not at reset
        sample_pairs(
            Topology.COMPLETE, self.possible_agents, self.pairs_per_round, np.random.default_rng(0)
        )

        w, h = len(self.names), self.game.rules.memory
        if self.observation_mode is ObservationMode.HISTORY:
            nvec = np.array([w + 1, w + 1, SIGN_CODES] * h + [2], dtype=np.int64)
        else:
            nvec = np.array([1], dtype=np.int64)
        # one object per agent, built once: PettingZoo requires the same object every call
        self._observation_spaces = {
            a: spaces.MultiDiscrete(nvec, dtype=np.int64) for a in self.possible_agents
        }
        self._action_spaces = {a: spaces.Discrete(w) for a in self.possible_agents}

        self.root_seed: int | None = None
        self.graph: InteractionGraph | None = None  # the root seed's graph, drawn at reset
        self.generation = 0
        self.round = 0  # index of the coming round
        self.pairs: list[tuple[str, str]] = []  # the coming round's pairs
        self._partner: dict[str, str] = {}
        self._memory: dict[str, deque[tuple[int, int, int]]] = {}

    def observation_space(self, agent: str) -> spaces.MultiDiscrete:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._action_spaces[agent]

    def pairs_of_round(self, round_index: int) -> list[tuple[str, str]]:
        """The pairs of ``round_index`` in this episode: the LLM society's draw."""
        rng = seeding.rng(self.root_seed, Stream.PAIRING, self.generation, round_index)
        return self.graph.matching(self.pairs_per_round, rng)

    def reset(
        self, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        root_seed, generation = next_episode(self.root_seed, self.generation, seed, options)
        if self.graph is None or root_seed != self.root_seed:  # same root seed, same graph
            graph = self.network.graph(self.possible_agents, root_seed)
            graph.check_pairs_per_round(self.pairs_per_round)  # as the society's build_game
            self.graph = graph
        self.root_seed, self.generation = root_seed, generation
        self.agents = list(self.possible_agents)
        self.round = 0
        self._memory = {a: deque(maxlen=self.game.rules.memory) for a in self.agents}
        self._set_pairs()
        infos = {a: {"next_partner": self._partner.get(a)} for a in self.agents}
        return self._observations(), infos

    def step(
        self, actions: Mapping[str, Any]
    ) -> tuple[
        dict[str, np.ndarray],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        if not self.agents:
            raise RuntimeError("step() after the episode ended; call reset() first")
        live = list(self.agents)
        chosen = {a: self._action(actions, a) for a in self._partner}
        rewards = dict.fromkeys(live, 0.0)
        infos: dict[str, dict[str, Any]] = {
            a: {
                "round": self.round,
                "acted": False,
                "partner": None,
                "action": None,
                "partner_action": None,
            }
            for a in live
        }
        for a, b in self.pairs:
            for me, other in ((a, b), (b, a)):
                payoff = float(self.game.payoff(self.names[chosen[me]], self.names[chosen[other]]))
                rewards[me] = payoff
                infos[me].update(
                    acted=True, partner=other, action=chosen[me], partner_action=chosen[other]
                )
                sign = int(np.sign(payoff)) + 2  # 1, 2, 3; 0 is an empty slot
                self._memory[me].append((chosen[me] + 1, chosen[other] + 1, sign))

        self.round += 1
        done = self.round >= self.rounds
        if done:
            self.pairs, self._partner = [], {}
        else:
            self._set_pairs()
        for a in live:
            infos[a]["next_partner"] = self._partner.get(a)
        observations = self._observations(live)
        terminations = dict.fromkeys(live, False)
        truncations = dict.fromkeys(live, done)
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def render(self) -> None:
        """Nothing to render (``render_mode`` is always None)."""
        return None

    # ---- internals ------------------------------------------------------------------

    def _set_pairs(self) -> None:
        self.pairs = self.pairs_of_round(self.round)
        self._partner = {}
        for a, b in self.pairs:
            self._partner[a], self._partner[b] = b, a

    def _action(self, actions: Mapping[str, Any], agent: str) -> int:
        return action_index(
            actions,
            agent,
            self.names,
            f"which is paired with {self._partner[agent]!r} in round {self.round}; idle agents may omit theirs",
        )

    def _observations(self, agents: list[str] | None = None) -> dict[str, np.ndarray]:
        agents = self.agents if agents is None else agents
        if self.observation_mode is ObservationMode.NONE:
            return {a: np.zeros(1, dtype=np.int64) for a in agents}
        h = self.game.rules.memory
        out = {}
        for a in agents:
            obs = np.full(3 * h + 1, EMPTY, dtype=np.int64)
            slots = list(self._memory[a])
            start = h - len(slots)  # right-aligned: the latest interaction is last
            for i, codes in enumerate(slots):
                obs[3 * (start + i) : 3 * (start + i) + 3] = codes
            obs[-1] = int(a in self._partner)
            out[a] = obs
        return out
