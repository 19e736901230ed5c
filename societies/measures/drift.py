"""How far the agents' probe distributions moved: divergences, diversity, consensus, in bits.

Pure functions over probe distributions (``{option: probability}``, e.g.
``AgentPrior.probs``), one per agent per generation (issue 9, "Measuring what changed").
Options missing from a mapping have probability 0; two distributions are compared on
the union of their options. Sources:

- Kullback–Leibler divergence ``KL(p||q) = sum_x p(x) log2(p(x) / q(x))``, with
  ``0 log(0 / q) = 0`` and ``p log(p / 0) = inf`` for p > 0: Cover & Thomas, *Elements
  of Information Theory*, 2nd ed. (2006), sec. 2.3.
- Jensen–Shannon divergence ``JS(p, q) = KL(p||m)/2 + KL(q||m)/2`` with
  ``m = (p + q)/2``: J. Lin, "Divergence measures based on the Shannon entropy", IEEE
  Trans. Inf. Theory 37(1):145-151 (1991). In bits it is symmetric, finite and in
  [0, 1]: 0 iff p = q, 1 iff p and q have disjoint supports.

Zeros in KL. Exact KL is infinite when the reference q gives 0 to an option p does not;
:func:`kl_divergence` returns ``math.inf`` then (``smoothing=0``). Probe distributions are
softmaxes, so an exact zero means underflow or a hand-made distribution, yet one inf
would make a population mean useless. :func:`drift` therefore smooths both sides first,
``p' = (1 - eps) p + eps / k`` over the k compared options with ``eps =``
:data:`DRIFT_SMOOTHING` (1e-6; additive smoothing towards the uniform distribution). The
smoothed KL is finite, at most ``log2(1 + (1 - eps) k / eps)`` (~21.9 bits for k = 4).
Where the exact KL is finite it moves by O(eps) when both sides have mass well above
eps, and by up to ~``eps log2(1/eps)`` (~2e-5 bits) when p has options at 0 (their
smoothed terms ``(eps/k) log2(eps / (k q'))`` no longer vanish). JS needs no smoothing
and is the headline number.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from societies.metrics import entropy_bits

Distribution = Mapping[str, float]

DRIFT_SMOOTHING = 1e-6
"""eps of the smoothing :func:`drift` applies before KL (see the module docstring)."""

# A probe distribution is an average of renormalised softmaxes: its sum is 1 up to
# float rounding. Anything further off is not a distribution.
_SUM_TOLERANCE = 1e-6


def check_distribution(p: Distribution, name: str = "p") -> None:
    """Raise ``ValueError`` unless ``p`` is non-empty, finite, >= 0 and sums to 1."""
    if not p:
        raise ValueError(f"{name} is empty; expected {{option: probability}}")
    for option, value in p.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}[{option!r}]={value!r}; expected a finite number >= 0")
    total = math.fsum(p.values())
    if abs(total - 1.0) > _SUM_TOLERANCE:
        raise ValueError(f"{name} sums to {total!r}; expected 1 (within {_SUM_TOLERANCE})")


def _support(*dists: Distribution) -> list[str]:
    return sorted(set().union(*dists))


def smooth(p: Distribution, options: Sequence[str], eps: float) -> dict[str, float]:
    """``(1 - eps) p + eps / k`` on ``options`` (k of them): mixed with the uniform."""
    if not 0 <= eps < 1:
        raise ValueError(f"smoothing={eps!r}; expected 0 <= smoothing < 1")
    k = len(options)
    return {o: (1 - eps) * p.get(o, 0.0) + eps / k for o in options}


def kl_divergence(p: Distribution, q: Distribution, smoothing: float = 0.0) -> float:
    """``KL(p||q)`` in bits on the union of the options.

    Args:
        p, q: distributions; a missing option has probability 0.
        smoothing: eps; when > 0 both sides are first mixed with the uniform
            distribution (:func:`smooth`), so the result is finite.

    Returns:
        The divergence, ``math.inf`` if ``smoothing == 0`` and q gives 0 to an option
        p does not.
    """
    check_distribution(p, "p")
    check_distribution(q, "q")
    options = _support(p, q)
    if smoothing:
        p, q = smooth(p, options, smoothing), smooth(q, options, smoothing)
    terms = []
    for o in options:
        po, qo = p.get(o, 0.0), q.get(o, 0.0)
        if po == 0:
            continue
        if qo == 0:
            return math.inf
        terms.append(po * math.log2(po / qo))
    # Rounding can put the sum of a divergence of identical distributions just below 0.
    return max(0.0, math.fsum(terms))


def js_divergence(p: Distribution, q: Distribution) -> float:
    """Jensen–Shannon divergence in bits: symmetric, in [0, 1] (Lin 1991)."""
    m = mean_distribution([p, q])
    return min(1.0, 0.5 * kl_divergence(p, m) + 0.5 * kl_divergence(q, m))


def mean_distribution(dists: Sequence[Distribution]) -> dict[str, float]:
    """The equal-weight mixture of ``dists`` (the population's mean distribution)."""
    if not dists:
        raise ValueError("dists is empty; expected at least one distribution")
    for i, p in enumerate(dists):
        check_distribution(p, f"dists[{i}]")
    return {o: math.fsum(p.get(o, 0.0) for p in dists) / len(dists) for o in _support(*dists)}


def diversity(dists: Sequence[Distribution]) -> float:
    """Mean Jensen–Shannon divergence (bits) over the unordered pairs of ``dists``.

    0 when every agent holds the same distribution; 1 when every two agents have
    disjoint supports (e.g. one-hot on different options).
    """
    if len(dists) < 2:
        raise ValueError(f"{len(dists)} distribution(s); diversity needs at least 2")
    pairs = list(itertools.combinations(dists, 2))
    return math.fsum(js_divergence(p, q) for p, q in pairs) / len(pairs)


@dataclass(frozen=True)
class AgentDrift:
    """One agent's probe distribution against its start and against the population.

    ``*_from_start`` is None for an agent with no start distribution (a seat added after
    generation 0). ``on_majority`` is None when the community has no majority option.
    """

    agent: str
    kl_from_start: float | None
    js_from_start: float | None
    kl_from_mean: float
    js_from_mean: float
    entropy_bits: float
    on_majority: float | None


@dataclass(frozen=True)
class PopulationDrift:
    """One generation's drift: per agent, and population summaries.

    Attributes:
        agents: per agent, sorted by name.
        diversity_js: mean pairwise JS (bits); None with a single agent.
        mean_entropy_bits: mean of the agents' entropies.
        mean_on_majority: mean probability on the majority option (None without one).
        mean_js_from_start: mean of the agents' JS from their own start (None if no
            agent has a start).
        mean_js_of_means: JS between the population's mean distribution now and at
            the start: how far the community as a whole moved.
    """

    agents: tuple[AgentDrift, ...]
    diversity_js: float | None
    mean_entropy_bits: float
    mean_on_majority: float | None
    mean_js_from_start: float | None
    mean_js_of_means: float


def drift(
    now: Mapping[str, Distribution],
    start: Mapping[str, Distribution],
    majority_option: str | None,
    smoothing: float = DRIFT_SMOOTHING,
) -> PopulationDrift:
    """Drift of every agent in ``now`` from its own ``start`` and from the population mean.

    Args:
        now: agent -> its probe distribution this generation.
        start: agent -> its probe distribution at the reference (generation 0). Agents
            of ``now`` missing here get no ``*_from_start`` values; agents only here are
            ignored except in ``mean_js_of_means`` (the start population's mean).
        majority_option: the community's majority option (``GenerationMetrics``), or
            None.
        smoothing: eps of the KL smoothing (module docstring); JS is never smoothed.
    """
    if not now:
        raise ValueError("now is empty; expected {agent: distribution} for >= 1 agent")
    if not start:
        raise ValueError("start is empty; expected {agent: distribution} for >= 1 agent")
    names = sorted(now)
    for agent in names:
        check_distribution(now[agent], f"now[{agent!r}]")
    mean_now = mean_distribution([now[a] for a in names])
    mean_start = mean_distribution([start[a] for a in sorted(start)])
    agents = []
    for agent in names:
        p = now[agent]
        ref = start.get(agent)
        agents.append(
            AgentDrift(
                agent=agent,
                kl_from_start=None if ref is None else kl_divergence(p, ref, smoothing),
                js_from_start=None if ref is None else js_divergence(p, ref),
                kl_from_mean=kl_divergence(p, mean_now, smoothing),
                js_from_mean=js_divergence(p, mean_now),
                entropy_bits=entropy_bits(p),
                on_majority=None if majority_option is None else p.get(majority_option, 0.0),
            )
        )
    from_start = [a.js_from_start for a in agents if a.js_from_start is not None]
    return PopulationDrift(
        agents=tuple(agents),
        diversity_js=diversity([now[a] for a in names]) if len(names) > 1 else None,
        mean_entropy_bits=_mean([a.entropy_bits for a in agents]),
        mean_on_majority=(
            None if majority_option is None else _mean([a.on_majority for a in agents])
        ),
        mean_js_from_start=_mean(from_start) if from_start else None,
        mean_js_of_means=js_divergence(mean_now, mean_start),
    )


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)
