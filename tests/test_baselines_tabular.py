"""Tabular baselines (issue #12): IQL and REINFORCE on the naming and donor games, the
vectorised naming game against the PettingZoo env and the society's pairs on a network,
and the one convergence definition."""

from __future__ import annotations

import hashlib
import json
import string
from collections import Counter

import numpy as np
import pytest

from societies.baselines import convergence, iql, reinforce
from societies.baselines.convergence import NO_CHOICE
from societies.baselines.naming_vec import VecNamingGame
from societies.baselines.play_log import PlayLog
from societies.baselines.records import RoundSeries, SeedResult
from societies.envs import NamingGameEnv
from societies.games.donor_game import DonorGameRules
from societies.games.naming_game import NamingGame, NamingGameRules
from societies.games.protocol import RoundContext
from societies.topology import NetworkSpec, Topology

LETTERS = tuple(string.ascii_uppercase[:10])
# chi-square with 9 degrees of freedom: P(X > 27.877) = 0.001 (standard tables)
CHI2_9DOF_P001 = 27.877


# ---- the convergence definition ---------------------------------------------------------


def test_most_probable_is_the_unique_argmax_and_ties_have_no_choice():
    values = np.array([[0.0, 0.0, 0.0], [1.0, 3.0, 2.0], [5.0, 5.0, 1.0], [-1.0, -2.0, -1.5]])
    assert convergence.most_probable(values).tolist() == [NO_CHOICE, 1, NO_CHOICE, 0]


def test_consensus_needs_every_agent_on_one_option():
    choices = np.array([[2, 2, 2], [2, 2, 1], [NO_CHOICE] * 3, [0, 0, 0]])
    assert convergence.consensus(choices).tolist() == [2, NO_CHOICE, NO_CHOICE, 0]
    assert convergence.agreement(choices).tolist() == pytest.approx([1, 2 / 3, 0, 1])


def test_converged_round_is_the_start_of_the_final_unbroken_consensus():
    assert convergence.converged_round(np.array([-1, 2, 2, -1, 2, 2])) == 4
    assert convergence.converged_round(np.array([3, 3, 3])) == 0
    assert convergence.converged_round(np.array([-1, 2, 3])) == 2  # switched option
    assert convergence.converged_round(np.array([2, 2, -1])) is None
    assert convergence.converged_round(np.array([], dtype=int)) is None


def test_seed_result_round_trips_and_leaves_out_what_does_not_apply():
    result = SeedResult(
        method="iql",
        game="naming_game",
        seed=3,
        rounds=2,
        converged_round=None,
        winner=None,
        final_success=0.5,
        series=RoundSeries(agreement=(0.5, 1.0), success=(0.0, 1.0)),
    )
    data = result.to_dict(series=True)
    assert "peak_words" not in data and data["converged_round"] is None
    assert data["series"] == {"agreement": [0.5, 1.0], "success": [0.0, 1.0]}
    assert SeedResult.from_dict(data) == result
    assert "series" not in result.to_dict()


# ---- the vectorised naming game is the PettingZoo env ------------------------------------


