"""When a baseline population has converged: one definition for every method (issue #12).

A population has converged after a round when **every agent's most probable choice is
the same option**:

- a tabular learner's most probable choice is the unique argmax of its Q-values (IQL) or
  policy logits (REINFORCE) in its one state (stateless learners) or in the
  empty-history state (learners with a history state: the state a fresh episode starts
  in, the analogue of the LLM agents' empty-history prior probe);
- an agent of the minimal naming game (Baronchelli et al. 2006) speaks a word drawn
  uniformly from its inventory, so it has a most probable word only when its inventory
  holds exactly one: the population has converged when every inventory is that one word.

An agent whose maximum is tied has no most probable choice, so a population fresh from
a tied start (all Q-values 0, an empty inventory) has not converged.

Consensus is checked after every round (rounds count from 0). ``converged_round`` is the
first round from which consensus on one option holds after every round to the end of
the run: r means consensus held after rounds r, r+1, ..., last. A population that
reached consensus and lost it again counts from when it regained it, and a run that
ends without consensus has None. (The streak rule of Ashery et al. 2025, 3N successes
in a row, is not used: under epsilon-greedy exploration such a streak is rare even at
consensus.)
"""

from __future__ import annotations

import numpy as np

NO_CHOICE = -1  # an agent whose maximum is tied; a population without consensus


def most_probable(values: np.ndarray) -> np.ndarray:
    """Each row's argmax over the last axis (the options), or NO_CHOICE where it is tied.

    ``values`` (..., W) -> int array (...).
    """
    values = np.asarray(values)
    best = values.argmax(axis=-1)
    top = np.take_along_axis(values, best[..., None], axis=-1)
    tied = (values == top).sum(axis=-1) > 1
    return np.where(tied, NO_CHOICE, best)


def consensus(choices: np.ndarray) -> np.ndarray:
    """The option every agent chooses, or NO_CHOICE: ``choices`` (..., N) -> (...)."""
    choices = np.asarray(choices)
    first = choices[..., 0]
    same = (choices == first[..., None]).all(axis=-1) & (first != NO_CHOICE)
    return np.where(same, first, NO_CHOICE)


def agreement(choices: np.ndarray) -> np.ndarray:
    """Share of agents whose most probable choice is the most common one (NO_CHOICE
    agents never agree): ``choices`` (..., N) -> (...) in [0, 1]."""
    choices = np.asarray(choices)
    n = choices.shape[-1]
    options = int(choices.max(initial=NO_CHOICE)) + 1
    if options == 0:
        return np.zeros(choices.shape[:-1])
    flat = choices.reshape(-1, n)
    rows = np.repeat(np.arange(len(flat)), n)
    valid = flat.ravel() != NO_CHOICE
    counts = np.bincount(
        rows[valid] * options + flat.ravel()[valid], minlength=len(flat) * options
    ).reshape(len(flat), options)
    return (counts.max(axis=1) / n).reshape(choices.shape[:-1])


def converged_round(consensus_by_round: np.ndarray) -> int | None:
    """First round from which the final round's consensus holds to the end, or None.

    ``consensus_by_round`` holds :func:`consensus` after each round, in order.
    """
    series = np.asarray(consensus_by_round)
    if series.size == 0 or series[-1] == NO_CHOICE:
        return None
    differ = np.flatnonzero(series != series[-1])
    return int(differ[-1]) + 1 if differ.size else 0
