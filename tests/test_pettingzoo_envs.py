"""PettingZoo envs of the naming and donor games: conformance, seeding, payoffs, schedule."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test
from pettingzoo.utils.conversions import parallel_to_aec

from societies import seeding
from societies.envs import DonorGameEnv, NamingGameEnv, ObservationMode
from societies.games.donor_game import DonorAction, DonorGame, DonorGameRules, game_schedule
from societies.games.naming_game import NamingGame, NamingGameRules
from societies.games.protocol import RoundContext
from societies.seeding import Stream
from societies.topology import NetworkSpec, Topology, sample_pairs

NAMES = NamingGameRules(names=("A", "B", "C", "D"), memory=2)
RING = NetworkSpec(Topology.RING_LATTICE, k=2)  # agent i meets i - 1 and i + 1 only
SMALL_WORLD = NetworkSpec(Topology.WATTS_STROGATZ, k=4, p=0.3)  # each seed draws its own

# Warnings PettingZoo's conformance test raises on purpose-built observations; any other
# warning fails the test below.
MULTIDISCRETE = "Observation space for each agent probably should be gymnasium.spaces.box"
CONSTANT = ("Observation is a single number", "Observation numpy array is all zeros.")
IDLE_AT_RESET = ("Observation numpy array is all zeros.",)  # an idle agent's empty history

ENVS = {
    "naming_history_all_paired": (
        lambda: NamingGameEnv(NAMES, num_agents=6, rounds=12),
        (MULTIDISCRETE,),
    ),
    "naming_history_some_idle": (
        lambda: NamingGameEnv(NAMES, num_agents=7, pairs_per_round=2, rounds=12),
        (MULTIDISCRETE, *IDLE_AT_RESET),
    ),
    "naming_stateless": (
        lambda: NamingGameEnv(NAMES, num_agents=6, rounds=12, observation="none"),
        (MULTIDISCRETE, *CONSTANT),
    ),
    "naming_ring": (
        lambda: NamingGameEnv(NAMES, num_agents=8, pairs_per_round=3, rounds=12, network=RING),
        (MULTIDISCRETE, *IDLE_AT_RESET),
    ),
    "donor": (lambda: DonorGameEnv(), ()),
    "donor_punishment": (
        lambda: DonorGameEnv(DonorGameRules(punishment=True, rounds=6), num_agents=6),
        (),
    ),
}


@pytest.mark.parametrize("name", sorted(ENVS))
def test_pettingzoo_conformance_parallel_and_aec(name):
    make, allowed = ENVS[name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # num_cycles beyond the episode length: the tests also see truncation
        parallel_api_test(make(), num_cycles=30)
        api_test(parallel_to_aec(make()), num_cycles=30)
    unexpected = {str(w.message) for w in caught if not str(w.message).startswith(allowed)}
    assert not unexpected


def test_spaces_are_cached_per_agent_and_metadata_is_set():
    for make, _ in ENVS.values():
        env = make()
        a, b = env.possible_agents[:2]
        assert env.observation_space(a) is env.observation_space(a)
        assert env.action_space(a) is env.action_space(a)
        assert env.action_space(a) is not env.action_space(b)  # seeded independently
        assert env.metadata["is_parallelizable"] and env.metadata["name"].startswith("folkways_")
        assert env.render_mode is None and env.agents == []


# ---- seeding --------------------------------------------------------------------------


def play(env, seed, action_seed, options=None):
    """A whole episode with seeded random actions: every step's five dicts."""
    obs, infos = env.reset(seed=seed, options=options)
    for i, agent in enumerate(env.possible_agents):
        env.action_space(agent).seed(action_seed + i)
    steps = [(obs, infos)]
    while env.agents:
        steps.append(env.step({a: env.action_space(a).sample() for a in env.agents}))
    return steps


