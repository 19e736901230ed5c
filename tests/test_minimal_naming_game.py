"""The minimal naming game (Baronchelli et al. 2006) and its committed minorities (Xie et
al. 2011): scaling of the word peak, the flip above the critical fraction, networks."""

from __future__ import annotations

import numpy as np
import pytest

from societies.baselines.minimal_naming_game import MngArgs, adjacency, run


def test_peak_word_count_grows_as_n_to_the_three_halves():
    """Baronchelli et al. (2006), J. Stat. Mech. P06014: on the complete graph the
    maximum total number of words scales as N^1.5. Fit on log-log over N = 200..1600,
    each point the mean peak of 4 seeds; finite sizes give ~1.45 (asymptotically 1.5),
    accepted within 1.5 +- 0.15. Peaks growing as N or N^2 would fail."""
    sizes = [200, 400, 800, 1600]
    peaks = [np.mean([r.peak_words for r in run(MngArgs(num_agents=n), range(4))]) for n in sizes]
    slope = np.polyfit(np.log(sizes), np.log(peaks), 1)[0]
    assert slope == pytest.approx(1.5, abs=0.15), slope


def test_complete_graph_converges_on_one_invented_word():
    n = 200
    results = run(MngArgs(num_agents=n, max_rounds=2000), range(5))
    for r in results:
        assert r.converged_round is not None and r.rounds == r.converged_round + 1
        assert r.winner.startswith("w")
        s = r.series
        assert s.total_words[-1] == n and s.distinct_words[-1] == 1 and s.agreement[-1] == 1
        # the peak (tracked per interaction) bounds every end-of-round total
        assert r.peak_words >= max(s.total_words) > n
        assert 0 < r.peak_round < r.converged_round
        # at most N words are ever invented: one per agent that speaks before hearing
        assert max(s.distinct_words) <= n
        assert r.flipped is None and r.committed_fraction is None


@pytest.mark.parametrize(("fraction", "flips"), [(0.2, True), (0.03, False)])
def test_committed_minority_flips_the_population_only_above_the_critical_fraction(fraction, flips):
    """Xie et al. (2011), PRE 84, 011130: committed agents holding A flip a population
    holding B when their fraction exceeds p_c ~ 0.098. N = 1000, 300 rounds (150 N
    interactions): p = 0.2 flips in ~40 rounds; p = 0.03 stays mixed."""
    results = run(MngArgs(num_agents=1000, committed_fraction=fraction, max_rounds=300), range(3))
    for r in results:
        assert r.flipped is flips
        if flips:
            assert r.winner == "A" and r.flip_round == r.converged_round < 300
        else:
            assert r.flip_round is None and r.rounds == 300
            # the B majority holds: more than 80% of agents hold one same word in every
            # round, starting from B (97%); a switch to A would pass through a mixed state
            assert min(r.series.agreement) > 0.8


def test_an_edge_list_of_the_complete_graph_is_the_complete_graph():
    """The network path draws hearers as the sorted neighbour list does, so the explicit
    complete graph replays the complete-graph run exactly."""
    n = 60
    edges = [(i, j) for i in range(n) for j in range(i + 1, n)]
    args = MngArgs(num_agents=n, max_rounds=3000)
    assert run(args, [7], graph=edges)[0] == run(args, [7])[0]


def test_networkx_graphs_are_accepted_and_hearers_are_neighbours():
    nx = pytest.importorskip("networkx")
    grid = nx.grid_2d_graph(10, 10, periodic=True)  # nodes are (row, col) tuples
    indptr, indices = adjacency(grid, 100)
    assert np.all(np.diff(indptr) == 4)
    star = adjacency([(0, k) for k in range(1, 6)], 6)
    assert star[1][star[0][3] : star[0][4]].tolist() == [0]  # a leaf only meets the hub
    result = run(MngArgs(num_agents=100, max_rounds=20_000), [0], graph=grid)[0]
    assert result.converged_round is not None


def test_the_recorded_speeches_are_the_run_and_stop_at_the_cap():
    """A log changes nothing; every recorded round's success share is the series' and
    each speaker says a word of its inventory (uniform over it). With a cap of 100
    decisions and 20 interactions a round, the first 5 rounds are kept."""
    from societies.baselines.mng_log import MngLog

    args = MngArgs(num_agents=40, max_rounds=2000)
    log = MngLog()
    result = run(args, [3], log=log)[0]
    assert result == run(args, [3])[0]
    play = log.play(3)
    decisions = play.decisions("seed_3")
    assert play.recorded_rounds == result.rounds and len(decisions) == 20 * result.rounds
    for t in range(result.rounds):
        mine = [d for d in decisions if d.round == t]
        assert [d.pair for d in mine] == list(range(20))
        assert np.mean([d.success for d in mine]) == result.series.success[t]
    for d in decisions:
        assert d.action in d.options and d.option_probs == (1 / len(d.options),) * len(d.options)
        assert d.payoff == float(d.success) and d.agent != d.partner
    assert decisions[0].options == ("w0",)  # the first speaker invents the first word
    assert play.consensus[-1] == result.winner and play.consensus[-2] is None
    assert play.majority()[0] == result.winner

    capped = MngLog(max_decisions=100)
    run(args, [3], log=capped)
    assert capped.play(3).recorded_rounds == 5
    assert capped.play(3).decisions("seed_3") == decisions[:100]


@pytest.mark.parametrize(
    ("kwargs", "graph", "named"),
    [
        ({"committed_fraction": 1.2}, None, "committed_fraction=1.2"),
        ({"committed_fraction": 0.0001}, None, "committed_fraction=0.0001"),
        ({"num_agents": 1}, None, "num_agents=1"),
        ({"num_agents": 4}, [(0, 1), (2, 3), (0, 4)], "graph edge"),
        ({"num_agents": 4}, [(0, 1), (1, 2)], "without neighbours"),
    ],
)
def test_bad_input_names_the_value_and_what_is_accepted(kwargs, graph, named):
    with pytest.raises(ValueError, match="expected") as err:
        run(MngArgs(**kwargs), [0], graph=graph)
    assert named in str(err.value)
