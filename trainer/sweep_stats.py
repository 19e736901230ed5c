"""The statistics of ``folkways sweep``'s aggregates: pure functions, no run directories.

* :func:`chi2_sf` — the chi-square survival function, with scipy when it is installed,
  else the regularized upper incomplete gamma function (Numerical Recipes, 3rd ed.,
  §6.2: series for x < a + 1, Lentz's continued fraction otherwise).
* :func:`winner_test` — is a sweep's distribution of winning options (one per seed)
  what a null distribution per seed predicts? Pearson's chi-square with its asymptotic
  p-value, and a Monte Carlo p-value under the same null, which stays exact with the
  few seeds a sweep affords (the asymptotic one wants every expected count >= 5).
* :func:`fit_tipping` — the critical fraction of a committed-minority sweep: a logistic
  curve ``P(flip | f) = 1 / (1 + exp(-(f - f_c) / s))`` fitted by maximum likelihood to
  the per-seed binary outcomes, with a profile-likelihood interval for ``f_c``.

numpy only (scipy is optional): the fit's two one-dimensional searches are golden-section
searches, valid because the profile is unimodal (see :func:`fit_tipping`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

__all__ = [
    "ChiSquareTest",
    "TippingFit",
    "chi2_sf",
    "fit_tipping",
    "logistic",
    "quartiles",
    "regularized_upper_gamma",
    "winner_test",
]


def quartiles(values: Sequence[float]) -> tuple[float, float, float] | None:
    """(first quartile, median, third quartile), linearly interpolated (numpy's default,
    Hyndman & Fan type 7); None for no values."""
    if not len(values):
        return None
    q1, median, q3 = np.quantile(np.asarray(values, dtype=float), [0.25, 0.5, 0.75])
    return float(q1), float(median), float(q3)


# ----- chi-square ---------------------------------------------------------------------


def regularized_upper_gamma(a: float, x: float) -> float:
    """Q(a, x) = Γ(a, x) / Γ(a), for a > 0 and x >= 0 (Numerical Recipes §6.2)."""
    if a <= 0:
        raise ValueError(f"a={a}; expected a > 0")
    if x < 0:
        raise ValueError(f"x={x}; expected x >= 0")
    if x == 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        # P(a, x) = e^-x x^a / Γ(a+1) · Σ_n x^n / ((a+1)...(a+n))
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefactor))
    # Q(a, x) = e^-x x^a / Γ(a) · 1/(x+1-a- 1·(1-a)/(x+3-a- 2·(2-a)/(x+5-a- ...)))
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-16:
            break
    return math.exp(log_prefactor) * h


def chi2_sf(statistic: float, df: int) -> float:
    """P(X >= statistic) for X ~ chi-square with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"df={df}; expected an integer >= 1")
    if statistic <= 0:
        return 1.0
    try:
        from scipy.special import gammaincc
    except ImportError:  # scipy is optional (it arrives with the dev extra)
        return regularized_upper_gamma(df / 2, statistic / 2)
    return float(gammaincc(df / 2, statistic / 2))


@dataclass(frozen=True)
class ChiSquareTest:
    """Pearson's goodness-of-fit test of winners (one per seed) against a null.

    Attributes:
        observed / expected: counts per option (expected = sum over seeds of the null's
            probability of that option), options with expected count 0 left out unless
            observed.
        statistic: Σ (observed - expected)² / expected (inf when an option the null
            rules out won).
        df: options with a positive expected count, minus one.
        p_value: chi-square approximation (valid when every expected count is >= ~5).
        p_value_monte_carlo: (1 + #{simulated statistic >= observed}) / (1 + draws),
            simulating each seed's winner from its own null (exact up to Monte Carlo error).
    """

    observed: dict[str, int]
    expected: dict[str, float]
    statistic: float
    df: int
    p_value: float
    p_value_monte_carlo: float
    draws: int

    def to_dict(self) -> dict:
        return asdict(self)