@pytest.mark.parametrize(
    "network",
    [
        None,
        NetworkSpec(Topology.RING_LATTICE, k=2),
        NetworkSpec(Topology.WATTS_STROGATZ, k=4, p=0.3),
    ],
    ids=["complete", "ring_lattice", "watts_strogatz"],
)
def test_vectorised_naming_game_matches_the_pettingzoo_env(network):
    """Same graph, pairs, rewards and history observations as NamingGameEnv on the same
    network, across episode boundaries, with idle agents, for the second of two seeds."""
    rules = NamingGameRules(names=("A", "B", "C", "D"), memory=2)
    game = VecNamingGame(
        rules, num_agents=7, pairs_per_round=2, episode_rounds=4, seeds=[5, 11], network=network
    )
    env = NamingGameEnv(rules, num_agents=7, pairs_per_round=2, rounds=4, network=network)
    obs, _ = env.reset(seed=11)
    assert env.graph == game.graphs[1]  # seed 11's graph (a random family: not seed 5's)
    rng = np.random.default_rng(0)
    for t in range(10):
        if not env.agents:
            obs, _ = env.reset()  # the next generation, as the vectorised game's episode
        game.start_round(t)
        pairs = game.pairs(t)
        assert pairs[1].tolist() == [[int(a[-2:]), int(b[-2:])] for a, b in env.pairs]
        agents = pairs.reshape(2, -1)
        states = game.states(agents, "history")
        for k, a in enumerate(agents[1]):
            assert states[1, k].tolist() == obs[f"agent_{a:02d}"].tolist()
        actions = rng.integers(0, 4, size=pairs.shape)
        rewards = game.play(pairs, actions)
        chosen = {
            f"agent_{a:02d}": int(x) for a, x in zip(agents[1], actions[1].ravel(), strict=True)
        }
        obs, env_rewards, *_ = env.step(chosen)
        assert {a: env_rewards[a] for a in chosen} == dict(
            zip(chosen, rewards[1].ravel().tolist(), strict=True)
        )
        assert all(env_rewards[a] == 0.0 for a in env_rewards if a not in chosen)


def test_empty_history_state_is_what_the_env_shows_at_reset():
    rules = NamingGameRules(names=LETTERS, memory=5)
    game = VecNamingGame(rules, num_agents=4, pairs_per_round=None, episode_rounds=5, seeds=[0])
    obs, _ = NamingGameEnv(rules, num_agents=4).reset(seed=0)
    assert game.empty_state("history").tolist() == obs["agent_00"].tolist()


# ---- networks: the society's graph of each seed --------------------------------------------

RULES_4 = NamingGameRules(names=("A", "B", "C", "D"), memory=2)
RING = NetworkSpec(Topology.RING_LATTICE, k=2)
RING_NAMES = {frozenset((f"agent_{i:02d}", f"agent_{(i + 1) % 8:02d}")) for i in range(8)}


def _agents(n: int) -> list[str]:
    return [f"agent_{i:02d}" for i in range(n)]


def test_vectorised_pairs_are_the_societys_on_each_seeds_graph():
    """On a random family each seed draws its own graph, the one a society run of that root
    seed plays, and the pairs of round r of episode g are the society's naming game's
    pairs of round r of generation g on it (same graph, same pairing stream)."""
    network = NetworkSpec(Topology.WATTS_STROGATZ, k=4, p=0.3)
    seeds = [0, 1, 2]
    game = VecNamingGame(RULES_4, 10, 3, episode_rounds=5, seeds=seeds, network=network)
    agents = _agents(10)
    assert len(set(game.graphs)) == 3  # three draws, not one graph for every seed
    for k, seed in enumerate(seeds):
        graph = network.graph(agents, seed)
        assert game.graphs[k] == graph
        society = NamingGame(RULES_4, pairs_per_round=3, graph=graph)
        edges = {frozenset(e) for e in graph.edges}
        for t in range(10):
            g, r = divmod(t, 5)
            turns = society.turns(agents, [], RoundContext("x", g, r, seed, 1.0))
            drawn = [[agents.index(u.agent), agents.index(u.partner)] for u in turns[::2]]
            assert game.pairs(t)[k].tolist() == drawn
            assert all(frozenset((agents[a], agents[b])) in edges for a, b in drawn)


