"""Drift measures: analytic KL/JS values in bits, diversity, zeros, and the metric records."""

from __future__ import annotations

import math

import pytest

from societies.measures.drift import (
    DRIFT_SMOOTHING,
    diversity,
    drift,
    js_divergence,
    kl_divergence,
    mean_distribution,
    smooth,
)
from societies.records import AgentPrior
from trainer.drift_metrics import drift_records

COIN = {"a": 0.5, "b": 0.5}
SKEWED = {"a": 0.75, "b": 0.25}
ONE_HOT_A = {"a": 1.0, "b": 0.0}
ONE_HOT_B = {"a": 0.0, "b": 1.0}


# --- KL --------------------------------------------------------------------------------


def test_kl_of_known_distributions_in_bits():
    # KL(3/4,1/4 || 1/2,1/2) = 3/4 log2(3/2) + 1/4 log2(1/2) = 3/4 log2 3 - 1
    assert kl_divergence(SKEWED, COIN) == pytest.approx(0.75 * math.log2(3) - 1, abs=1e-15)
    # KL(1/2,1/2 || 3/4,1/4) = 1/2 log2(2/3) + 1/2 log2(2) = 1 - 1/2 log2 3
    assert kl_divergence(COIN, SKEWED) == pytest.approx(1 - 0.5 * math.log2(3), abs=1e-15)
    # one-hot against the uniform over 4: log2 4 = 2 bits
    uniform4 = dict.fromkeys("abcd", 0.25)
    assert kl_divergence({"a": 1.0}, uniform4) == pytest.approx(2.0, abs=1e-15)


def test_kl_of_identical_is_zero_and_zero_terms_in_p_contribute_nothing():
    assert kl_divergence(SKEWED, SKEWED) == 0.0
    # p(b) = 0: the term 0 log(0/q) is 0, so KL = 1 * log2(1 / 0.5) = 1 bit
    assert kl_divergence(ONE_HOT_A, COIN) == pytest.approx(1.0, abs=1e-15)


def test_kl_is_infinite_where_the_reference_has_zero_and_smoothing_makes_it_finite():
    assert kl_divergence(COIN, ONE_HOT_A) == math.inf
    eps = 1e-6
    smoothed = kl_divergence(ONE_HOT_B, ONE_HOT_A, smoothing=eps)
    # p' = (eps/2, 1 - eps/2), q' = (1 - eps/2, eps/2): the bound log2(1 + (1-eps)k/eps)
    p_b, q_b = 1 - eps / 2, eps / 2
    exact = p_b * math.log2(p_b / q_b) + q_b * math.log2(q_b / p_b)
    assert smoothed == pytest.approx(exact, rel=1e-12)
    assert smoothed <= math.log2(1 + (1 - eps) * 2 / eps)
    # where both sides have mass well above eps, smoothing moves KL by O(eps)
    assert kl_divergence(SKEWED, COIN, smoothing=eps) == pytest.approx(
        kl_divergence(SKEWED, COIN), abs=10 * eps
    )


def test_smooth_mixes_with_the_uniform_on_the_given_options():
    assert smooth({"a": 1.0}, ["a", "b"], 0.1) == pytest.approx({"a": 0.95, "b": 0.05})
    with pytest.raises(ValueError, match=r"smoothing=1.0; expected 0 <= smoothing < 1"):
        smooth(COIN, ["a", "b"], 1.0)


def test_missing_options_count_as_zero():
    assert kl_divergence({"a": 1.0}, COIN) == kl_divergence(ONE_HOT_A, COIN)
    assert js_divergence({"a": 1.0}, {"b": 1.0}) == 1.0


@pytest.mark.parametrize(
    "bad, message",
    [
        ({}, "p is empty"),
        ({"a": 0.5, "b": 0.6}, "p sums to 1.1"),
        ({"a": -0.5, "b": 1.5}, r"p\['a'\]=-0.5; expected a finite number >= 0"),
        ({"a": math.nan, "b": 1.0}, r"p\['a'\]=nan"),
    ],
)
def test_a_non_distribution_is_named(bad, message):
    with pytest.raises(ValueError, match=message):
        kl_divergence(bad, COIN)


# --- JS ----------------------------------------------------------------------------------


def test_js_is_symmetric_bounded_by_one_bit_and_zero_for_identical():
    pairs = [(SKEWED, COIN), (ONE_HOT_A, COIN), ({"a": 0.1, "b": 0.2, "c": 0.7}, SKEWED)]
    for p, q in pairs:
        assert js_divergence(p, q) == pytest.approx(js_divergence(q, p), abs=1e-15)
        assert 0.0 < js_divergence(p, q) <= 1.0
    assert js_divergence(SKEWED, SKEWED) == 0.0
    assert js_divergence(ONE_HOT_A, ONE_HOT_B) == 1.0


def test_js_of_one_hot_and_coin_is_analytic():
    # JS = H(m) - (H(p) + H(q))/2 with m = (3/4, 1/4): h(1/4) - (0 + 1)/2
    h = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    assert js_divergence(ONE_HOT_A, COIN) == pytest.approx(h - 0.5, abs=1e-15)


