"""Independent Q-learning (IQL) on the naming and donor games: a tabula-rasa baseline.

Every agent learns its own table Q(s, a) from its own rewards and treats the others as
part of the environment: the "independent learners" of Claus & Boutilier (1998, AAAI,
"The dynamics of reinforcement learning in cooperative multiagent systems"), with the
Q-learning update of Watkins & Dayan (1992, Machine Learning 8:279). Actions are
epsilon-greedy; ties between greedy actions are broken uniformly at random, so a fresh
population (all Q = 0) does not all say the first name.

States (``observation``): ``"none"`` is one constant state (a bandit per agent);
``"history"`` is the env's history observation (naming game: the last ``memory``
interactions; donor game: the recipient's reputation, see ``donor_play.py``).

Discounting is per round between an agent's own decisions: the target of the decision
taken in round t and followed by the agent's next decision in round t + k is
``r_t + g r_{t+1} + ... + g^(k-1) r_{t+k-1} + g^k max_a Q(s', a)`` (a semi-MDP update, so
idle rounds and the donor's recipient rounds count); the end of an episode is terminal.
With the default ``gamma = 0`` Q(s, a) estimates the payoff of saying a in s.

The naming game runs all seeds at once on :class:`VecNamingGame` (the env's pairs,
payoffs and observations; on a ``network`` other than the complete graph, pairs are
drawn on its edges as the society draws them); the donor game steps
:class:`DonorGameEnv` seed by seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from societies import seeding
from societies.baselines import convergence
from societies.baselines.donor_play import DonorPlay
from societies.baselines.learner_games import (
    check,
    check_common,
    check_network,
    game_rules,
    learner_game,
    observation_mode,
)
from societies.baselines.naming_progress import NamingProgress
from societies.baselines.naming_vec import VecNamingGame
from societies.baselines.play_log import PlayLog
from societies.baselines.records import Game, Method, RoundSeries, SeedResult
from societies.baselines.tables import ValueTable
from societies.envs.naming_env import ObservationMode
from societies.games.donor_game import DonorGameRules
from societies.games.naming_game import NamingGameRules
from societies.seeding import Stream
from societies.topology import NetworkSpec


@dataclass(frozen=True)
class IqlArgs:
    game: Game = Game.NAMING_GAME
    """``naming_game`` or ``donor_game``."""
    num_agents: int = 24
    rounds: int = 500
    """Rounds per seed (donor game: rounded up to whole games of ``rules.rounds``)."""
    observation: ObservationMode = ObservationMode.NONE
    """``none`` (stateless) or ``history``."""
    epsilon: float = 0.05
    """Probability of a uniformly random action."""
    alpha: float = 0.1
    """Learning rate of the Q update."""
    gamma: float = 0.0
    """Discount per round; 0: myopic."""
    episode_rounds: int = 40
    """Naming game: rounds per episode, after which memories are cleared (an experiment
    config's ``game.rounds``). The donor game's episode is its ``rules.rounds``."""
    pairs_per_round: int | None = None
    """Naming game: disjoint pairs per round; None: N/2, everyone plays."""
    network: NetworkSpec = field(default_factory=NetworkSpec)
    """Naming game: the graph whose edges pairs are drawn on, seed s playing the graph a
    society of root seed s plays (an experiment config's ``network:``); default complete.
    The donor game plays the complete graph (its schedule is the paper's)."""
    window: int = 10
    """``final_success`` averages the last ``window`` rounds."""
    rules: NamingGameRules | DonorGameRules | None = None
    """The game's rules; None: the env's defaults."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "game", learner_game(self.game))
        object.__setattr__(self, "observation", observation_mode(self.observation))
        object.__setattr__(self, "rules", game_rules(self.game, self.rules))
        check_common(
            self.num_agents, self.rounds, self.episode_rounds, self.pairs_per_round, self.window
        )
        check_network(self.game, self.network)
        check(0.0 <= self.epsilon <= 1.0, "epsilon", self.epsilon, "a probability in [0, 1]")
        check(0.0 < self.alpha <= 1.0, "alpha", self.alpha, "a learning rate in (0, 1]")
        check(0.0 <= self.gamma <= 1.0, "gamma", self.gamma, "a discount in [0, 1]")


def run(args: IqlArgs, seeds: Sequence[int], log: PlayLog | None = None) -> list[SeedResult]:
    """One :class:`SeedResult` per root seed, in the order of ``seeds``.

    A seed's result does not depend on which other seeds run with it: each seed draws
    its pairs and its exploration from its own streams. With ``log``, every decision
    and the policies around it are recorded there (:mod:`~societies.baselines.play_log`).
    """
    seeds = [int(s) for s in seeds]
    check(len(seeds) >= 1, "seeds", seeds, "at least one root seed")
    if args.game is Game.NAMING_GAME:
        return _run_naming(args, seeds, log)
    return [_run_donor(args, seed, log) for seed in seeds]


def epsilon_greedy(q: np.ndarray, u: np.ndarray, epsilon: float) -> np.ndarray:
    """Actions for Q-values ``q`` (..., W) from uniforms ``u`` (..., W + 2).

    ``u[..., :W]`` breaks ties among greedy actions, ``u[..., W]`` decides exploration,
    ``u[..., W + 1]`` picks the random action.
    """
    w = q.shape[-1]
    best = q == q.max(axis=-1, keepdims=True)
    greedy = np.argmax(np.where(best, u[..., :w], -1.0), axis=-1)
    random = np.minimum((u[..., w + 1] * w).astype(np.int64), w - 1)
    return np.where(u[..., w] < epsilon, random, greedy)


def epsilon_greedy_probs(q: np.ndarray, epsilon: float) -> np.ndarray:
    """The distribution :func:`epsilon_greedy` samples from, (..., W): 1 - epsilon spread
    evenly over the greedy actions, epsilon over all W."""
    best = q == q.max(axis=-1, keepdims=True)
    return (1.0 - epsilon) * best / best.sum(axis=-1, keepdims=True) + epsilon / q.shape[-1]


class PendingUpdates:
    """Q updates waiting for each agent's next decision (see the module docstring)."""

    def __init__(self, shape: tuple[int, int], gamma: float) -> None:
        self.gamma = gamma
        self.row = np.full(shape, -1, dtype=np.int64)
        self.action = np.zeros(shape, dtype=np.int64)
        self.reward = np.zeros(shape)  # discounted rewards since the decision
        self.discount = np.zeros(shape)  # gamma ** (rounds since the decision)

    def open(self, agents: np.ndarray, rows: np.ndarray, actions: np.ndarray) -> None:
        seat = (np.arange(len(agents))[:, None], agents)
        self.row[seat], self.action[seat] = rows, actions
        self.reward[seat], self.discount[seat] = 0.0, 1.0

    def add_rewards(self, rewards: np.ndarray, table: ValueTable, alpha: float) -> None:
        """Add a round's rewards (S, N); updates whose bootstrap weight reached 0 are done."""
        waiting = self.row >= 0
        self.reward += np.where(waiting, self.discount * rewards, 0.0)
        self.discount *= self.gamma
        self._close(waiting & (self.discount == 0.0), table, alpha, None)

    def close(
        self, table: ValueTable, alpha: float, agents: np.ndarray, next_rows: np.ndarray
    ) -> None:
        """``agents`` (S, K) decide now in ``next_rows``: bootstrap their waiting updates."""
        seat = (np.arange(len(agents))[:, None], agents)
        after = np.full(self.row.shape, -1, dtype=np.int64)
        after[seat] = next_rows
        mask = np.zeros(self.row.shape, dtype=bool)
        mask[seat] = True
        self._close(mask & (self.row >= 0), table, alpha, after)

    def end_episode(self, table: ValueTable, alpha: float) -> None:
        self._close(self.row >= 0, table, alpha, None)

    def _close(
        self, mask: np.ndarray, table: ValueTable, alpha: float, after: np.ndarray | None
    ) -> None:
        if not mask.any():
            return
        rows, actions = self.row[mask], self.action[mask]
        target = self.reward[mask].copy()
        if after is not None:
            target += self.discount[mask] * table.values[after[mask]].max(axis=-1)
        q = table.values  # rows are distinct: one per (seed, agent, state)
        q[rows, actions] += alpha * (target - q[rows, actions])
        self.row[mask] = -1


def _run_naming(args: IqlArgs, seeds: list[int], log: PlayLog | None) -> list[SeedResult]:
    game = VecNamingGame(
        args.rules, args.num_agents, args.pairs_per_round, args.episode_rounds, seeds, args.network
    )
    s, n, w = len(seeds), args.num_agents, len(game.names)
    table = ValueTable(w)
    everyone = np.tile(np.arange(n), (s, 1))
    empty = game.empty_state(args.observation)
    empty_rows = table.rows(everyone, np.broadcast_to(empty, (s, n, len(empty))))
    rngs = [seeding.rng(seed, Stream.SAMPLING, Method.IQL.value) for seed in seeds]
    pending = PendingUpdates((s, n), args.gamma)
    progress = NamingProgress(s, args.rounds)
    rec = None
    if log is not None:
        rec = log.start(Method.IQL, "player", game.names, game.agent_names, seeds)
        rec.policy(epsilon_greedy_probs(table.values[empty_rows], args.epsilon))

    for t in range(args.rounds):
        if t % args.episode_rounds == 0:
            pending.end_episode(table, args.alpha)
        game.start_round(t)
        pairs = game.pairs(t)
        agents = pairs.reshape(s, -1)
        rows = table.rows(agents, game.states(agents, args.observation))
        pending.close(table, args.alpha, agents, rows)
        u = np.stack([rng.random((agents.shape[1], w + 2)) for rng in rngs])
        q = table.values[rows]
        actions = epsilon_greedy(q, u, args.epsilon)
        rewards = game.play(pairs, actions.reshape(pairs.shape)).reshape(s, -1)
        pending.open(agents, rows, actions)
        per_agent = np.zeros((s, n))
        per_agent[np.arange(s)[:, None], agents] = rewards
        pending.add_rewards(per_agent, table, args.alpha)

        progress.record(t, table.values[empty_rows], actions.reshape(pairs.shape))
        if rec is not None:
            probs = epsilon_greedy_probs(q, args.epsilon)
            rec.naming(args.episode_rounds, t, pairs, probs, actions, rewards)

    if rec is not None:
        rec.policy(epsilon_greedy_probs(table.values[empty_rows], args.epsilon))
        rec.finish(progress.held)
    return progress.results(Method.IQL, seeds, game.names, args.window)


def _run_donor(args: IqlArgs, seed: int, log: PlayLog | None) -> SeedResult:
    play = DonorPlay(args.rules, args.num_agents, seed, args.observation)
    n, w, per_game = play.num_agents, play.num_options, play.rules.rounds
    episodes = -(-args.rounds // per_game)
    table = ValueTable(w)
    empty = play.empty_state()
    empty_rows = table.rows(np.arange(n)[None], np.broadcast_to(empty, (1, n, len(empty))))
    rng = seeding.rng(seed, Stream.SAMPLING, Method.IQL.value)
    pending = PendingUpdates((1, n), args.gamma)
    held, agree, donation = [], [], []
    rec = None
    if log is not None:
        rec = log.start(Method.IQL, "donor", play.env.options, play.agent_names, [seed])
        rec.policy(epsilon_greedy_probs(table.values[empty_rows], args.epsilon))

    for episode in range(episodes):
        play.reset(episode)
        for r in range(per_game):
            donors, states = play.donors()
            rows = table.rows(donors[None], states[None])
            pending.close(table, args.alpha, donors[None], rows)
            u = rng.random((1, len(donors), w + 2))
            q = table.values[rows]
            actions = epsilon_greedy(q, u, args.epsilon)
            rewards = play.step(donors, actions[0])
            pending.open(donors[None], rows, actions)
            pending.add_rewards(rewards[None], table, args.alpha)
            choices = convergence.most_probable(table.values[empty_rows])
            held.append(int(convergence.consensus(choices)[0]))
            agree.append(float(convergence.agreement(choices)[0]))
            donation.append(play.round_donation(r))
            if rec is not None:
                probs = epsilon_greedy_probs(q, args.epsilon)
                rec.donor(episode, r, play, donors, probs, actions, rewards)
        pending.end_episode(table, args.alpha)
        if rec is not None:
            rec.policy(epsilon_greedy_probs(table.values[empty_rows], args.epsilon))

    if rec is not None:
        rec.finish(np.array(held)[None])
    at = convergence.converged_round(np.array(held))
    return SeedResult(
        method=Method.IQL,
        game=Game.DONOR_GAME,
        seed=seed,
        rounds=episodes * per_game,
        converged_round=at,
        winner=None if at is None else play.env.options[held[-1]],
        final_success=None,
        final_mean_resources=play.mean_resources(),
        final_mean_donation=float(np.mean(donation[-per_game:])),
        series=RoundSeries(agreement=tuple(agree), mean_donation=tuple(donation)),
    )
