"""The donor game as a PettingZoo ``ParallelEnv``, for multi-agent RL baselines.

The rules are those the LLM societies play: the round's pairings come from
:func:`societies.games.donor_game.game_schedule` (two seeded halves, alternating roles,
no donor meets the same recipient twice), an action is one of the rules' options
(:attr:`DonorGameRules.choices`: the donation levels, then the punishment levels when
punishment is on), and resources and rewards come from :meth:`DonorGame.resolve_round`.

Choices made here:

- One ``step`` is one round of the schedule. Donors' actions count; recipients' actions
  are ignored (they may be omitted). A donor without an action is an error.
- Reward is the agent's change in resources in the round (the game's payoff): negative
  for a donor that gives, positive for its recipient. An agent's episode return is its
  final resources minus the endowment, the paper's score up to a constant.
- The observation (``Box`` of 6 float32) describes the coming round, from the agent's
  side; its partner is its recipient if it donates, its donor otherwise:

  0. own resources / the society's mean resources (1 = average; 0..N);
  1. the partner's resources / the same mean;
  2. the share the partner gave the last time it was a donor, 0 if it punished, -1 if
     it has not been a donor yet (the first line of the paper's reputation trace; the
     deeper hops of ``history_hops`` are not encoded);
  3. 1 if the partner's last act as a donor was a punishment, else 0;
  4. 1 if the agent is the donor in the coming round, else 0;
  5. the coming round's index / ``rules.rounds`` (1 in the final observation).

  Resources are shown relative to the mean because they grow geometrically (up to
  ``m^(R-1) (1 + m) E``, 61,440 units for the paper's game) and a bounded, scale-free
  feature suits learners better; absolute resources are in the infos and in
  :attr:`DonorGameEnv.resources`. The final observation has no coming round, hence no
  partner: ``[own, 0, -1, 0, 0, 1]``.
- The episode is truncated (never terminated) after ``rules.rounds`` steps.

Seeding: the schedule is drawn from ``seeding.rng(root_seed, Stream.PAIRING,
generation)``; ``reset(seed=s)`` plays generation 0 of root seed ``s``,
``options={"generation": g}`` another generation, and ``reset()`` without a seed the next
generation (a fresh random root seed on the first reset). Other option keys are ignored:
PettingZoo's conformance test passes arbitrary ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from societies import seeding
from societies.envs.episodes import action_index, next_episode
from societies.games.donor_game import (
    ActionKind,
    DonationEvent,
    DonorAction,
    DonorGame,
    DonorGameRules,
    Pairing,
    game_schedule,
    last_as_donor,
)
from societies.population_spec import agent_names
from societies.seeding import Stream

OBSERVATION_SIZE = 6
NO_HISTORY = -1.0  # feature 2 when the partner has not been a donor yet


class DonorGameEnv(ParallelEnv):
    """Donor game among ``num_agents`` agents; one step is one round of the schedule.

    Args:
        rules: endowment, multiplier, donation levels, punishment and number of rounds.
        num_agents: population size N, even; ``rules.rounds`` must be <= N so that no
            donor meets the same recipient twice (the paper: N=12, 12 rounds).
        render_mode: only ``None``.
    """

    metadata = {"name": "folkways_donor_game_v0", "is_parallelizable": True, "render_modes": []}

    def __init__(
        self,
        rules: DonorGameRules | None = None,
        num_agents: int = 12,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise ValueError(f"render_mode={render_mode!r}; this env renders nothing (None)")
        if not isinstance(num_agents, int):
            raise ValueError(f"num_agents={num_agents!r}; expected an even integer >= 2")
        self.game = DonorGame(rules if rules is not None else DonorGameRules())
        self.rules = self.game.rules
        self.choices = self.rules.choices
        self.options = self.rules.options
        self.render_mode = render_mode
        self.possible_agents = agent_names(num_agents)
        self.agents: list[str] = []
        # game_schedule owns the checks on N and rounds; call it once to fail here
        game_schedule(self.possible_agents, self.rules.rounds, np.random.default_rng(0))

        n = float(num_agents)
        low = np.array([0.0, 0.0, NO_HISTORY, 0.0, 0.0, 0.0], dtype=np.float32)
        high = np.array([n, n, 1.0, 1.0, 1.0, 1.0], dtype=np.float32)
        # one object per agent, built once: PettingZoo requires the same object every call
        self._observation_spaces = {
            a: spaces.Box(low, high, dtype=np.float32) for a in self.possible_agents
        }
        self._action_spaces = {a: spaces.Discrete(len(self.choices)) for a in self.possible_agents}

        self.root_seed: int | None = None
        self.generation = 0
        self.round = 0  # index of the coming round
        self.schedule: tuple[tuple[Pairing, ...], ...] = ()
        self.resources: dict[str, float] = {}
        self.events: list[DonationEvent] = []

    def observation_space(self, agent: str) -> spaces.Box:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._action_spaces[agent]

    def reset(
        self, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        self.root_seed, self.generation = next_episode(
            self.root_seed, self.generation, seed, options
        )
        rng = seeding.rng(self.root_seed, Stream.PAIRING, self.generation)
        self.schedule = game_schedule(self.possible_agents, self.rules.rounds, rng)
        self.agents = list(self.possible_agents)
        self.round = 0
        self.resources = dict.fromkeys(self.agents, self.rules.endowment)
        self.events = []
        infos = {a: self._next_info(a) for a in self.agents}
        return self._observations(self.agents), infos

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
        r = self.round
        pairings = self.schedule[r]
        chosen = {p.donor: self._action(actions, p.donor) for p in pairings}
        donor_actions = [
            DonorAction(p.donor, p.recipient, self.choices[chosen[p.donor]]) for p in pairings
        ]
        outcome = self.game.resolve_round(r, self.resources, donor_actions)
        self.resources = outcome.resources
        self.events.extend(outcome.events)

        infos: dict[str, dict[str, Any]] = {}
        for p in pairings:
            option = self.options[chosen[p.donor]]
            infos[p.donor] = {
                "role": "donor",
                "partner": p.recipient,
                "acted": True,
                "action": chosen[p.donor],
                "option": option,
            }
            infos[p.recipient] = {
                "role": "recipient",
                "partner": p.donor,
                "acted": False,
                "action": None,
                "option": None,
            }
        self.round += 1
        done = self.round >= self.rules.rounds
        for a in live:
            infos[a].update(round=r, **self._next_info(a))
        rewards = {a: float(outcome.payoffs[a]) for a in live}
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

    def _coming(self, agent: str) -> tuple[str | None, bool]:
        """``(partner, is_donor)`` of ``agent`` in the coming round; (None, False) after the end."""
        if self.round >= self.rules.rounds:
            return None, False
        for p in self.schedule[self.round]:
            if p.donor == agent:
                return p.recipient, True
            if p.recipient == agent:
                return p.donor, False
        raise AssertionError(f"{agent!r} has no pairing in round {self.round}")  # pragma: no cover

    def _next_info(self, agent: str) -> dict[str, Any]:
        partner, is_donor = self._coming(agent)
        role = None if partner is None else ("donor" if is_donor else "recipient")
        return {"resources": self.resources[agent], "next_partner": partner, "next_role": role}

    def _action(self, actions: Mapping[str, Any], donor: str) -> int:
        return action_index(
            actions,
            donor,
            self.options,
            f"the donor in round {self.round}; recipients may omit theirs",
        )

    def _observations(self, agents: list[str]) -> dict[str, np.ndarray]:
        n = len(self.possible_agents)
        total = float(sum(self.resources.values()))
        # relative to the mean; all-zero resources (possible with punishment) show as 0
        scale = n / total if total > 0 else 0.0
        progress = self.round / self.rules.rounds
        space = self._observation_spaces[self.possible_agents[0]]
        out = {}
        for a in agents:
            partner, is_donor = self._coming(a)
            last = None if partner is None else last_as_donor(partner, self.events)
            if last is None:
                given, punished = NO_HISTORY, 0.0
            elif last.kind is ActionKind.PUNISH:
                given, punished = 0.0, 1.0
            else:
                given, punished = last.fraction, 0.0
            partner_units = 0.0 if partner is None else self.resources[partner]
            obs = np.array(
                [
                    self.resources[a] * scale,
                    partner_units * scale,
                    given,
                    punished,
                    float(is_donor),
                    progress,
                ],
                dtype=np.float32,
            )
            # float rounding must not step outside the space (own share * N can be N + ulp)
            out[a] = np.clip(obs, space.low, space.high)
        return out
