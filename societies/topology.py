"""Who meets whom: interaction graphs and the disjoint pairs they yield each round.

Social conventions depend on the network (Centola & Baronchelli, PNAS 2015: the same
naming game converges on a complete graph and fragments on a ring); the graphs here are
the standard families, built with networkx from a seed:

- ``complete``: everyone can meet everyone (Ashery et al. 2025's protocol);
- ``ring_lattice``: each agent linked to its ``k`` nearest neighbours (k even);
- ``random_regular``: a uniformly random ``k``-regular graph;
- ``watts_strogatz``: a ring lattice with each edge rewired with probability ``p``
  (Watts & Strogatz, Nature 1998), resampled until connected;
- ``barabasi_albert``: preferential attachment, ``m`` edges per new node (Barabási &
  Albert, Science 1999);
- ``erdos_renyi``: G(n, p), resampled until connected (Erdős & Rényi 1959);
- ``edge_list``: a file with one edge per line, two agent names or 0-based indices.

Each round's pairs are a seeded random matching on the graph's edges, so a round's
interactions are disjoint and run in one batch.

:class:`NetworkSpec` is a config's ``network:`` section; :meth:`NetworkSpec.graph` draws
the graph a run of a root seed plays, so the society and the baselines of that seed play
the same graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from societies import seeding
from societies.seeding import Stream

# Resampling limits: a disconnected draw or a too-small matching is retried this often.
MAX_GRAPH_DRAWS = 1000
MAX_MATCHING_DRAWS = 1000


class Topology(str, Enum):
    COMPLETE = "complete"
    RING_LATTICE = "ring_lattice"
    RANDOM_REGULAR = "random_regular"
    WATTS_STROGATZ = "watts_strogatz"
    BARABASI_ALBERT = "barabasi_albert"
    ERDOS_RENYI = "erdos_renyi"
    EDGE_LIST = "edge_list"


def sample_pairs(
    topology: Topology, agents: Sequence[str], num_pairs: int, rng: np.random.Generator
) -> list[tuple[str, str]]:
    """``num_pairs`` disjoint pairs for one round of the complete graph.

    On the complete graph every agent can meet every other (Ashery et al. 2025: a random
    pair each interaction): a random permutation, paired off in order.
    """
    topology = Topology(topology)
    if not 1 <= num_pairs <= len(agents) // 2:
        raise ValueError(
            f"num_pairs={num_pairs}; expected 1..{len(agents) // 2} for {len(agents)} agents"
        )
    if topology is Topology.COMPLETE:
        order = rng.permutation(len(agents))
        return [(agents[order[2 * i]], agents[order[2 * i + 1]]) for i in range(num_pairs)]
    raise ValueError(
        f"sample_pairs draws on the complete graph only (got {topology.value!r}); "
        "use InteractionGraph.matching for other topologies"
    )


@dataclass(frozen=True)
class InteractionGraph:
    """An undirected graph on the agents.

    Attributes:
        topology: the family it was drawn from.
        agents: the nodes, in population order.
        edges: sorted pairs ``(a, b)`` with ``a`` before ``b`` in ``agents``; empty for
            the complete graph (every pair is an edge; never listed).
    """

    topology: Topology
    agents: tuple[str, ...]
    edges: tuple[tuple[str, str], ...] = ()

    @property
    def complete(self) -> bool:
        return self.topology is Topology.COMPLETE

    def all_edges(self) -> list[tuple[str, str]]:
        if self.complete:
            n = len(self.agents)
            return [(self.agents[i], self.agents[j]) for i in range(n) for j in range(i + 1, n)]
        return list(self.edges)

    def neighbours(self, agent: str) -> list[str]:
        """``agent``'s neighbours, in population order."""
        if self.complete:
            return [a for a in self.agents if a != agent]
        linked = {b for a, b in self.edges if a == agent} | {a for a, b in self.edges if b == agent}
        return [a for a in self.agents if a in linked]

    def degrees(self) -> dict[str, int]:
        return {a: len(self.neighbours(a)) for a in self.agents}

    def max_matching(self) -> int:
        """The most disjoint pairs one round can hold on this graph."""
        if self.complete:
            return len(self.agents) // 2
        import networkx as nx

        return len(nx.max_weight_matching(self._nx(), maxcardinality=True))

    def check_pairs_per_round(self, pairs_per_round: int, name: str = "pairs_per_round") -> None:
        """Refuse ``pairs_per_round`` beyond this graph's largest matching, before play.

        :meth:`matching` would otherwise fail only when a round draws. The society
        (``trainer.games.build_game``), the PettingZoo env and the vectorised baselines
        all check here; ``name`` is the input as the caller's user spells it.
        """
        if self.complete:  # N/2: sample_pairs checks it on every draw
            return
        most = self.max_matching()
        if pairs_per_round > most:
            raise ValueError(
                f"{name}={pairs_per_round}: the {self.topology.value} graph's largest "
                f"matching has {most} pairs; expected 1..{most}"
            )

    def matching(self, num_pairs: int, rng: np.random.Generator) -> list[tuple[str, str]]:
        """``num_pairs`` disjoint edges, drawn at random.

        Complete graph: :func:`sample_pairs` (one permutation). Otherwise the edges are
        shuffled and taken greedily while both ends are free, each oriented at random
        (who is listed first); a shuffle whose greedy matching is too small is redrawn
        from the same generator. The first ``num_pairs`` matched edges, in draw order.
        """
        if self.complete:
            return sample_pairs(Topology.COMPLETE, self.agents, num_pairs, rng)
        edges = self.edges
        for _ in range(MAX_MATCHING_DRAWS):
            order = rng.permutation(len(edges))
            flips = rng.random(len(edges)) < 0.5
            taken: set[str] = set()
            pairs = []
            for i in order:
                a, b = edges[i]
                if a in taken or b in taken:
                    continue
                taken |= {a, b}
                pairs.append((b, a) if flips[i] else (a, b))
                if len(pairs) == num_pairs:
                    return pairs
        raise ValueError(
            f"no matching of {num_pairs} disjoint pairs found on the {self.topology.value} graph "
            f"in {MAX_MATCHING_DRAWS} draws (its largest matching has {self.max_matching()}); "
            "lower game.pairs_per_round"
        )

    def to_node_link(self) -> dict:
        """networkx's node-link form (``graph.json``), with the topology named."""
        import networkx as nx

        data = nx.node_link_data(self._nx(), edges="links")
        data["graph"] = {"topology": self.topology.value}
        return data

    def _nx(self):
        import networkx as nx

        graph = nx.Graph()
        graph.add_nodes_from(self.agents)
        graph.add_edges_from(self.all_edges())
        return graph


