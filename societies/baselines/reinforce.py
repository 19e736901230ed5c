"""REINFORCE with a population-mean baseline on the naming and donor games.

Every agent has its own tabular softmax policy, pi(a | s) = softmax(theta[s])_a, and
after each episode takes one policy-gradient step (Williams 1992, Machine Learning
8:229, "Simple statistical gradient-following algorithms for connectionist
reinforcement learning"):

    theta[s_t] += lr * (G_t - b_t) / scale * (onehot(a_t) - pi(. | s_t))

for each decision (s_t, a_t) the agent took in the episode, where G_t is its discounted
reward-to-go from round t to the end of the episode (``gamma`` per round; idle and
recipient rounds add their rewards) and the baseline b_t is the mean G_t of the agents
that decided in the same round: the population-mean baseline. ``scale`` is the game's
reward unit (naming game: payoff_match - payoff_mismatch; donor game: the endowment), so
``learning_rate`` does not depend on how payoffs are expressed. The policy is fixed
within an episode. States are those of ``iql.py`` (``none`` or ``history``); a fresh
policy is uniform, so a fresh population has no most probable choice (convergence.py).

Known behaviour: a softmax policy that has become nearly deterministic has a vanishing
gradient (onehot - pi ~ 0), so an agent locked into a minority name escapes only slowly
(Mei et al. 2020, "On the global convergence rates of softmax policy gradient
methods", ICML). On the naming game (N = 24, W = 10, lr 0.5, episodes of 5 rounds)
about 9 seeds in 10 reach consensus within 1500 rounds; the others end with one or two
such agents while the rest agree.

The naming game runs all seeds at once on :class:`VecNamingGame` (pairs on the edges of
``network``'s graph, as the society draws them); the donor game steps
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
class ReinforceArgs:
    game: Game = Game.NAMING_GAME
    """``naming_game`` or ``donor_game``."""
    num_agents: int = 24
    rounds: int = 500
    """Rounds per seed (donor game: rounded up to whole games of ``rules.rounds``)."""
    observation: ObservationMode = ObservationMode.NONE
    """``none`` (stateless) or ``history``."""
    learning_rate: float | None = None
    """Step on the logits per unit of scaled advantage; None: 0.5 on the naming game,
    0.1 on the donor game (larger steps lock donors into the level they happened to
    give when rich; see tests/test_baselines_tabular.py)."""
    gamma: float = 0.0
    """Discount per round of the reward-to-go; 0: each decision is credited with its
    round's payoff only (the naming game's payoff is immediate)."""
    episode_rounds: int = 5
    """Naming game: rounds per episode, i.e. per policy update; memories are cleared
    between episodes. The donor game's episode is its ``rules.rounds``."""
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
        check(
            self.learning_rate is None or 0.0 < self.learning_rate < 1e3,
            "learning_rate",
            self.learning_rate,
            "null (per game) or 0 < lr < 1000",
        )
        check(0.0 <= self.gamma <= 1.0, "gamma", self.gamma, "a discount in [0, 1]")

    @property
    def step_size(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 0.5 if self.game is Game.NAMING_GAME else 0.1

    @property
    def reward_scale(self) -> float:
        if isinstance(self.rules, NamingGameRules):
            return abs(self.rules.payoff_match - self.rules.payoff_mismatch) or 1.0
        return self.rules.endowment


def run(args: ReinforceArgs, seeds: Sequence[int], log: PlayLog | None = None) -> list[SeedResult]:
    """One :class:`SeedResult` per root seed, in the order of ``seeds``.

    A seed's result does not depend on which other seeds run with it. With ``log``,
    every decision and the policies around it are recorded there
    (:mod:`~societies.baselines.play_log`).
    """
    seeds = [int(s) for s in seeds]
    check(len(seeds) >= 1, "seeds", seeds, "at least one root seed")
    if args.game is Game.NAMING_GAME:
        return _run_naming(args, seeds, log)
    return [_run_donor(args, seed, log) for seed in seeds]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def sample(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One option per row of ``probs`` (..., W) by inverting its CDF at ``u`` (...)."""
    cdf = np.cumsum(probs, axis=-1)
    return np.minimum((u[..., None] >= cdf).sum(axis=-1), probs.shape[-1] - 1)


def reward_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """``G[..., t, :] = sum_k gamma^k rewards[..., t + k, :]`` over the round axis -2."""
    out = np.array(rewards, dtype=float)
    for t in range(out.shape[-2] - 2, -1, -1):
        out[..., t, :] += gamma * out[..., t + 1, :]
    return out


def policy_step(
    table: ValueTable,
    rows: np.ndarray,
    actions: np.ndarray,
    agents: np.ndarray,
    rewards: np.ndarray,
    args: ReinforceArgs,
) -> None:
    """One REINFORCE step from an episode of T rounds with K deciders per round.

    ``rows``, ``actions``, ``agents``: (S, T, K); ``rewards``: every agent's reward per
    round (S, T, N).
    """
    g = reward_to_go(rewards, args.gamma)
    returns = np.take_along_axis(g, agents, axis=-1)  # (S, T, K)
    advantage = (returns - returns.mean(axis=-1, keepdims=True)) / args.reward_scale
    w = table.num_options
    grad = np.eye(w)[actions] - softmax(table.values[rows])  # policy fixed in the episode
    step = args.step_size * advantage[..., None] * grad
    np.add.at(table.values, rows.ravel(), step.reshape(-1, w))


def _run_naming(args: ReinforceArgs, seeds: list[int], log: PlayLog | None) -> list[SeedResult]:
    game = VecNamingGame(
        args.rules, args.num_agents, args.pairs_per_round, args.episode_rounds, seeds, args.network
    )
    s, n = len(seeds), args.num_agents
    table = ValueTable(len(game.names))
    everyone = np.tile(np.arange(n), (s, 1))
    empty = game.empty_state(args.observation)
    empty_rows = table.rows(everyone, np.broadcast_to(empty, (s, n, len(empty))))
    rngs = [seeding.rng(seed, Stream.SAMPLING, Method.REINFORCE.value) for seed in seeds]
    progress = NamingProgress(s, args.rounds)
    episode: list[tuple[np.ndarray, ...]] = []
    rec = None
    if log is not None:
        rec = log.start(Method.REINFORCE, "player", game.names, game.agent_names, seeds)
        rec.policy(softmax(table.values[empty_rows]))

    for t in range(args.rounds):
        game.start_round(t)
        pairs = game.pairs(t)
        agents = pairs.reshape(s, -1)
        rows = table.rows(agents, game.states(agents, args.observation))
        u = np.stack([rng.random(agents.shape[1]) for rng in rngs])
        probs = softmax(table.values[rows])
        actions = sample(probs, u)
        rewards = game.play(pairs, actions.reshape(pairs.shape)).reshape(s, -1)
        per_agent = np.zeros((s, n))
        per_agent[np.arange(s)[:, None], agents] = rewards
        episode.append((rows, actions, agents, per_agent))
        if (t + 1) % args.episode_rounds == 0 or t + 1 == args.rounds:
            stacked = [np.stack(parts, axis=1) for parts in zip(*episode, strict=True)]
            policy_step(table, *stacked, args)
            episode = []

        progress.record(t, table.values[empty_rows], actions.reshape(pairs.shape))
        if rec is not None:
            rec.naming(args.episode_rounds, t, pairs, probs, actions, rewards)

    if rec is not None:
        rec.policy(softmax(table.values[empty_rows]))
        rec.finish(progress.held)
    return progress.results(Method.REINFORCE, seeds, game.names, args.window)


def _run_donor(args: ReinforceArgs, seed: int, log: PlayLog | None) -> SeedResult:
    play = DonorPlay(args.rules, args.num_agents, seed, args.observation)
    n, per_game = play.num_agents, play.rules.rounds
    episodes = -(-args.rounds // per_game)
    table = ValueTable(play.num_options)
    empty = play.empty_state()
    empty_rows = table.rows(np.arange(n)[None], np.broadcast_to(empty, (1, n, len(empty))))
    rng = seeding.rng(seed, Stream.SAMPLING, Method.REINFORCE.value)
    held, agree, donation = [], [], []
    rec = None
    if log is not None:
        rec = log.start(Method.REINFORCE, "donor", play.env.options, play.agent_names, [seed])
        rec.policy(softmax(table.values[empty_rows]))

    for e in range(episodes):
        play.reset(e)
        episode = []
        for r in range(per_game):
            donors, states = play.donors()
            rows = table.rows(donors[None], states[None])
            probs = softmax(table.values[rows])
            actions = sample(probs, rng.random((1, len(donors))))
            rewards = play.step(donors, actions[0])
            episode.append((rows, actions, donors[None], rewards[None]))
            donation.append(play.round_donation(r))
            if r + 1 < per_game:
                _log(table, empty_rows, held, agree)
            if rec is not None:
                rec.donor(e, r, play, donors, probs, actions, rewards)
        stacked = [np.stack(parts, axis=1) for parts in zip(*episode, strict=True)]
        policy_step(table, *stacked, args)
        _log(table, empty_rows, held, agree)
        if rec is not None:
            rec.policy(softmax(table.values[empty_rows]))

    if rec is not None:
        rec.finish(np.array(held)[None])
    at = convergence.converged_round(np.array(held))
    return SeedResult(
        method=Method.REINFORCE,
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


def _log(table: ValueTable, empty_rows: np.ndarray, held: list, agree: list) -> None:
    choices = convergence.most_probable(table.values[empty_rows])
    held.append(int(convergence.consensus(choices)[0]))
    agree.append(float(convergence.agreement(choices)[0]))
