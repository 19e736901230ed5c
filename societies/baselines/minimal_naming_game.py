"""The minimal naming game, an agent-based baseline without learning.

A. Baronchelli, M. Felici, V. Loreto, E. Caglioti and L. Steels, "Sharp transition
towards shared vocabularies in multi-agent systems", J. Stat. Mech. (2006) P06014.
Each agent holds an inventory of words, empty at the start. At each interaction a
random speaker and a random hearer meet; the speaker says a word drawn uniformly from
its inventory, inventing a new one if the inventory is empty. If the hearer knows the
word, both drop every other word (success); otherwise the hearer adds it (failure).
On the complete graph the total number of words peaks at ~N^1.5 after ~N^1.5
interactions and the population then converges on one word (the sharp transition).

On other networks the speaker is a uniformly random agent and the hearer a uniformly
random neighbour (the "direct" strategy of Dall'Asta, Baronchelli, Barrat and Loreto,
PRE 74, 036105, 2006). ``args.network`` (an experiment config's ``network:``) gives each
seed the graph a society of that root seed plays; a networkx graph, an edge list or an
:class:`~societies.topology.InteractionGraph` passed as ``graph`` is played by every seed.
On a ring (a one-dimensional lattice) consensus takes ~N^3 interactions instead of the
complete graph's ~N^1.5: local clusters form fast and then coarsen as their interfaces
diffuse (Baronchelli, Dall'Asta, Barrat and Loreto, "Topology-induced coarsening in
language games", PRE 73, 015102, 2006).

Committed agents (J. Xie, S. Sreenivasan, G. Korniss, W. Zhang, C. Lim and B. K.
Szymanski, "Social consensus through the influence of committed minorities", PRE 84,
011130, 2011): a fraction ``committed_fraction`` holds word A for ever (never adds or
drops a word), every other agent starts holding word B, and nobody invents. Above a
critical fraction of ~0.098 (complete graph, N -> infinity) the whole population
flips to A in a time growing like ln N; below it a mixed state survives for a time
exponential in N.

Time: a round is ``interactions_per_round`` interactions (default N/2, so each agent
takes part once per round on average, as in a round of the tabular learners).
Interactions are sequential, as in the papers; inventories are a boolean matrix
(agents x words) so that no step loops over words. Consensus (convergence.py: every
inventory is the same single word) is absorbing, so a run stops once it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from societies import seeding
from societies.baselines import convergence
from societies.baselines.mng_log import MngLog
from societies.baselines.records import Game, Method, RoundSeries, SeedResult, final_success
from societies.population_spec import agent_names
from societies.seeding import Stream
from societies.topology import InteractionGraph, NetworkSpec

COMMITTED_WORD, MAJORITY_WORD = 0, 1  # word ids with committed agents: A and B


@dataclass(frozen=True)
class MngArgs:
    num_agents: int = 1000
    max_rounds: int = 10_000
    """Rounds at most; a run stops once it has converged."""
    interactions_per_round: int | None = None
    """Interactions per round; None: N/2."""
    committed_fraction: float = 0.0
    """Share of agents committed to word A (Xie et al. 2011); 0: the plain game."""
    window: int = 10
    """``final_success`` averages the last ``window`` rounds."""
    network: NetworkSpec = field(default_factory=NetworkSpec)
    """The graph hearers are drawn on, seed s playing the graph a society of root seed s
    plays (an experiment config's ``network:``); default complete."""

    def __post_init__(self) -> None:
        _check(
            isinstance(self.num_agents, int) and self.num_agents >= 2,
            "num_agents",
            self.num_agents,
            "an int >= 2",
        )
        _check(
            isinstance(self.max_rounds, int) and self.max_rounds >= 1,
            "max_rounds",
            self.max_rounds,
            "an int >= 1",
        )
        _check(
            self.interactions_per_round is None or self.interactions_per_round >= 1,
            "interactions_per_round",
            self.interactions_per_round,
            "null (N/2) or an int >= 1",
        )
        _check(
            0.0 <= self.committed_fraction < 1.0,
            "committed_fraction",
            self.committed_fraction,
            "a share in [0, 1)",
        )
        _check(
            self.committed_fraction == 0.0 or self.num_committed >= 1,
            "committed_fraction",
            self.committed_fraction,
            f"0 or at least one agent of {self.num_agents} (>= {0.5 / self.num_agents:.2g})",
        )
        _check(self.window >= 1, "window", self.window, "an int >= 1")
        _check(
            isinstance(self.network, NetworkSpec),
            "network",
            type(self.network).__name__,
            "a NetworkSpec (an experiment config's network: section)",
        )

    @property
    def num_committed(self) -> int:
        return int(round(self.committed_fraction * self.num_agents))

    @property
    def per_round(self) -> int:
        return self.interactions_per_round or max(1, self.num_agents // 2)


def _check(ok: bool, name: str, value: object, accepted: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r}; expected {accepted}")


def run(
    args: MngArgs, seeds: Sequence[int], graph: Any = None, log: MngLog | None = None
) -> list[SeedResult]:
    """One :class:`SeedResult` per root seed.

    ``graph``: None (each seed plays its graph of ``args.network``), or one graph for
    every seed: a networkx graph with ``num_agents`` nodes, an edge list of ``(i, j)``
    agent indices in ``0..num_agents-1``, or an :class:`InteractionGraph`; only with
    ``args.network`` complete. With ``log``, the interactions (up to its cap) are
    recorded there (:mod:`~societies.baselines.mng_log`).
    """
    if graph is not None and not args.network.complete:
        raise ValueError(
            f"graph and network.topology={args.network.topology.value!r} both given; "
            "expected one of them (graph: one graph for every seed)"
        )
    n = args.num_agents
    if graph is not None:
        shared = _neighbours(graph, n)
        return [_run_seed(args, int(seed), shared, log) for seed in seeds]
    agents = agent_names(n)  # the society's names, for edge lists
    return [
        _run_seed(args, int(seed), _neighbours(args.network.graph(agents, int(seed)), n), log)
        for seed in seeds
    ]


def _neighbours(graph: Any, num_agents: int) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`adjacency`, or None for the complete graph (hearers drawn without a list)."""
    if isinstance(graph, InteractionGraph) and graph.complete:
        _check_nodes(len(graph.agents), num_agents)
        return None
    return adjacency(graph, num_agents)


def _check_nodes(count: int, num_agents: int) -> None:
    _check(
        count == num_agents,
        "graph",
        f"a graph of {count} nodes",
        f"one node per agent (num_agents={num_agents})",
    )


def adjacency(graph: Any, num_agents: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr, indices)``: agent i's neighbours are ``indices[indptr[i]:indptr[i+1]]``.

    A networkx graph's nodes are numbered in ``graph.nodes`` order, an
    :class:`InteractionGraph`'s in ``graph.agents`` order.
    """
    if isinstance(graph, InteractionGraph):
        _check_nodes(len(graph.agents), num_agents)
        number = {agent: i for i, agent in enumerate(graph.agents)}
        edges = [(number[a], number[b]) for a, b in graph.all_edges()]
    elif hasattr(graph, "nodes") and hasattr(graph, "edges"):
        nodes = list(graph.nodes)
        _check_nodes(len(nodes), num_agents)
        number = {node: i for i, node in enumerate(nodes)}
        edges = [(number[a], number[b]) for a, b in graph.edges]
    else:
        edges = [tuple(e) for e in graph]
        bad = [e for e in edges if len(e) != 2 or not all(0 <= int(v) < num_agents for v in e)]
        _check(not bad, "graph edge", bad[:1], f"pairs of agent indices 0..{num_agents - 1}")
    pairs = np.array([e for e in edges if e[0] != e[1]], dtype=np.int64).reshape(-1, 2)
    source = np.concatenate([pairs[:, 0], pairs[:, 1]])
    target = np.concatenate([pairs[:, 1], pairs[:, 0]])
    order = np.lexsort((target, source))
    source, target = source[order], target[order]
    keep = np.ones(len(source), dtype=bool)
    keep[1:] = (source[1:] != source[:-1]) | (target[1:] != target[:-1])  # drop repeated edges
    source, target = source[keep], target[keep]
    degree = np.bincount(source, minlength=num_agents)
    lonely = np.flatnonzero(degree == 0)
    _check(
        not lonely.size,
        "graph",
        f"agent {lonely[:1].tolist()} without neighbours",
        "a neighbour for every agent",
    )
    return np.concatenate([[0], np.cumsum(degree)]), target


def _hearers(
    speakers: np.ndarray,
    u: np.ndarray,
    n: int,
    neighbours: tuple[np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    if neighbours is None:  # complete graph: the j-th other agent, as in a sorted edge list
        j = (u * (n - 1)).astype(np.int64)
        return j + (j >= speakers)
    indptr, indices = neighbours
    degree = indptr[speakers + 1] - indptr[speakers]
    return indices[indptr[speakers] + (u * degree).astype(np.int64)]


def _run_seed(
    args: MngArgs, seed: int, neighbours: tuple[np.ndarray, np.ndarray] | None, log: MngLog | None
) -> SeedResult:
    n, per_round, k = args.num_agents, args.per_round, args.num_committed
    pair_rng = seeding.rng(seed, Stream.PAIRING, Method.MNG.value)
    word_rng = seeding.rng(seed, Stream.SAMPLING, Method.MNG.value)
    # at most N words: an agent invents only while its inventory is empty, and a
    # non-empty inventory never empties
    inventory = np.zeros((n, 2 if k else n), dtype=bool)
    committed = np.zeros(n, dtype=bool)
    if k:
        committed[seeding.rng(seed, Stream.INTERVENTION, "committed").permutation(n)[:k]] = True
        inventory[committed, COMMITTED_WORD] = True
        inventory[~committed, MAJORITY_WORD] = True
    count = inventory.sum(axis=1).tolist()  # words per agent
    fixed = committed.tolist()
    invented = 2 if k else 0
    total = int(sum(count))
    peak, peak_round = total, 0
    held, agree, success, totals, distinct = [], [], [], [], []
    rec = None if log is None else log.start(seed, n, per_round, args.window)

    for r in range(args.max_rounds):
        speakers = pair_rng.integers(0, n, per_round)
        hearers = _hearers(speakers, pair_rng.random(per_round), n, neighbours)
        picks = word_rng.random(per_round).tolist()
        wins = 0
        said = None if rec is None else []
        recorded = rec is not None and rec.records(r)
        for s, h, x in zip(speakers.tolist(), hearers.tolist(), picks, strict=True):
            c = count[s]
            if c == 0:
                w = invented
                invented += 1
                inventory[s, w] = True
                count[s] = 1
                total += 1
            elif c == 1:
                w = int(inventory[s].argmax())
            else:
                words = inventory[s].nonzero()[0]
                w = int(words[int(x * c)])
            hit = inventory[h, w]
            if said is not None:
                said.append(w)
                if recorded:
                    rec.speak(r, s, h, words.tolist() if c > 1 else (w,), w, hit)
            if hit:
                wins += 1
                for a in (s, h):
                    if count[a] > 1 and not fixed[a]:
                        inventory[a] = False
                        inventory[a, w] = True
                        total -= count[a] - 1
                        count[a] = 1
            elif not fixed[h]:
                inventory[h, w] = True
                count[h] += 1
                total += 1
            if total > peak:
                peak, peak_round = total, r

        used = inventory[:, : max(invented, 1)]
        single = np.asarray(count) == 1
        choices = np.where(single, used.argmax(axis=1), convergence.NO_CHOICE)
        held.append(int(convergence.consensus(choices)) if total == n else convergence.NO_CHOICE)
        agree.append(float(convergence.agreement(choices)))
        success.append(wins / per_round)
        totals.append(total)
        distinct.append(int(used.any(axis=0).sum()))
        if rec is not None:
            rec.end_round(said)
        if held[-1] != convergence.NO_CHOICE:
            break  # consensus is absorbing

    if rec is not None:
        rec.finish(held, lambda word: _label(word, bool(k)))
    at = convergence.converged_round(np.array(held))
    winner = None if at is None else _label(held[-1], bool(k))
    flipped = None if not k else (at is not None and held[-1] == COMMITTED_WORD)
    return SeedResult(
        method=Method.MNG,
        game=Game.MINIMAL_NAMING_GAME,
        seed=seed,
        rounds=len(held),
        converged_round=at,
        winner=winner,
        final_success=final_success(np.array(success), args.window),
        peak_words=peak,
        peak_round=peak_round,
        committed_fraction=args.committed_fraction if k else None,
        flipped=flipped,
        flip_round=at if flipped else None,
        series=RoundSeries(
            agreement=tuple(agree),
            success=tuple(success),
            total_words=tuple(totals),
            distinct_words=tuple(distinct),
        ),
    )


def _label(word: int, with_committed: bool) -> str:
    """Word ids as text: ``A`` / ``B`` with committed agents, else ``w<order invented>``."""
    if with_committed:
        return "A" if word == COMMITTED_WORD else "B"
    return f"w{word}"