@dataclass(frozen=True)
class NetworkSpec:
    """Who meets whom: the ``network:`` section of an experiment config
    (``trainer.config.NetworkConfig``) and the baselines' ``network`` arg."""

    topology: Topology = Topology.COMPLETE
    """complete, ring_lattice, random_regular, watts_strogatz, barabasi_albert,
    erdos_renyi or edge_list."""
    k: int = 4
    """ring_lattice, watts_strogatz (even), random_regular: neighbours per agent."""
    p: float = 0.1
    """watts_strogatz: rewiring probability; erdos_renyi: edge probability."""
    m: int = 2
    """barabasi_albert: edges per new node."""
    edge_list: str | None = None
    """edge_list: a file with two agents (names or 0-based indices) per line."""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "topology", Topology(self.topology))
        except ValueError:
            raise ValueError(
                f"network.topology={self.topology!r}; accepted: {[t.value for t in Topology]}"
            ) from None

    @property
    def complete(self) -> bool:
        return self.topology is Topology.COMPLETE

    def graph(self, agents: Sequence[str], root_seed: int) -> InteractionGraph:
        """The graph a run of root seed ``root_seed`` plays on ``agents``: drawn from the
        seed's graph stream, so every method run with that seed meets on the same graph."""
        return build_graph(
            self.topology,
            agents,
            seeding.stream_seed(root_seed, Stream.GRAPH),
            k=self.k,
            p=self.p,
            m=self.m,
            edge_list=self.edge_list,
        )


