"""Information measures on discrete samples and action sequences, in bits.

Every estimate here is computed from empirical histograms of hashable values (action
names, ``None`` for "did not act", tuples, ints ...), so it applies to any recorded
action stream. Sources:

- Entropy, mutual information and conditional mutual information, and the identities
  used below (``I(X;Y) = H(X) + H(Y) - H(X,Y)``,
  ``I(X;Y|Z) = H(X,Z) + H(Y,Z) - H(X,Y,Z) - H(Z)``): Cover & Thomas, *Elements of
  Information Theory*, 2nd ed. (2006), ch. 2.
- Miller–Madow bias correction, ``H_MM = H_plugin + (K - 1) / (2N)`` nats with K the
  number of observed values and N the sample size: G. A. Miller, "Note on the bias of
  information estimates", in *Information Theory in Psychology* (1955), pp. 95-100;
  discussed in L. Paninski, "Estimation of entropy and mutual information", Neural
  Computation 15(6) (2003).
- Transfer entropy, ``T_{X->Y} = I(Y_t ; X_{t-k..t-1} | Y_{t-k..t-1})``: T. Schreiber,
  "Measuring information transfer", Phys. Rev. Lett. 85(2):461 (2000), with the
  source and target history lengths (his l and k) both equal to ``history``.
- Permutation p-values ``(1 + b) / (1 + m)`` for b of m random permutations at least
  as extreme as observed: B. Phipson & G. K. Smyth, "Permutation p-values should
  never be zero", Stat. Appl. Genet. Mol. Biol. 9(1), Article 39 (2010).

Plug-in estimates are biased (each entropy down by about (K - 1) / (2N) nats, so
mutual information and transfer entropy up), so compare values at equal sample sizes
or against a permutation null.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np


class Estimator(str, Enum):
    """How an entropy is estimated from a histogram."""

    PLUGIN = "plugin"  # the entropy of the empirical distribution
    MILLER_MADOW = "miller_madow"  # plug-in + (K - 1) / (2N) nats


# Permuted statistics within this many bits of the observed one count as ties: the
# same value computed from a different histogram can differ in the last bits.
_TIE_TOLERANCE = 1e-12


def _estimator(value: str | Estimator) -> Estimator:
    try:
        return Estimator(value)
    except ValueError:
        accepted = ", ".join(repr(e.value) for e in Estimator)
        raise ValueError(f"estimator={value!r}; expected one of {accepted}") from None


def entropy(samples: Iterable[Hashable], estimator: str | Estimator = "plugin") -> float:
    """Shannon entropy in bits of the empirical distribution of ``samples``."""
    how = _estimator(estimator)
    counts = np.fromiter(Counter(samples).values(), dtype=np.float64)
    if counts.size == 0:
        raise ValueError("samples is empty; expected at least one value")
    n = float(counts.sum())
    # H = sum_i (c_i / N) log2(N / c_i); fsum is exactly rounded, so the result does not
    # depend on the order the values were seen in (identical histograms tie exactly).
    bits = math.fsum(counts * np.log2(n / counts)) / n
    if how is Estimator.MILLER_MADOW:
        bits += (counts.size - 1) / (2 * n) / math.log(2)
    return bits


def _aligned(name_a: str, a: Sequence, name_b: str, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(
            f"len({name_a})={len(a)} but len({name_b})={len(b)}; expected aligned "
            "sequences of equal length"
        )


def _check_count(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r}; expected an integer >= {minimum}")


def mutual_information(
    x: Sequence[Hashable], y: Sequence[Hashable], estimator: str | Estimator = "plugin"
) -> float:
    """I(X;Y) in bits from the joint histogram of the aligned samples ``x`` and ``y``.

    With ``estimator="miller_madow"`` each of the three entropies is corrected, so the
    estimate can fall slightly below zero for independent variables.
    """
    _aligned("x", x, "y", y)
    return (
        entropy(x, estimator) + entropy(y, estimator) - entropy(zip(x, y, strict=True), estimator)
    )


def conditional_mutual_information(
    x: Sequence[Hashable],
    y: Sequence[Hashable],
    z: Sequence[Hashable],
    estimator: str | Estimator = "plugin",
) -> float:
    """I(X;Y|Z) in bits from the joint histogram of the aligned samples."""
    _aligned("x", x, "y", y)
    _aligned("x", x, "z", z)
    return (
        entropy(zip(x, z, strict=True), estimator)
        + entropy(zip(y, z, strict=True), estimator)
        - entropy(zip(x, y, z, strict=True), estimator)
        - entropy(z, estimator)
    )


def transfer_entropy(
    source: Sequence[Hashable],
    target: Sequence[Hashable],
    history: int = 1,
    estimator: str | Estimator = "plugin",
) -> float:
    """Transfer entropy from ``source`` to ``target`` in bits (Schreiber 2000).

    ``I(Y_t ; X_{t-k..t-1} | Y_{t-k..t-1})`` with k = ``history``: how much the
    source's last k values tell about the target's next value beyond what the target's
    own last k values tell. Element t of both sequences must belong to the same step
    t. The first k steps have no full history and are dropped, so the estimate uses
    ``len(target) - history`` samples.
    """
    _aligned("source", source, "target", target)
    _check_count("history", history, minimum=1)
    if len(target) <= history:
        raise ValueError(
            f"sequences of length {len(target)} are too short for history={history}; "
            f"expected at least {history + 1} steps"
        )
    source, target = list(source), list(target)
    steps = range(history, len(target))
    now = [target[t] for t in steps]
    source_past = [tuple(source[t - history : t]) for t in steps]
    target_past = [tuple(target[t - history : t]) for t in steps]
    return conditional_mutual_information(now, source_past, target_past, estimator)


def permutation_test(
    statistic: Callable[[Sequence, Sequence], float],
    x: Sequence[Hashable],
    y: Sequence[Hashable],
    n_permutations: int = 1000,
    seed: int | np.random.Generator = 0,
) -> tuple[float, float]:
    """``statistic(x, y)`` and its one-sided permutation p-value (Phipson & Smyth 2010).

    The null is drawn by shuffling the order of ``x`` (the first argument), which
    breaks any link between ``x`` and ``y`` and keeps both histograms. For
    ``transfer_entropy`` x is the source, shuffled in time (this also destroys the
    source's own autocorrelation); for the symmetric ``mutual_information``,
    shuffling either side gives the same null distribution.

    Returns:
        ``(observed, p)`` with ``p = (1 + #{permuted >= observed}) / (1 + n_permutations)``,
        so ``1 / (1 + n_permutations) <= p <= 1``. The same seed gives the same p.
    """
    _check_count("n_permutations", n_permutations, minimum=1)
    x = list(x)
    observed = float(statistic(x, y))
    rng = np.random.default_rng(seed)
    as_extreme = 0
    for _ in range(n_permutations):
        shuffled = [x[i] for i in rng.permutation(len(x))]
        as_extreme += statistic(shuffled, y) >= observed - _TIE_TOLERANCE
    return observed, (1 + as_extreme) / (1 + n_permutations)


@dataclass(frozen=True)
class InfluenceMatrix:
    """Transfer entropy (bits) between every ordered pair of agents.

    ``te[i][j]`` is the transfer entropy from ``agents[i]`` to ``agents[j]``: how much
    i's past actions predict j's next action beyond j's own past ("j follows i").
    The diagonal is NaN (not measured). ``p_values`` has the same layout, or is None
    when no permutation test was run.
    """

    agents: tuple[str, ...]
    te: tuple[tuple[float, ...], ...]
    p_values: tuple[tuple[float, ...], ...] | None
    history: int
    n_permutations: int

    def __post_init__(self) -> None:
        n = len(self.agents)
        for name, matrix in (("te", self.te), ("p_values", self.p_values)):
            if matrix is not None and (len(matrix) != n or any(len(r) != n for r in matrix)):
                raise ValueError(f"{name} is not {n}x{n} for agents {self.agents}")

    def between(self, source: str, target: str) -> float:
        """Transfer entropy from agent ``source`` to agent ``target``."""
        return self.te[self.agents.index(source)][self.agents.index(target)]


def influence_matrix(
    sequences: Mapping[str, Sequence[Hashable]],
    history: int = 1,
    n_permutations: int = 0,
    seed: int | np.random.Generator = 0,
) -> InfluenceMatrix:
    """Transfer entropy between every ordered pair of agents' action sequences.

    Args:
        sequences: agent name -> that agent's actions, aligned on a common clock
            (element t of every sequence is step t; use a placeholder such as None
            where an agent did not act).
        history: steps of past used for both source and target (Schreiber's k = l).
        n_permutations: when > 0, also a permutation p-value for every pair.
        seed: seeds the permutations; pairs are tested in row-major agent order.

    Returns:
        An :class:`InfluenceMatrix` with agents in sorted order, so the result does
        not depend on the mapping's order.
    """
    if not sequences:
        raise ValueError("sequences is empty; expected at least one agent")
    _check_count("history", history, minimum=1)
    _check_count("n_permutations", n_permutations, minimum=0)
    agents = tuple(sorted(sequences))
    first = agents[0]
    for agent in agents[1:]:
        _aligned(
            f"sequences[{agent!r}]", sequences[agent], f"sequences[{first!r}]", sequences[first]
        )

    def statistic(source: Sequence, target: Sequence) -> float:
        return transfer_entropy(source, target, history)

    rng = np.random.default_rng(seed)
    te = [[math.nan] * len(agents) for _ in agents]
    p = [[math.nan] * len(agents) for _ in agents] if n_permutations else None
    for i, source in enumerate(agents):
        for j, target in enumerate(agents):
            if i == j:
                continue
            if p is None:
                te[i][j] = statistic(sequences[source], sequences[target])
            else:
                te[i][j], p[i][j] = permutation_test(
                    statistic, sequences[source], sequences[target], n_permutations, rng
                )
    return InfluenceMatrix(
        agents=agents,
        te=tuple(map(tuple, te)),
        p_values=None if p is None else tuple(map(tuple, p)),
        history=history,
        n_permutations=n_permutations,
    )


def partner_mutual_information(
    pairs: Sequence[tuple[Hashable, Hashable]], estimator: str | Estimator = "plugin"
) -> float:
    """Mutual information (bits) between the two partners' actions in interactions.

    ``pairs`` holds one ``(action_a, action_b)`` per interaction. The joint histogram
    depends on which partner is ``a``: when seats are interchangeable, pass each
    interaction in a fixed seat order (or both orders) so that the value does not
    depend on an arbitrary seating.
    """
    for index, pair in enumerate(pairs):
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError(f"pairs[{index}]={pair!r}; expected a (action_a, action_b) tuple")
    if not pairs:
        raise ValueError("pairs is empty; expected at least one interaction")
    a, b = zip(*pairs, strict=True)
    return mutual_information(a, b, estimator)
