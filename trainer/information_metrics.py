"""Who follows whom, and how much partners agree: information measures per generation
(phase "information"; issue 9, "Measuring what changed").

The estimators are :mod:`societies.measures.information` (plug-in, in bits); this module
says which samples a generation's decisions give them and turns the values into
:class:`MetricRecord` s.

**Influence (transfer entropy on sparse interactions).** Agents act irregularly: in the
naming game an agent plays only in the rounds it is paired, so there is no common clock on
which every agent has an action at every step (what
:func:`societies.measures.information.influence_matrix` needs). The standard remedy for
sparse event data is to sample at the target's events: for the ordered pair
(source -> target), every decision of the target gives one sample

    Y = the target's action in this decision (round r),
    X = the source's most recent action in a round before r,
    Z = the target's own most recent action in a round before r,

kept when both X and Z exist, and ``T(source -> target) = I(Y ; X | Z)`` (Schreiber 2000
with history 1 for both sides, conditional mutual information as in Cover & Thomas ch. 2).
"Before" means an earlier round: decisions within one round are simultaneous (one batched
call), so none of them can have seen another. The value is how much knowing what the
source did last tells about the target's next action beyond the target's own last action.
It is pairwise and conditions on nothing else: when the whole population drifts to one
convention, every agent's last action predicts every other agent's next one, so a high
mean with no standout pair is a common trend, not a leader.

**Partner agreement.** ``partner_mi_bits`` is the mutual information between the two
partners' actions over the generation's interactions, one sample per interaction (the
decision of its first seat in the transcript, ``(action, partner_action)``, as
:func:`societies.metrics.interactions` picks it), with a one-sided permutation p-value
``partner_mi_p`` (Phipson & Smyth 2010; the null shuffles which first-seat action goes
with which partner action).

Decisions of free-text turns that could not be parsed (``valid`` False) are left out.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np

from societies.measures.information import (
    conditional_mutual_information,
    mutual_information,
    permutation_test,
)
from societies.metrics import interactions
from societies.records import Decision
from trainer.tracking import MetricRecord

INFORMATION_PHASE = "information"


def pair_label(source: str, target: str) -> str:
    """How an ordered pair is written in a record's ``agent`` field: ``"agent_00->agent_03"``."""
    return f"{source}->{target}"


def influence_samples(
    decisions: Sequence[Decision], source: str, target: str
) -> tuple[list[str], list[str], list[str]]:
    """The ``(Y, X, Z)`` samples of ``T(source -> target)`` (module docstring).

    Returns:
        three aligned lists: the target's action, the source's most recent action in an
        earlier round, the target's own most recent action in an earlier round; one entry
        per target decision that has both pasts.
    """
    source_rounds, source_actions = _timeline(decisions, source)
    target_rounds, target_actions = _timeline(decisions, target)
    now, source_past, target_past = [], [], []
    for r, action in zip(target_rounds, target_actions, strict=True):
        i = bisect.bisect_left(source_rounds, r)  # source decisions in rounds < r
        j = bisect.bisect_left(target_rounds, r)
        if i and j:
            now.append(action)
            source_past.append(source_actions[i - 1])
            target_past.append(target_actions[j - 1])
    return now, source_past, target_past


def _timeline(decisions: Sequence[Decision], agent: str) -> tuple[list[int], list[str]]:
    """``agent``'s rounds and actions in transcript order (rounds ascending)."""
    own = sorted(
        ((d.round, i, d.action) for i, d in enumerate(decisions) if d.agent == agent),
    )
    return [r for r, _, _ in own], [a for _, _, a in own]


def influence(
    decisions: Sequence[Decision], agents: Sequence[str], *, min_samples: int = 2
) -> dict[tuple[str, str], tuple[float, int]]:
    """``T(source -> target)`` in bits and its sample count for every ordered pair of
    distinct ``agents`` with at least ``min_samples`` samples (others are left out)."""
    result = {}
    for source in agents:
        for target in agents:
            if source == target:
                continue
            y, x, z = influence_samples(decisions, source, target)
            if len(y) >= min_samples:
                result[(source, target)] = (conditional_mutual_information(y, x, z), len(y))
    return result


def information_records(
    generation: int,
    decisions: Sequence[Decision],
    agents: Sequence[str],
    *,
    seed: int | np.random.Generator,
    n_permutations: int = 1000,
    min_samples: int = 2,
) -> list[MetricRecord]:
    """Influence and partner-agreement records of one generation (phase "information").

    Args:
        generation: the generation the records belong to; every decision must be of it.
        decisions: the generation's transcript (any order; rounds say what came first).
        agents: whose influence to measure (LLM agents and scripted seats alike).
        seed: seeds the permutation test (e.g. a ``probe`` stream seed keyed by generation).
        n_permutations: permutations for ``partner_mi_p`` (its floor is 1 / (1 + n)).
        min_samples: an ordered pair with fewer samples is not measured.

    Returns:
        ``influence_te_bits`` per measured ordered pair (``agent`` = ``"source->target"``);
        ``influence_te_mean_bits`` over the measured pairs, ``influence_te_max_bits``
        (``agent`` names the pair), ``influence_pairs`` (how many were measured) and
        ``influence_samples_mean`` (samples per measured pair: with few, the plug-in
        values are mostly bias), when any was; ``partner_mi_bits``, ``partner_mi_p`` and ``partner_interactions`` when
        the generation had interactions with a partner.
    """
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        raise ValueError(f"min_samples={min_samples!r}; expected an integer >= 1")
    others = sorted({d.generation for d in decisions} - {generation})
    if others:
        raise ValueError(
            f"decisions of generations {others} given for generation {generation}; "
            "expected one generation's transcript"
        )
    if len(set(agents)) != len(agents):
        raise ValueError(f"agents={list(agents)} repeats an agent; expected distinct ids")
    valid = [d for d in decisions if d.valid]
    records: list[MetricRecord] = []

    def add(name: str, value: float, agent: str | None = None) -> None:
        records.append(MetricRecord(generation, name, float(value), INFORMATION_PHASE, agent))

    te = influence(valid, agents, min_samples=min_samples)
    for (source, target), (bits, _) in te.items():
        add("influence_te_bits", bits, pair_label(source, target))
    if te:
        values = [bits for bits, _ in te.values()]
        add("influence_te_mean_bits", math.fsum(values) / len(values))
        # Ties: the first pair in (source, target) order of ``agents``.
        best = max(te, key=lambda pair: te[pair][0])
        add("influence_te_max_bits", te[best][0], pair_label(*best))
        add("influence_pairs", len(te))
        add("influence_samples_mean", math.fsum(n for _, n in te.values()) / len(te))

    played = [d for d in interactions(valid) if d.partner_action is not None]
    if played:
        first = [d.action for d in played]
        second = [d.partner_action for d in played]
        bits, p = permutation_test(mutual_information, first, second, n_permutations, seed)
        add("partner_mi_bits", bits)
        add("partner_mi_p", p)
        add("partner_interactions", len(played))
    return records