@pytest.mark.parametrize("module", [iql, reinforce])
def test_on_a_ring_every_recorded_pair_is_an_edge(module):
    """Ring lattice, k = 2, 8 agents: agent i meets only i - 1 and i + 1 (mod 8). Over
    60 rounds of 3 pairs every one of the 8 edges is played, and no other pair."""
    make = iql.IqlArgs if module is iql else reinforce.ReinforceArgs
    n = 8
    args = make(num_agents=n, rounds=60, pairs_per_round=3, rules=RULES_4, network=RING)
    log = PlayLog()
    module.run(args, [0, 1, 2], log=log)
    ring = {frozenset((i, (i + 1) % n)) for i in range(n)}
    for seed in (0, 1, 2):
        play = log.play(seed)
        assert play.seat.shape == (60, 6)
        played = {frozenset(p) for p in zip(play.seat.ravel(), play.partner.ravel(), strict=True)}
        assert played == ring, seed
        decisions = play.decisions(0, f"seed_{seed}", "naming_game")
        assert all(frozenset((d.agent, d.partner)) in RING_NAMES for d in decisions)


def test_more_pairs_than_the_graph_holds_and_a_donor_network_are_refused(tmp_path):
    star = tmp_path / "star.txt"
    star.write_text("0 1\n0 2\n0 3\n")  # one disjoint pair a round at most
    network = NetworkSpec(Topology.EDGE_LIST, edge_list=str(star))
    with pytest.raises(ValueError, match="pairs_per_round=2: the edge_list graph's largest"):
        VecNamingGame(RULES_4, 4, 2, 5, [0], network=network)
    assert 0 in VecNamingGame(RULES_4, 4, 1, 5, [0], network=network).pairs(0)[0, 0]  # the hub
    with pytest.raises(ValueError, match="network.topology='ring_lattice'; expected 'complete'"):
        reinforce.ReinforceArgs(game="donor_game", network=RING)


def _play_digest(results: list[SeedResult], log: PlayLog | None, seeds: list[int]) -> str:
    text = json.dumps([r.to_dict(series=True) for r in results], sort_keys=True)
    h = hashlib.sha256(text.encode())
    for seed in seeds if log is not None else []:
        play = log.play(seed)
        for name in ("seat", "partner", "action", "partner_action", "payoff", "consensus"):
            h.update(np.ascontiguousarray(getattr(play, name)).tobytes())
        for name in ("probs", "policies"):  # rounded: exp may differ in the last ulp
            h.update(np.round(getattr(play, name), 9).tobytes())
    return h.hexdigest()[:16]


# Digests of the play on the complete graph made by the code before the baselines took a
# network (commit ad7aa6a): results, every seat's partner, action, payoff and policy.
COMPLETE_GRAPH_PLAY = {"iql": "ec89885e3fad87e3", "reinforce": "4c9deb3a7466ef62"}


@pytest.mark.parametrize("module", [iql, reinforce])
def test_the_complete_graph_plays_as_before_networks(module):
    """The default network, and the config's complete one, change no pair, action or
    result: the same bytes as before the graph was an arg."""
    make = iql.IqlArgs if module is iql else reinforce.ReinforceArgs
    kwargs = {"num_agents": 8, "rounds": 60, "pairs_per_round": 3, "rules": RULES_4}
    if module is iql:
        kwargs |= {"episode_rounds": 10, "observation": "history"}
    seeds = [0, 1, 2]
    for network in (NetworkSpec(), NetworkSpec(Topology.COMPLETE, k=2)):
        log = PlayLog()
        results = module.run(make(**kwargs, network=network), seeds, log=log)
        name = module.__name__.rsplit(".", 1)[1]
        assert _play_digest(results, log, seeds) == COMPLETE_GRAPH_PLAY[name]


# ---- IQL on the naming game ---------------------------------------------------------------


@pytest.fixture(scope="module")
def iql_100_seeds() -> list[SeedResult]:
    """The paper's population (N = 24, W = 10, +100 / -50), stateless IQL."""
    args = iql.IqlArgs(num_agents=24, rounds=400, epsilon=0.05, alpha=0.1)
    return iql.run(args, range(100))