def assert_same(x, y):
    if isinstance(x, dict):
        assert x.keys() == y.keys()
        for k in x:
            assert_same(x[k], y[k])
    elif isinstance(x, (tuple, list)):
        assert len(x) == len(y)
        for a, b in zip(x, y, strict=True):
            assert_same(a, b)
    elif isinstance(x, np.ndarray):
        assert x.dtype == y.dtype and np.array_equal(x, y)
    else:
        assert x == y and type(x) is type(y)


@pytest.mark.parametrize("name", sorted(ENVS))
def test_same_seed_and_actions_give_identical_episodes(name):
    make, _ = ENVS[name]
    first = play(make(), seed=5, action_seed=100)
    assert_same(first, play(make(), seed=5, action_seed=100))
    env = make()
    play(env, seed=9, action_seed=1)
    assert_same(first, play(env, seed=5, action_seed=100))  # reset clears all state
    expected_steps = env.rounds if isinstance(env, NamingGameEnv) else env.rules.rounds
    assert len(first) == 1 + expected_steps
    *_, truncations, _ = first[-1]
    assert all(truncations.values()) and env.agents == []


def naming_partners(steps):
    return [{a: info["partner"] for a, info in s[4].items()} for s in steps[1:]]


def test_naming_seed_fixes_the_pairing_sequence():
    make, _ = ENVS["naming_history_some_idle"]
    a, b = play(make(), 5, 0), play(make(), 6, 0)
    assert naming_partners(a) != naming_partners(b)
    assert naming_partners(a) == naming_partners(play(make(), 5, 99))  # actions do not matter


def test_naming_pairs_are_the_llm_societys_draw():
    env = NamingGameEnv(NAMES, num_agents=7, pairs_per_round=2, rounds=5)
    env.reset(seed=42)
    for r in range(env.rounds):
        rng = seeding.rng(42, Stream.PAIRING, 0, r)  # as in societies.society.play_round
        expected = sample_pairs(Topology.COMPLETE, env.possible_agents, 2, rng)
        assert env.pairs == expected
        _, _, _, _, infos = env.step(dict.fromkeys(env.agents, 0))
        assert {(a, i["partner"]) for a, i in infos.items() if i["acted"]} == {
            seat for x, y in expected for seat in ((x, y), (y, x))
        }


def test_reset_without_seed_plays_the_next_generation():
    env = NamingGameEnv(NAMES, num_agents=8, pairs_per_round=1, rounds=3)
    env.reset(seed=3)
    gen0 = [env.pairs_of_round(r) for r in range(3)]
    env.reset()
    assert (env.root_seed, env.generation) == (3, 1)
    gen1 = [env.pairs_of_round(r) for r in range(3)]
    env.reset(seed=3, options={"generation": 1})
    assert [env.pairs_of_round(r) for r in range(3)] == gen1 != gen0
    with pytest.raises(ValueError, match=r"options\['generation'\]=-1; expected an int >= 0"):
        env.reset(seed=3, options={"generation": -1})
    fresh = NamingGameEnv(NAMES, num_agents=8, pairs_per_round=1, rounds=3)
    fresh.reset()  # no seed: a random root seed, recorded for replay
    assert isinstance(fresh.root_seed, int) and fresh.generation == 0


def test_donor_seed_fixes_the_schedule_as_the_llm_society_draws_it():
    env = DonorGameEnv()
    agents, rounds = env.possible_agents, env.rules.rounds
    env.reset(seed=5)
    first = env.schedule
    # the society's draw: one schedule per generation from the pairing stream
    assert first == game_schedule(agents, rounds, seeding.rng(5, Stream.PAIRING, 0))
    env.reset()
    assert env.schedule == game_schedule(agents, rounds, seeding.rng(5, Stream.PAIRING, 1))
    env.reset(seed=6)
    assert env.schedule != first
    env.reset(seed=5)
    assert env.schedule == first and len(first) == rounds


# ---- naming game on a network ---------------------------------------------------------