# --- population ----------------------------------------------------------------------------


def test_diversity_is_zero_for_identical_agents_and_one_bit_for_disjoint_one_hots():
    assert diversity([SKEWED, SKEWED, SKEWED]) == 0.0
    assert diversity([ONE_HOT_A, ONE_HOT_B]) == 1.0
    # three agents, two identical: pairs (A,A)=0, (A,B)=1, (A,B)=1 -> 2/3
    assert diversity([ONE_HOT_A, ONE_HOT_A, ONE_HOT_B]) == pytest.approx(2 / 3, abs=1e-15)
    with pytest.raises(ValueError, match="1 distribution.*at least 2"):
        diversity([COIN])


def test_mean_distribution_is_the_equal_mixture_on_the_union():
    assert mean_distribution([{"a": 1.0}, {"b": 1.0}]) == {"a": 0.5, "b": 0.5}


def test_drift_per_agent_and_population():
    start = {"x": COIN, "y": COIN}
    now = {"x": ONE_HOT_A, "y": ONE_HOT_B, "z": COIN}  # z has no start
    result = drift(now, start, majority_option="a")
    by_agent = {a.agent: a for a in result.agents}
    assert [a.agent for a in result.agents] == ["x", "y", "z"]
    # exact KL(one-hot || coin) = 1 bit; smoothing moves it by ~eps log2(1/eps)
    eps = DRIFT_SMOOTHING
    assert by_agent["x"].kl_from_start == pytest.approx(1.0, abs=eps * math.log2(1 / eps))
    assert by_agent["x"].kl_from_start == kl_divergence(ONE_HOT_A, COIN, smoothing=eps)
    assert by_agent["x"].js_from_start == pytest.approx(js_divergence(ONE_HOT_A, COIN))
    assert by_agent["z"].kl_from_start is None and by_agent["z"].js_from_start is None
    # the mean of now is the coin, so z is at it and x, y are 1 bit of KL away
    assert by_agent["z"].js_from_mean == 0.0
    assert by_agent["x"].kl_from_mean == pytest.approx(1.0, abs=eps * math.log2(1 / eps))
    assert [by_agent[a].on_majority for a in "xyz"] == [1.0, 0.0, 0.5]
    assert result.mean_on_majority == 0.5
    assert result.mean_entropy_bits == pytest.approx(1 / 3)
    # pairs: (x,y)=1, (x,z)=(y,z)=h(1/4)-1/2
    h = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    assert result.diversity_js == pytest.approx((1 + 2 * (h - 0.5)) / 3)
    assert result.mean_js_from_start == pytest.approx(h - 0.5)
    assert result.mean_js_of_means == 0.0  # the community's mean did not move


def test_drift_without_a_majority_or_with_one_agent_leaves_those_out():
    result = drift({"x": SKEWED}, {"x": COIN}, majority_option=None)
    assert result.diversity_js is None
    assert result.mean_on_majority is None and result.agents[0].on_majority is None


# --- metric records ------------------------------------------------------------------------


def prior(agent: str, probs: dict[str, float]) -> AgentPrior:
    return AgentPrior(agent=agent, probs=probs, option_mass=0.9, orders=2)


def test_drift_records_names_phase_and_values():
    gen0 = {"x": prior("x", COIN), "y": prior("y", COIN)}
    now = {"x": prior("x", ONE_HOT_A), "y": prior("y", ONE_HOT_B)}
    records = drift_records(3, now, gen0, "a")
    assert {r.phase for r in records} == {"drift"}
    assert {r.generation for r in records} == {3}
    values = {(r.name, r.agent): r.value for r in records}
    expected_kl = kl_divergence(ONE_HOT_A, COIN, smoothing=DRIFT_SMOOTHING)
    assert values[("prior_kl_from_gen0_bits", "x")] == expected_kl
    assert values[("prior_diversity_js_bits", None)] == 1.0
    assert values[("prior_mean_on_majority", None)] == 0.5
    assert values[("prior_js_mean_from_gen0_mean_bits", None)] == 0.0
    per_agent = {name for name, agent in values if agent == "x"}
    assert per_agent == {
        "prior_kl_from_gen0_bits",
        "prior_js_from_gen0_bits",
        "prior_kl_from_mean_bits",
        "prior_js_from_mean_bits",
    }
    assert all(math.isfinite(r.value) for r in records)


def test_drift_records_take_a_prefix_and_skip_a_missing_majority():
    gen0 = {"x": prior("x", COIN)}
    records = drift_records(0, gen0, gen0, None, prefix="custom_trust")
    names = {r.name for r in records}
    assert all(n.startswith("custom_trust_") for n in names)
    assert "custom_trust_mean_on_majority" not in names
    assert "custom_trust_diversity_js_bits" not in names
    assert {r.value for r in records if "from_gen0" in r.name} == {0.0}