def test_iql_reaches_consensus_on_most_seeds_within_a_few_hundred_rounds(iql_100_seeds):
    rounds = [r.converged_round for r in iql_100_seeds]
    done = [r for r in rounds if r is not None]
    assert len(done) >= 90  # observed: 100 of 100
    assert np.median(done) < 250  # observed: 109


def test_iql_success_at_consensus_is_what_epsilon_allows(iql_100_seeds):
    """At consensus each agent says the convention with p = 1 - eps + eps / W, so two
    agents match with p^2 + (W - 1)(eps / W)^2 = 0.912 (eps = 0.05, W = 10)."""
    p, w, eps = 1 - 0.05 + 0.005, 10, 0.05
    expected = p**2 + (w - 1) * (eps / w) ** 2
    done = [r.final_success for r in iql_100_seeds if r.converged_round is not None]
    assert np.mean(done) == pytest.approx(expected, abs=0.015)


def test_iql_winning_name_is_uniform_over_the_names(iql_100_seeds):
    """Nothing favours a name (ties are broken at random), so over 100 seeds the winners
    are consistent with uniform: chi-square (9 dof) below its p = 0.001 critical value."""
    winners = [r.winner for r in iql_100_seeds if r.winner is not None]
    counts = Counter(winners)
    observed = np.array([counts.get(name, 0) for name in LETTERS])
    expected = len(winners) / len(LETTERS)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert set(counts) <= set(LETTERS)
    assert chi2 < CHI2_9DOF_P001, (chi2, counts)


def test_a_seed_gives_the_same_result_alone_or_with_others():
    args = iql.IqlArgs(num_agents=8, rounds=60)
    alone = iql.run(args, [3])[0]
    together = iql.run(args, [1, 2, 3])[2]
    assert alone.to_dict(series=True) == together.to_dict(series=True)


def test_iql_with_a_history_state_converges_at_the_empty_history_state():
    """History learners meet the empty-history state once per episode; with memory 1 and
    10-round episodes they agree there within 2000 rounds, but coordinate only a little
    above chance (1/W = 0.1) in later rounds: a tabular learner does not generalise
    across histories."""
    rules = NamingGameRules(names=LETTERS, memory=1)
    args = iql.IqlArgs(observation="history", rounds=2000, episode_rounds=10, rules=rules)
    results = iql.run(args, range(10))
    assert sum(r.converged_round is not None for r in results) >= 8  # observed: 10
    assert 0.13 < np.mean([r.final_success for r in results]) < 0.5  # observed: 0.21


# ---- REINFORCE on the naming game -----------------------------------------------------------


def test_reinforce_reaches_consensus_on_most_seeds():
    """lr 0.5 on the logits per unit of advantage (payoffs / 150), an update every 5 rounds."""
    args = reinforce.ReinforceArgs(num_agents=24, rounds=1500, learning_rate=0.5, episode_rounds=5)
    results = reinforce.run(args, range(40))
    assert sum(r.converged_round is not None for r in results) >= 30  # observed: 36 of 40
    assert np.mean([r.final_success for r in results]) > 0.9  # observed: 0.99
    assert {r.winner for r in results} - {None} <= set(LETTERS)


def test_reinforce_policy_step_moves_towards_the_better_than_average_action():
    """Two agents of one seed, one decision each: the one above the population mean
    raises its action's logit, the one below lowers its own."""
    from societies.baselines.tables import ValueTable

    table = ValueTable(3)
    rows = table.rows(np.array([[0, 1]]), np.zeros((1, 2, 1), dtype=np.int8))
    args = reinforce.ReinforceArgs(learning_rate=1.0)
    reinforce.policy_step(
        table,
        rows[:, None, :],
        np.array([[[0, 2]]]),
        np.array([[[0, 1]]]),
        np.array([[[100.0, -50.0]]]),
        args,
    )
    advantage = 75.0 / 150.0  # (100 - 25) / (100 - (-50))
    assert table.values[0] == pytest.approx(advantage * (np.eye(3)[0] - 1 / 3))
    assert table.values[1] == pytest.approx(-advantage * (np.eye(3)[2] - 1 / 3))