# Digest of three episodes on the complete graph made by the env before it took a network
# (commit 560c5dc): every observation, reward, termination, truncation and info.
COMPLETE_GRAPH_EPISODES = "29a37b1c8bdab7f1"


def episodes_digest(episodes) -> str:
    h = hashlib.sha256()
    for steps in episodes:
        for step in steps:
            for part in step:
                for agent in sorted(part):
                    value = part[agent]
                    value = value.tolist() if isinstance(value, np.ndarray) else value
                    h.update(repr((agent, value)).encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("network", [None, NetworkSpec(), NetworkSpec(Topology.COMPLETE, k=2)])
def test_naming_complete_graph_plays_as_before_networks(network):
    """No network, the default one and a complete one with other parameters: the same
    bytes as before the env took a network (two generations of one seed, then another)."""
    env = NamingGameEnv(NAMES, num_agents=7, pairs_per_round=2, rounds=6, network=network)
    episodes = [play(env, 5, 100), play(env, None, 7), play(env, 42, 3)]
    assert episodes_digest(episodes) == COMPLETE_GRAPH_EPISODES


def test_naming_on_a_ring_every_pair_is_an_edge():
    """Ring lattice, k = 2, 8 agents: over two 20-round episodes of 3 pairs for each of
    three seeds, every seat's partner is a ring neighbour, and all 8 edges are met."""
    env = NamingGameEnv(NAMES, num_agents=8, pairs_per_round=3, rounds=20, network=RING)
    ring = {frozenset((f"agent_{i:02d}", f"agent_{(i + 1) % 8:02d}")) for i in range(8)}
    for seed in (0, 1, 2):
        met = set()
        for steps in (play(env, seed, 0), play(env, None, 1)):  # generations 0 and 1
            for *_, infos in steps[1:]:
                seats = {(a, i["partner"]) for a, i in infos.items() if i["acted"]}
                assert len(seats) == 6
                met |= {frozenset(seat) for seat in seats}
        assert met == ring, seed


def society_pairs(network, num_agents, pairs_per_round, seed, generation, round_index):
    """The pairs a society of root seed ``seed`` meets in that round on ``network``'s graph
    (as trainer.generation_loop.Experiment builds its game), in the society's order."""
    agents = [f"agent_{i:02d}" for i in range(num_agents)]
    game = NamingGame(NAMES, pairs_per_round=pairs_per_round, graph=network.graph(agents, seed))
    turns = game.turns(agents, [], RoundContext("society", generation, round_index, seed, 1.0))
    return [(t.agent, t.partner) for t in turns[::2]]  # seats 2k, 2k + 1 are one pair


@pytest.mark.parametrize("network", [RING, SMALL_WORLD], ids=lambda n: n.topology.value)
def test_naming_pairs_on_a_network_are_the_societys(network):
    """Root seed s plays the graph a society of run.seed = s plays, and round r of
    generation g meets the society's pairs of that round, in order, on every seed."""
    env = NamingGameEnv(NAMES, num_agents=10, pairs_per_round=3, rounds=4, network=network)
    graphs = {}
    for seed in (0, 1, 2, 0):  # back to seed 0: its graph again
        for generation in (0, 1):
            env.reset(seed=seed) if generation == 0 else env.reset()
            assert env.graph == network.graph(env.possible_agents, seed)
            graphs[seed] = env.graph
            while env.agents:
                expected = society_pairs(network, 10, 3, seed, generation, env.round)
                assert env.pairs == expected
                env.step(dict.fromkeys(env.agents, 0))
    distinct = len(set(graphs.values()))
    assert distinct == (3 if network is SMALL_WORLD else 1)  # a random family: per seed


def test_naming_more_pairs_than_the_graph_holds_are_refused(tmp_path):
    star = tmp_path / "star.txt"
    star.write_text("0 1\n0 2\n0 3\n")  # one disjoint pair a round at most
    network = NetworkSpec(Topology.EDGE_LIST, edge_list=str(star))
    env = NamingGameEnv(NAMES, num_agents=4, pairs_per_round=2, network=network)
    with pytest.raises(
        ValueError,
        match=r"pairs_per_round=2: the edge_list graph's largest matching has 1 pairs; "
        r"expected 1\.\.1",
    ):
        env.reset(seed=0)  # the graph of a seed is drawn at reset
    env = NamingGameEnv(NAMES, num_agents=4, pairs_per_round=1, network=network)
    env.reset(seed=0)
    assert "agent_00" in env.pairs[0]  # the hub
    with pytest.raises(ValueError, match="network='ring_lattice'; expected a NetworkSpec"):
        NamingGameEnv(NAMES, network="ring_lattice")


# ---- naming game: payoffs, observations, actions ---------------------------------------


def test_naming_rewards_are_the_games_payoffs():
    env = NamingGameEnv(NAMES, num_agents=7, pairs_per_round=2, rounds=3)
    env.reset(seed=0)
    paired = {a for pair in env.pairs for a in pair}
    _, rewards, _, _, infos = env.step(dict.fromkeys(env.agents, 0))
    for a in env.possible_agents:
        assert rewards[a] == (100.0 if a in paired else 0.0)
        assert infos[a]["acted"] == (a in paired)
    (x, y), (u, v) = env.pairs
    actions = {x: 1, y: 2, u: 3, v: 3}  # idle agents may omit their actions
    _, rewards, _, _, infos = env.step(actions)
    assert (rewards[x], rewards[y], rewards[u], rewards[v]) == (-50.0, -50.0, 100.0, 100.0)
    assert sum(rewards.values()) == 100.0  # the other three agents idle: 0
    assert (infos[x]["partner"], infos[x]["action"], infos[x]["partner_action"]) == (y, 1, 2)


def test_naming_history_observation_encodes_the_last_interactions():
    env = NamingGameEnv(NAMES, num_agents=2, rounds=3)  # one pair: both always paired
    obs, infos = env.reset(seed=1)
    assert infos == {
        "agent_00": {"next_partner": "agent_01"},
        "agent_01": {"next_partner": "agent_00"},
    }
    assert obs["agent_00"].tolist() == [0, 0, 0, 0, 0, 0, 1]  # memory 2, empty; paired
    env.step({"agent_00": 2, "agent_01": 0})  # C vs A: mismatch
    obs, *_ = env.step({"agent_00": 3, "agent_01": 3})  # D vs D: match
    # slots oldest first: (own + 1, partner + 1, sign + 2), then the paired flag
    assert obs["agent_00"].tolist() == [3, 1, 1, 4, 4, 3, 1]
    assert obs["agent_01"].tolist() == [1, 3, 1, 4, 4, 3, 1]
    obs, *_ = env.step({"agent_00": 0, "agent_01": 0})  # memory 2: the first is forgotten
    assert obs["agent_00"].tolist() == [4, 4, 3, 1, 1, 3, 0]  # last step: no coming round
    assert all(o.dtype == np.int64 for o in obs.values())


def test_naming_paired_flag_and_stateless_observation():
    env = NamingGameEnv(NAMES, num_agents=9, pairs_per_round=2, rounds=4)
    obs, infos = env.reset(seed=2)
    while env.agents:
        paired = {a for pair in env.pairs for a in pair}
        assert {a for a, o in obs.items() if o[-1] == 1} == paired
        assert {a for a, i in infos.items() if i["next_partner"]} == paired
        obs, _, _, _, infos = env.step(dict.fromkeys(env.agents, 1))
    stateless = NamingGameEnv(NAMES, num_agents=4, rounds=2, observation=ObservationMode.NONE)
    for step in play(stateless, 0, 0):
        assert all(o.tolist() == [0] for o in step[0].values())
    assert stateless.observation_space("agent_00").nvec.tolist() == [1]


def test_naming_idle_actions_are_ignored_and_bad_actions_named():
    env = NamingGameEnv(NAMES, num_agents=6, pairs_per_round=1, rounds=2)
    env.reset(seed=4)
    (a, b), idle = env.pairs[0], [x for x in env.possible_agents if x not in env.pairs[0]]
    with pytest.raises(KeyError, match=f"no action for '{b}'"):
        env.step({a: 0})
    with pytest.raises(ValueError, match=r"action 4 of .*expected an integer index 0\.\.3"):
        env.step({a: 0, b: 4})
    with pytest.raises(ValueError, match="action True"):
        env.step({a: 0, b: True})
    one = NamingGameEnv(NAMES, num_agents=6, pairs_per_round=1, rounds=2)
    one.reset(seed=4)
    assert_same(one.step({a: 0, b: np.int32(1)}), env.step({a: 0, b: 1, **dict.fromkeys(idle, 3)}))


def test_naming_constructor_errors_name_the_input():
    with pytest.raises(ValueError, match=r"num_pairs=4; expected 1\.\.3 for 6 agents"):
        NamingGameEnv(NAMES, num_agents=6, pairs_per_round=4)
    with pytest.raises(
        ValueError, match=r"observation='full'; expected one of \['history', 'none'\]"
    ):
        NamingGameEnv(NAMES, observation="full")
    with pytest.raises(ValueError, match="rounds=0"):
        NamingGameEnv(NAMES, rounds=0)
    with pytest.raises(ValueError, match="render_mode='human'"):
        NamingGameEnv(NAMES, render_mode="human")


def test_step_after_the_end_is_an_error():
    for make, _ in ENVS.values():
        env = make()
        play(env, 0, 0)
        with pytest.raises(RuntimeError, match=r"call reset\(\) first"):
            env.step({})


# ---- donor game: payoffs, schedule, observations ---------------------------------------


@pytest.mark.parametrize(
    ("n", "rounds", "m"), [(2, 1, 2.0), (6, 5, 2.0), (12, 12, 2.0), (8, 7, 3.0)]
)
def test_donor_everyone_giving_everything_matches_the_game_and_the_closed_form(n, rounds, m):
    """Rewards are DonorGame.resolve_round's payoffs; resources end at m^(R-1) (1+m) E.

    The closed form is derived in tests/test_donor_game.py: the half that received in the
    last round holds m^(R-1) (1 + m) E each, the other half 0.
    """
    env = DonorGameEnv(DonorGameRules(multiplier=m, rounds=rounds), num_agents=n)
    game = DonorGame(env.rules)
    give_all = env.options.index("100%")
    env.reset(seed=8)
    resources = dict.fromkeys(env.possible_agents, env.rules.endowment)
    returns = dict.fromkeys(env.possible_agents, 0.0)
    for r, pairings in enumerate(env.schedule):
        _, rewards, _, _, infos = env.step(dict.fromkeys(env.agents, give_all))
        outcome = game.resolve_round(
            r,
            resources,
            [DonorAction(p.donor, p.recipient, env.choices[give_all]) for p in pairings],
        )
        resources = outcome.resources
        assert rewards == outcome.payoffs
        assert {a: i["resources"] for a, i in infos.items()} == resources == env.resources
        for a in returns:
            returns[a] += rewards[a]
    each = m ** (rounds - 1) * (1 + m) * env.rules.endowment
    holders = {p.recipient for p in env.schedule[-1]}
    assert env.resources == {a: (each if a in holders else 0.0) for a in env.possible_agents}
    assert all(returns[a] == env.resources[a] - env.rules.endowment for a in returns)


def test_donor_schedule_never_repeats_a_pair_and_roles_alternate():
    env = DonorGameEnv()  # the paper's 12 agents, 12 rounds
    steps = play(env, seed=13, action_seed=0)
    meetings = []
    for _, _, _, _, infos in steps[1:]:
        donors = {a for a, i in infos.items() if i["role"] == "donor"}
        assert len(donors) == 6 and all(infos[a]["acted"] for a in donors)
        for a, info in infos.items():
            option = env.options[info["action"]] if a in donors else None
            assert info["option"] == option and info["acted"] == (a in donors)
        meetings += [(a, infos[a]["partner"]) for a in donors]
    assert len(meetings) == len(set(meetings)) == 72
    for agent in env.possible_agents:
        roles = [s[4][agent]["role"] for s in steps[1:]]
        assert roles in (["donor", "recipient"] * 6, ["recipient", "donor"] * 6)


def test_donor_recipients_actions_are_ignored():
    one, two = (DonorGameEnv(DonorGameRules(rounds=4), num_agents=6) for _ in range(2))
    one.reset(seed=1)
    two.reset(seed=1)
    while one.agents:
        donors = {p.donor for p in one.schedule[one.round]}
        assert_same(
            one.step({a: 5 for a in donors}),  # recipients omitted
            two.step({a: 5 if a in donors else 10 for a in two.agents}),
        )
    with pytest.raises(KeyError, match="no action for 'agent_"):
        one.reset(seed=1)
        one.step({})


def test_donor_observation_shows_resources_reputation_role_and_round():
    rules = DonorGameRules(punishment=True, rounds=4)
    env = DonorGameEnv(rules, num_agents=4)
    obs, infos = env.reset(seed=3)
    donors0 = {p.donor for p in env.schedule[0]}
    for a in env.possible_agents:
        assert obs[a].tolist() == [1.0, 1.0, -1.0, 0.0, float(a in donors0), 0.0]
        assert infos[a]["next_role"] == ("donor" if a in donors0 else "recipient")
    # round 0: every donor spends 50% punishing: -5 for it, -10 for its recipient
    obs, rewards, _, _, infos = env.step(dict.fromkeys(donors0, env.options.index("punish 50%")))
    assert {rewards[a] for a in donors0} == {-5.0} and {
        rewards[a] for a in obs if a not in donors0
    } == {-10.0}
    assert env.resources == {a: 5.0 if a in donors0 else 0.0 for a in env.possible_agents}
    for a in env.possible_agents:
        if a in donors0:  # now recipients; their donors have no history yet
            assert obs[a].tolist() == [2.0, 0.0, -1.0, 0.0, 0.0, 0.25]
        else:  # now donors, facing a recipient who punished: gave 0, punished flag
            assert obs[a].tolist() == [0.0, 2.0, 0.0, 1.0, 1.0, 0.25]
    # round 1: the new donors give 30% of nothing; round-0 donors now show as having punished
    donors1 = {p.donor for p in env.schedule[1]}
    assert donors1 == set(env.possible_agents) - donors0
    obs, *_ = env.step(dict.fromkeys(donors1, env.options.index("30%")))
    for a in donors0:  # donors again, recipient gave 30% last time
        assert obs[a].tolist() == pytest.approx([2.0, 0.0, 0.3, 0.0, 1.0, 0.5])
    for a in env.possible_agents:
        assert env.observation_space(a).contains(obs[a]) and obs[a].dtype == np.float32


def test_donor_constructor_errors_name_the_input():
    with pytest.raises(ValueError, match="rounds=12 cannot be scheduled for 6 agents"):
        DonorGameEnv(num_agents=6)
    with pytest.raises(ValueError, match="even number >= 2 of agents, got 5"):
        DonorGameEnv(DonorGameRules(rounds=4), num_agents=5)
    env = DonorGameEnv(DonorGameRules(rounds=2), num_agents=4)
    env.reset(seed=0)
    donor = env.schedule[0][0].donor
    with pytest.raises(
        ValueError, match=rf"action 11 of '{donor}'; expected an integer index 0\.\.10"
    ):
        env.step(dict.fromkeys(env.agents, 11))