def build_graph(
    topology: Topology | str,
    agents: Sequence[str],
    seed: int,
    *,
    k: int = 4,
    p: float = 0.1,
    m: int = 2,
    edge_list: str | Path | None = None,
) -> InteractionGraph:
    """The interaction graph of ``topology`` on ``agents``, drawn from ``seed``.

    Raises:
        ValueError: parameters the family cannot take (named, with what is accepted), an
            edge list naming unknown agents, or no connected draw in ``MAX_GRAPH_DRAWS``.
    """
    import networkx as nx

    try:
        topology = Topology(topology)
    except ValueError:
        raise ValueError(
            f"network.topology={topology!r}; accepted: {[t.value for t in Topology]}"
        ) from None
    agents = tuple(agents)
    n = len(agents)
    if topology is Topology.COMPLETE:
        return InteractionGraph(topology, agents)
    if topology is Topology.EDGE_LIST:
        return _from_edge_list(agents, edge_list)
    if topology in (Topology.RING_LATTICE, Topology.RANDOM_REGULAR, Topology.WATTS_STROGATZ):
        if not 2 <= k < n or (topology is not Topology.RANDOM_REGULAR and k % 2):
            even = "" if topology is Topology.RANDOM_REGULAR else "an even "
            raise ValueError(
                f"network.k={k} for {topology.value} on {n} agents; expected {even}integer "
                f"in 2..{n - 1}"
            )
        if topology is Topology.RANDOM_REGULAR and (n * k) % 2:
            raise ValueError(
                f"network.k={k}: a {k}-regular graph on {n} agents does not exist (n·k odd)"
            )
    if topology in (Topology.WATTS_STROGATZ, Topology.ERDOS_RENYI) and not 0 <= p <= 1:
        raise ValueError(f"network.p={p}; expected a probability in [0, 1]")
    if topology is Topology.BARABASI_ALBERT and not 1 <= m < n:
        raise ValueError(f"network.m={m}; expected 1..{n - 1} edges per new node")
    rng = np.random.default_rng(seed)
    for _ in range(MAX_GRAPH_DRAWS):
        draw = int(rng.integers(2**31))
        if topology is Topology.RING_LATTICE:
            graph = nx.watts_strogatz_graph(n, k, 0.0, seed=draw)
        elif topology is Topology.RANDOM_REGULAR:
            graph = nx.random_regular_graph(k, n, seed=draw)
        elif topology is Topology.WATTS_STROGATZ:
            graph = nx.watts_strogatz_graph(n, k, p, seed=draw)
        elif topology is Topology.BARABASI_ALBERT:
            graph = nx.barabasi_albert_graph(n, m, seed=draw)
        else:
            graph = nx.erdos_renyi_graph(n, p, seed=draw)
        if nx.is_connected(graph):
            edges = sorted((min(a, b), max(a, b)) for a, b in graph.edges())
            return InteractionGraph(
                topology, agents, tuple((agents[a], agents[b]) for a, b in edges)
            )
    raise ValueError(
        f"no connected {topology.value} graph on {n} agents in {MAX_GRAPH_DRAWS} draws "
        f"(k={k}, p={p}, m={m}); raise network.p or network.k"
    )


def _from_edge_list(agents: tuple[str, ...], path: str | Path | None) -> InteractionGraph:
    if not path:
        raise ValueError("network.topology=edge_list needs network.edge_list: a file path")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"network.edge_list={str(path)!r} is not a file")
    index = {a: i for i, a in enumerate(agents)}
    edges = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ValueError(f"{path}:{number}: {line!r}; expected two agents per line")
        ends = []
        for field in fields:
            if field.isdigit() and int(field) < len(agents):
                ends.append(int(field))
            elif field in index:
                ends.append(index[field])
            else:
                raise ValueError(
                    f"{path}:{number}: {field!r} is not an agent; expected a name "
                    f"({agents[0]}..{agents[-1]}) or an index 0..{len(agents) - 1}"
                )
        a, b = sorted(ends)
        if a == b:
            raise ValueError(f"{path}:{number}: a self-loop on {agents[a]}")
        edges.add((a, b))
    if not edges:
        raise ValueError(f"{path}: no edges")
    return InteractionGraph(
        Topology.EDGE_LIST, agents, tuple((agents[a], agents[b]) for a, b in sorted(edges))
    )