# ---- the donor game ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "make_args", "final_most"),
    [
        (iql, iql.IqlArgs, 0.1),  # greedy on 0%; exploration gives 0.025 on average
        (reinforce, reinforce.ReinforceArgs, 0.2),
    ],
)
def test_myopic_donor_learners_give_less(module, make_args, final_most):
    """A donor's payoff in the round it gives is -f R (DonorGame.resolve_round): strictly
    decreasing in the share f. Learners with gamma = 0 follow that gradient from a
    uniform start (mean share 0.5) towards giving nothing."""
    args = make_args(game="donor_game", num_agents=12, rounds=12 * 100, rules=DonorGameRules())
    results = module.run(args, [0, 1])
    for r in results:
        first_game = np.mean(r.series.mean_donation[:12])
        last_ten = np.mean(r.series.mean_donation[-120:])
        assert first_game > 0.35, first_game
        assert last_ten < final_most, last_ten
        assert r.final_success is None and r.rounds == 1200
        assert r.final_mean_resources > 0
    if module is iql:
        assert all(r.winner == "0%" for r in results)


def test_donor_rounds_round_up_to_whole_games():
    result = iql.run(
        iql.IqlArgs(game="donor_game", num_agents=6, rounds=7, rules=DonorGameRules(rounds=6)), [0]
    )[0]
    assert result.rounds == 12 and len(result.series.agreement) == 12


# ---- the recorded play (play_log.py) -----------------------------------------------------------


def test_epsilon_greedy_probs_is_the_distribution_epsilon_greedy_samples():
    """Two greedy actions of four, eps = 0.2: 0.4 + 0.05 each, 0.05 for the others; and
    200,000 draws of epsilon_greedy match it within 4 standard errors."""
    q = np.array([1.0, 0.0, 1.0, -1.0])
    probs = iql.epsilon_greedy_probs(q, 0.2)
    assert probs.tolist() == pytest.approx([0.45, 0.05, 0.45, 0.05])
    draws = 200_000
    u = np.random.default_rng(0).random((draws, 6))
    counts = np.bincount(iql.epsilon_greedy(np.tile(q, (draws, 1)), u, 0.2), minlength=4)
    sd = np.sqrt(probs * (1 - probs) / draws)
    assert np.all(np.abs(counts / draws - probs) < 4 * sd), counts / draws


@pytest.mark.parametrize("module", [iql, reinforce])
def test_recording_changes_nothing_and_the_decisions_are_the_play(module):
    """With a log the results are the same; the recorded decisions are the rounds played:
    partners' actions agree seat by seat, payoffs are the rules', the success share per
    round is the series', the first policy is uniform and the last one is recorded."""
    rules = NamingGameRules(names=("A", "B", "C", "D"))
    make = iql.IqlArgs if module is iql else reinforce.ReinforceArgs
    args = make(num_agents=6, rounds=40, pairs_per_round=2, rules=rules)
    log = PlayLog()
    recorded = module.run(args, [4, 7], log=log)
    assert [r.to_dict(series=True) for r in recorded] == [
        r.to_dict(series=True) for r in module.run(args, [4, 7])
    ]
    result, play = recorded[1], log.play(7)
    decisions = play.decisions(0, "seed_7", "naming_game")
    assert len(decisions) == 40 * 4 and play.generations == 1
    for a, b in zip(decisions[::2], decisions[1::2], strict=True):
        assert (a.round, a.pair, a.partner, b.partner) == (b.round, b.pair, b.agent, a.agent)
        assert (a.partner_action, b.partner_action) == (b.action, a.action)
        assert a.payoff == b.payoff == (100.0 if a.action == b.action else -50.0)
        assert sum(a.option_probs) == pytest.approx(1.0)
        assert a.policy == module.__name__.rsplit(".", 1)[1] and a.scoring == "scripted"
    per_round = [np.mean([d.success for d in decisions if d.round == t]) for t in range(40)]
    assert per_round == list(result.series.success)
    assert decisions[0].option_probs == (0.25,) * 4  # a fresh table: every action tied
    before, after = play.priors(0)
    assert all(p.probs == dict.fromkeys("ABCD", 0.25) for p in before.values())
    held = play.consensus_options(0)
    assert held[-1] == result.winner and len(held) == 40
    if module is iql:
        assert result.converged_round == 20  # this seed converges; REINFORCE's does not
        # at consensus every agent's epsilon-greedy policy puts 1 - eps + eps / W on it
        assert {p.probs[result.winner] for p in after.values()} == {1 - 0.05 + 0.05 / 4}


