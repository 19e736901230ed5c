"""Information measures: analytic values, a dit cross-check, permutation tests, influence."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from societies.measures.information import (
    Estimator,
    InfluenceMatrix,
    conditional_mutual_information,
    entropy,
    influence_matrix,
    mutual_information,
    partner_mutual_information,
    permutation_test,
    transfer_entropy,
)


def uniform_source(length: int, symbols: int = 4, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(0, symbols, length).tolist()


def lag_one_copy(source: list) -> list:
    """A target that repeats the source one step later (its first step is arbitrary)."""
    return [source[0], *source[:-1]]


# --- entropy -----------------------------------------------------------------------


def test_entropy_of_uniform_over_four_is_two_bits():
    assert entropy(["a", "b", "c", "d"] * 5) == pytest.approx(2.0, abs=1e-15)


def test_entropy_of_a_constant_is_zero_and_of_a_fair_coin_one_bit():
    assert entropy([7, 7, 7]) == 0.0
    assert entropy([True, False]) == pytest.approx(1.0, abs=1e-15)


def test_entropy_depends_only_on_the_histogram():
    samples = ["x", None, ("t", 1), "x", None, "x"]
    relabeled = [3, 1, 2, 3, 1, 3]
    # Exact equality: fsum makes the value independent of the order values were seen in.
    assert entropy(samples) == entropy(relabeled) == entropy(reversed(samples))
    assert entropy(np.array([3, 1, 2, 3, 1, 3])) == entropy(relabeled)


def test_miller_madow_adds_k_minus_one_over_two_n_nats():
    # Plug-in H(a, a, b) = log2(3) - 2/3 bits; K = 2 observed values, N = 3 samples,
    # so Miller-Madow adds (2 - 1) / (2 * 3) = 1/6 nat = 1 / (6 ln 2) bits.
    plugin = math.log2(3) - 2 / 3
    assert entropy("aab") == pytest.approx(plugin, abs=1e-15)
    assert entropy("aab", "miller_madow") == pytest.approx(
        plugin + 1 / (6 * math.log(2)), abs=1e-15
    )
    assert entropy("aab", Estimator.MILLER_MADOW) == entropy("aab", "miller_madow")
    # A single observed value needs no correction: K - 1 = 0.
    assert entropy("aaaa", "miller_madow") == 0.0


def test_miller_madow_mutual_information_corrects_each_entropy():
    x, y = "aabb", "abab"  # K_x = K_y = 2, K_xy = 4, N = 4
    correction = (1 + 1 - 3) / (2 * 4) / math.log(2)
    assert mutual_information(x, y, "miller_madow") == pytest.approx(
        mutual_information(x, y) + correction, abs=1e-15
    )


def test_bad_inputs_name_the_value_and_what_is_accepted():
    with pytest.raises(
        ValueError, match=r"estimator='mle'; expected one of 'plugin', 'miller_madow'"
    ):
        entropy("ab", estimator="mle")
    with pytest.raises(ValueError, match="samples is empty"):
        entropy([])
    with pytest.raises(ValueError, match=r"len\(x\)=3 but len\(y\)=2"):
        mutual_information("abc", "ab")


# --- mutual information ---------------------------------------------------------------


def test_a_deterministic_copy_shares_all_its_entropy():
    x = uniform_source(500, symbols=5)
    assert mutual_information(x, x) == pytest.approx(entropy(x), abs=1e-12)
    # Any one-to-one relabeling is still a copy.
    assert mutual_information(x, [f"name-{v}" for v in x]) == pytest.approx(entropy(x), abs=1e-12)


def test_independent_variables_share_almost_nothing_and_the_test_does_not_reject():
    x = uniform_source(300, symbols=3, seed=0)
    y = uniform_source(300, symbols=3, seed=100)
    mi, p = permutation_test(mutual_information, x, y, n_permutations=199, seed=0)
    # Plug-in bias for independent 3x3 variables is about (3-1)(3-1) / (2 N ln 2) = 0.01 bit.
    assert 0.0 <= mi < 0.03
    assert p > 0.2


def test_permutation_p_values_are_calibrated_under_independence():
    # Under the null p is (close to) uniform on {1/100, ..., 1}: over 40 independent
    # data sets its mean is near 1/2 and few fall below 0.05.
    p_values = [
        permutation_test(
            mutual_information,
            uniform_source(60, symbols=2, seed=2 * k),
            uniform_source(60, symbols=2, seed=2 * k + 1),
            n_permutations=99,
            seed=k,
        )[1]
        for k in range(40)
    ]
    assert 0.35 < np.mean(p_values) < 0.65
    assert sum(p < 0.05 for p in p_values) <= 6


# --- the dit cross-check --------------------------------------------------------------


def empirical(*columns):
    """The empirical joint distribution of aligned columns as a dit.Distribution."""
    dit = pytest.importorskip("dit")
    counts = Counter(zip(*columns, strict=True))
    outcomes = sorted(counts)
    return dit.Distribution(outcomes, [counts[o] / len(columns[0]) for o in outcomes])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_entropy_and_mutual_information_match_dit(seed):
    dit = pytest.importorskip("dit")
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, 40).tolist()
    y = [(v + int(rng.integers(0, 2))) % 4 for v in x]  # y depends on x, with noise
    z = rng.integers(0, 2, 40).tolist()
    d = empirical(x, y, z)
    assert entropy(x) == pytest.approx(dit.shannon.entropy(d, [0]), abs=1e-12)
    assert entropy(zip(x, y, z, strict=True)) == pytest.approx(dit.shannon.entropy(d), abs=1e-12)
    assert mutual_information(x, y) == pytest.approx(
        dit.shannon.mutual_information(d, [0], [1]), abs=1e-12
    )
    assert conditional_mutual_information(x, y, z) == pytest.approx(
        dit.multivariate.coinformation(d, [[0], [1]], [2]), abs=1e-12
    )
    # I(X;Y|Z) = H(X|Z) - H(X|Y,Z), the form transfer entropy is usually written in.
    assert conditional_mutual_information(x, y, z) == pytest.approx(
        dit.shannon.conditional_entropy(d, [0], [2])
        - dit.shannon.conditional_entropy(d, [0], [1, 2]),
        abs=1e-12,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transfer_entropy_matches_dit_on_its_definition(seed):
    dit = pytest.importorskip("dit")
    rng = np.random.default_rng(seed)
    source = rng.integers(0, 2, 60).tolist()
    # The target copies the source two steps later half of the time.
    target = [s if rng.random() < 0.5 else int(rng.integers(0, 2)) for s in [0, 0, *source[:-2]]]
    # Columns: Y_t, X_{t-2}, X_{t-1}, Y_{t-2}, Y_{t-1} for t = 2 .. 59 (first 2 steps dropped).
    t = range(2, 60)
    d = empirical(
        [target[i] for i in t],
        [source[i - 2] for i in t],
        [source[i - 1] for i in t],
        [target[i - 2] for i in t],
        [target[i - 1] for i in t],
    )
    expected = dit.multivariate.coinformation(d, [[0], [1, 2]], [3, 4])
    assert transfer_entropy(source, target, history=2) == pytest.approx(expected, abs=1e-12)
    assert expected > 0.1  # the check is not a trivial 0 == 0


# --- transfer entropy -----------------------------------------------------------------


def test_a_lag_one_copy_receives_the_source_entropy_and_sends_nothing_back():
    # For an i.i.d. uniform source over 4 symbols, TE(source -> copy) = H(source) = 2
    # bits in the large-sample limit. Plug-in H(Y_t | Y_{t-1}) is biased down by about
    # (16 - 4) / (2 N ln 2) = 0.0009 bit at N = 10,000, and the reverse TE up by about
    # 9 * 4 / (2 N ln 2) = 0.0026 bit; 0.01 bit leaves room for sampling noise.
    source = uniform_source(10_000, symbols=4, seed=0)
    target = lag_one_copy(source)
    assert transfer_entropy(source, target) == pytest.approx(2.0, abs=0.01)
    assert transfer_entropy(source, target) == pytest.approx(entropy(source), abs=0.01)
    assert 0.0 <= transfer_entropy(target, source) < 0.01


def test_transfer_entropy_drops_the_first_history_steps():
    # With history=1 only (Y_1, X_0, Y_0) and (Y_2, X_1, Y_1) are used: two samples in
    # which the target's past is constant and its next value follows the source's.
    source, target = ["a", "b", "z"], ["u", "u", "v"]
    # Y_t in {u, v} each once, predicted exactly by X_{t-1} in {a, b}: 1 bit.
    assert transfer_entropy(source, target, history=1) == pytest.approx(1.0, abs=1e-15)
    assert transfer_entropy(source, target, history=2) == 0.0  # one sample left


def test_transfer_entropy_rejects_bad_lengths_and_histories():
    with pytest.raises(ValueError, match=r"len\(source\)=3 but len\(target\)=4"):
        transfer_entropy("abc", "abcd")
    with pytest.raises(
        ValueError, match=r"length 2 are too short for history=2; expected at least 3"
    ):
        transfer_entropy("ab", "ab", history=2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=rf"history={bad!r}; expected an integer >= 1"):
            transfer_entropy("abcd", "abcd", history=bad)


def test_transfer_entropy_permutation_test_separates_directions():
    source = uniform_source(400, symbols=3, seed=5)
    target = lag_one_copy(source)
    te, p = permutation_test(transfer_entropy, source, target, n_permutations=99, seed=0)
    assert te > 1.4
    assert p == pytest.approx(1 / 100)  # no shuffled source comes close
    _, p_reverse = permutation_test(transfer_entropy, target, source, n_permutations=99, seed=0)
    assert p_reverse > 0.05


# --- permutation test -----------------------------------------------------------------


def test_permutation_test_is_deterministic_per_seed_and_bounded():
    x = uniform_source(50, symbols=3, seed=1)
    y = [v if i % 3 else 0 for i, v in enumerate(x)]  # partly dependent
    first = permutation_test(mutual_information, x, y, n_permutations=50, seed=7)
    assert permutation_test(mutual_information, x, y, n_permutations=50, seed=7) == first
    assert (
        permutation_test(mutual_information, x, y, n_permutations=50, seed=np.random.default_rng(7))
        == first
    )
    assert first[0] == mutual_information(x, y)
    for seed in range(5):
        _, p = permutation_test(mutual_information, x, y, n_permutations=20, seed=seed)
        assert 1 / 21 <= p <= 1.0


def test_ties_count_as_at_least_as_extreme():
    # A constant y makes every statistic 0: every permutation ties, so p = 1.
    _, p = permutation_test(mutual_information, "abcabc", "zzzzzz", n_permutations=10, seed=0)
    assert p == 1.0


def test_permutation_test_rejects_a_non_positive_count():
    with pytest.raises(ValueError, match="n_permutations=0; expected an integer >= 1"):
        permutation_test(mutual_information, "ab", "ab", n_permutations=0)


# --- influence matrix and partners -----------------------------------------------------


def test_influence_matrix_finds_who_follows_whom():
    leader = uniform_source(2_000, symbols=3, seed=11)
    sequences = {
        "loner": uniform_source(2_000, symbols=3, seed=12),
        "leader": leader,
        "follower": lag_one_copy(leader),
    }
    result = influence_matrix(sequences, n_permutations=19, seed=0)
    assert result.agents == ("follower", "leader", "loner")  # sorted
    assert np.array(result.te).shape == (3, 3)
    assert all(math.isnan(result.te[i][i]) for i in range(3))
    assert result.between("leader", "follower") == pytest.approx(math.log2(3), abs=0.01)
    others = [
        result.between(s, t)
        for s in result.agents
        for t in result.agents
        if s != t and (s, t) != ("leader", "follower")
    ]
    assert max(others) < 0.01
    assert result.p_values is not None
    assert result.p_values[1][0] == pytest.approx(1 / 20)  # leader -> follower
    assert (result.history, result.n_permutations) == (1, 19)
    # Same seed, same numbers; no permutations, no p-values.
    assert influence_matrix(sequences, n_permutations=19, seed=0) == result
    assert influence_matrix(sequences).p_values is None


def test_influence_matrix_rejects_unaligned_sequences():
    with pytest.raises(
        ValueError, match=r"len\(sequences\['b'\]\)=2 but len\(sequences\['a'\]\)=3"
    ):
        influence_matrix({"a": "xyz", "b": "xy"})
    with pytest.raises(ValueError, match="sequences is empty"):
        influence_matrix({})
    with pytest.raises(ValueError, match="n_permutations=-1; expected an integer >= 0"):
        influence_matrix({"a": "xyz"}, n_permutations=-1)


def test_influence_matrix_checks_its_shape():
    with pytest.raises(ValueError, match="te is not 2x2"):
        InfluenceMatrix(agents=("a", "b"), te=((0.0,),), p_values=None, history=1, n_permutations=0)


def test_partner_mutual_information():
    matched = [("red", "red"), ("blue", "blue"), ("red", "red"), ("green", "green")]
    assert partner_mutual_information(matched) == pytest.approx(1.5, abs=1e-15)  # H(a)
    unrelated = [(a, b) for a in ("red", "blue") for b in ("red", "blue")]
    assert partner_mutual_information(unrelated) == 0.0
    with pytest.raises(
        ValueError, match=r"pairs\[1\]=\('red',\); expected a \(action_a, action_b\)"
    ):
        partner_mutual_information([("red", "red"), ("red",)])
    with pytest.raises(ValueError, match="pairs is empty"):
        partner_mutual_information([])