def _pearson(counts: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Pearson's statistic over the last axis; categories with expected 0 must be absent."""
    return ((counts - expected) ** 2 / expected).sum(axis=-1)


def winner_test(
    winners: Sequence[str],
    nulls: Sequence[Mapping[str, float]],
    *,
    draws: int = 10_000,
    seed: int = 0,
) -> ChiSquareTest | None:
    """Test winners against per-seed null distributions (one mapping per winner).

    With one option set for every seed and a uniform null this is the textbook test
    against uniform over the W options (df = W - 1). Seeds may have different option
    sets (letter names drawn from each seed): the expected count of an option is then
    the sum of its null probabilities, and only the Monte Carlo p-value is exact.

    Returns:
        None when there are fewer than two options with positive expected count (or no
        winners): there is nothing to test.
    """
    if len(winners) != len(nulls):
        raise ValueError(f"{len(winners)} winners but {len(nulls)} null distributions")
    if draws < 1:
        raise ValueError(f"draws={draws}; expected an integer >= 1")
    options = sorted({o for null in nulls for o, p in null.items() if p > 0} | set(winners))
    if not winners or len(options) < 2:
        return None
    index = {o: i for i, o in enumerate(options)}
    probs = np.zeros((len(nulls), len(options)))
    for s, null in enumerate(nulls):
        for option, p in null.items():
            probs[s, index[option]] = p
        total = probs[s].sum()
        if not total > 0:
            raise ValueError(f"null distribution {dict(null)} of seed {s} has no mass")
        probs[s] /= total
    expected = probs.sum(axis=0)
    counts = np.zeros(len(options))
    for w in winners:
        counts[index[w]] += 1
    possible = expected > 0
    df = int(possible.sum()) - 1
    if df < 1:
        return None
    if np.any(counts[~possible] > 0):
        statistic, p_value, p_mc = math.inf, 0.0, 1 / (1 + draws)
    else:
        statistic = float(_pearson(counts[possible], expected[possible]))
        p_value = chi2_sf(statistic, df)
        rng = np.random.default_rng(seed)
        simulated = np.zeros((draws, len(options)))
        for s in range(len(nulls)):
            picks = rng.choice(len(options), size=draws, p=probs[s])
            np.add.at(simulated, (np.arange(draws), picks), 1)
        sim_stats = _pearson(simulated[:, possible], expected[possible])
        # a relative tolerance: the same table gives the same statistic, up to rounding
        hits = int(np.sum(sim_stats >= statistic * (1 - 1e-12)))
        p_mc = (1 + hits) / (1 + draws)
    return ChiSquareTest(
        observed={o: int(counts[i]) for i, o in enumerate(options) if possible[i] or counts[i]},
        expected={o: float(expected[i]) for i, o in enumerate(options) if possible[i]},
        statistic=statistic,
        df=df,
        p_value=p_value,
        p_value_monte_carlo=p_mc,
        draws=draws,
    )


# ----- the tipping point --------------------------------------------------------------


def logistic(f: np.ndarray | float, critical: float, scale: float) -> np.ndarray | float:
    """1 / (1 + exp(-(f - critical) / scale)): the share of seeds flipped at fraction f."""
    z = (np.asarray(f, dtype=float) - critical) / scale
    return 0.5 * (1 + np.tanh(z / 2))  # the same function, no overflow


@dataclass(frozen=True)
class TippingFit:
    """The fitted tipping point of one curve (one set of other grid values, one generation).

    Attributes:
        fractions / seeds / flipped: per fraction tried, how many seeds and how many of
            them flipped to the committed option.
        critical_fraction: f_c, where half of the seeds flip (None if not identified:
            no seed flipped, every seed flipped, or one fraction only).
        scale: s, the width of the transition (at its lower bound when ``separated``).
        interval: the profile-likelihood interval of f_c at ``level``; a None end means
            the interval reaches beyond the search window [min f - span, max f + span].
        separated: every non-flipped seed had a smaller fraction than every flipped one;
            the likelihood is then flat on the gap, so f_c is the gap's midpoint and the
            interval is about the gap.
        note: why the fit is not identified, if it is not.
    """

    fractions: list[float]
    seeds: list[int]
    flipped: list[int]
    critical_fraction: float | None
    scale: float | None
    interval: tuple[float | None, float | None] | None
    level: float
    separated: bool
    method: str = "maximum likelihood; profile-likelihood interval"
    note: str = ""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["interval"] = list(self.interval) if self.interval is not None else None
        return data


class _Binned:
    """Binary outcomes binned by fraction: n_f seeds, k_f flips at each fraction f."""

    def __init__(self, fractions: Sequence[float], flipped: Sequence[bool]) -> None:
        f = np.asarray(fractions, dtype=float)
        y = np.asarray(flipped, dtype=bool)
        self.x, inverse = np.unique(f, return_inverse=True)
        self.n = np.bincount(inverse, minlength=len(self.x)).astype(float)
        self.k = np.bincount(inverse, weights=y.astype(float), minlength=len(self.x))

    def nll(self, critical: np.ndarray, log_beta: np.ndarray) -> np.ndarray:
        """Negative log-likelihood at each (critical, log slope) pair (broadcast)."""
        z = np.exp(log_beta)[..., None] * (self.x - critical[..., None])
        # -log σ(z) = log(1 + e^-z); -log(1 - σ(z)) = log(1 + e^z)
        return (self.k * np.logaddexp(0, -z) + (self.n - self.k) * np.logaddexp(0, z)).sum(-1)


def _golden_min(func, lo: np.ndarray, hi: np.ndarray, iterations: int = 60) -> np.ndarray:
    """Elementwise argmin of a unimodal ``func`` on [lo, hi] (golden-section search;
    0.618^60 of the bracket is left, far below float32 rounding of a fraction)."""
    ratio = (math.sqrt(5) - 1) / 2
    a, b = lo.astype(float), hi.astype(float)
    for _ in range(iterations):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        left = func(c) <= func(d)  # the minimum lies in [a, d], else in [c, b]
        a, b = np.where(left, a, c), np.where(left, d, b)
    return (a + b) / 2


def fit_tipping(
    fractions: Sequence[float],
    flipped: Sequence[bool],
    *,
    level: float = 0.95,
    grid_points: int = 601,
) -> TippingFit:
    """Fit ``P(flip | f) = 1 / (1 + exp(-(f - f_c) / s))`` to one outcome per seed.

    Maximum likelihood in (f_c, β = 1/s), β bounded to [0.1, 1000] / span of the
    fractions tried. For a fixed f_c the negative log-likelihood is convex in β (a
    logistic regression through the point f_c), and the profile over f_c is unimodal
    (its sublevel sets are the rays a = -f_c·β that meet a convex sublevel set of the
    (a, β) likelihood), so both searches are golden-section searches. The interval is
    {f_c : 2 (profile NLL(f_c) - min NLL) <= χ²₁(level)} (Venzon & Moolgavkar 1988),
    deterministic where a bootstrap over a handful of seeds per fraction would be
    neither stable nor cheap.

    Args:
        fractions: the committed fraction of each seed's run.
        flipped: whether that run's population ended on the committed option.
        level: the interval's confidence level.
    """
    if len(fractions) != len(flipped):
        raise ValueError(f"{len(fractions)} fractions but {len(flipped)} outcomes")
    if not 0 < level < 1:
        raise ValueError(f"level={level}; expected 0 < level < 1")
    data = _Binned(fractions, flipped)
    base = {
        "fractions": [float(v) for v in data.x],
        "seeds": [int(v) for v in data.n],
        "flipped": [int(v) for v in data.k],
        "level": level,
    }
    unidentified = {"critical_fraction": None, "scale": None, "interval": None}
    total, flips = float(data.n.sum()), float(data.k.sum())
    if total == 0 or len(data.x) < 2:
        note = "fewer than two fractions tried: no curve to fit"
        return TippingFit(**base, **unidentified, separated=False, note=note)
    if flips == 0 or flips == total:
        where = "no seed flipped" if flips == 0 else "every seed flipped"
        note = f"{where} at any fraction tried: the critical fraction lies outside the range"
        return TippingFit(**base, **unidentified, separated=False, note=note)

    span = float(data.x[-1] - data.x[0])
    log_beta_lo, log_beta_hi = math.log(0.1 / span), math.log(1000 / span)

    def profile(critical: np.ndarray) -> np.ndarray:
        critical = np.asarray(critical, dtype=float)
        lo = np.full(critical.shape, log_beta_lo)
        hi = np.full(critical.shape, log_beta_hi)
        best = _golden_min(lambda lb: data.nll(critical, lb), lo, hi)
        return np.minimum(
            data.nll(critical, best),
            np.minimum(data.nll(critical, lo), data.nll(critical, hi)),
        )

    window = (float(data.x[0]) - span, float(data.x[-1]) + span)
    grid = np.linspace(*window, grid_points)
    values = profile(grid)
    i = int(np.argmin(values))
    no_flip = data.x[data.k < data.n]  # fractions where some seed did not flip
    any_flip = data.x[data.k > 0]
    separated = bool(no_flip.max() < any_flip.min())
    if separated:
        critical = float(no_flip.max() + any_flip.min()) / 2
    else:
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid_points - 1)]
        critical = float(_golden_min(profile, np.array([lo]), np.array([hi]))[0])
    nll_min = min(float(profile(np.array([critical]))[0]), float(values.min()))
    log_beta = float(
        _golden_min(
            lambda lb: data.nll(np.full(lb.shape, critical), lb),
            np.array([log_beta_lo]),
            np.array([log_beta_hi]),
        )[0]
    )
    threshold = NormalDist().inv_cdf((1 + level) / 2) ** 2  # χ²₁ quantile
    inside = 2 * (values - nll_min) <= threshold
    j = int(np.argmin(np.abs(grid - critical)))
    inside[j] = True  # the estimate itself is in its interval

    def crossing(k_in: int, k_out: int) -> float:
        """Where the deviance crosses the threshold between two grid points (bisection)."""
        a, b = grid[k_in], grid[k_out]
        for _ in range(40):
            mid = (a + b) / 2
            dev = 2 * (float(profile(np.array([mid]))[0]) - nll_min)
            a, b = (mid, b) if dev <= threshold else (a, mid)
        return float((a + b) / 2)

    lo_k = j
    while lo_k > 0 and inside[lo_k - 1]:
        lo_k -= 1
    hi_k = j
    while hi_k < grid_points - 1 and inside[hi_k + 1]:
        hi_k += 1
    lower = None if lo_k == 0 else crossing(lo_k, lo_k - 1)
    upper = None if hi_k == grid_points - 1 else crossing(hi_k, hi_k + 1)
    return TippingFit(
        **base,
        critical_fraction=critical,
        scale=float(math.exp(-log_beta)),
        interval=(lower, upper),
        separated=separated,
    )