def test_recorded_donor_play_has_one_generation_per_game_and_the_env_recipients():
    rules = DonorGameRules(rounds=4)
    args = reinforce.ReinforceArgs(game="donor_game", num_agents=6, rounds=12, rules=rules)
    log = PlayLog()
    result = reinforce.run(args, [2], log=log)[0]
    play = log.play(2)
    assert play.generations == 3 and play.rounds(2) == 4
    assert play.policies.shape == (4, 6, len(rules.options))  # 0%, 10%, ..., 100%
    decisions = play.decisions(1, "seed_2", "donor_game")
    assert len(decisions) == 4 * 3 and {d.role for d in decisions} == {"donor"}
    assert all(d.partner_action is None and d.payoff <= 0 for d in decisions)
    # the donors give what the series says: mean share of generation 1's rounds
    shares = [rules.parse_option(d.action) for d in decisions]
    given = [c.fraction if c.kind.value == "donate" else 0.0 for c in shares]
    assert np.mean(given) == pytest.approx(np.mean(result.series.mean_donation[4:8]))
    # every agent gives once per two rounds and never to the same recipient twice
    assert Counter(d.agent for d in decisions) == dict.fromkeys(play.agents, 2)
    assert len({(d.agent, d.partner) for d in decisions}) == len(decisions)


# ---- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"epsilon": 1.5}, "epsilon=1.5"),
        ({"game": "debate"}, "game='debate'"),
        ({"observation": "full"}, "observation='full'"),
        ({"num_agents": 10, "pairs_per_round": 6}, "pairs_per_round=6"),
        ({"game": "donor_game", "rules": NamingGameRules(names=LETTERS)}, "rules="),
    ],
)
def test_bad_args_name_the_value_and_what_is_accepted(kwargs, named):
    with pytest.raises(ValueError, match="expected") as err:
        iql.IqlArgs(**kwargs)
    assert named in str(err.value)


def test_iql_discounts_between_an_agents_own_decisions():
    """Decision in round 0 (reward 10), an idle round (reward 4), the next decision in
    round 2 in a state worth max Q = 8: target 10 + g 4 + g^2 8 (semi-MDP Q-learning)."""
    from societies.baselines.tables import ValueTable

    table = ValueTable(2)
    first = table.rows(np.array([[0]]), np.array([[[0]]], dtype=np.int8))
    second = table.rows(np.array([[0]]), np.array([[[1]]], dtype=np.int8))
    table.values[second[0, 0]] = [8.0, 3.0]
    pending = iql.PendingUpdates((1, 1), gamma=0.5)
    pending.open(np.array([[0]]), first, np.array([[1]]))
    pending.add_rewards(np.array([[10.0]]), table, alpha=0.5)
    pending.add_rewards(np.array([[4.0]]), table, alpha=0.5)
    assert table.values[first[0, 0]].tolist() == [0.0, 0.0]  # waits for the next decision
    pending.close(table, 0.5, np.array([[0]]), second)
    assert table.values[first[0, 0]].tolist() == [0.0, 0.5 * (10 + 0.5 * 4 + 0.25 * 8)]
