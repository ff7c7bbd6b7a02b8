"""The social graph: networkx generators, always seeded."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import networkx as nx
import numpy as np

from sim.config import NetworkConfig


def build_graph(cfg: NetworkConfig, clusters: Sequence[str], seed: int) -> nx.Graph:
    """A connected graph on ``len(clusters)`` nodes; node ``i`` is agent ``i``.

    Agents are placed on the generator's nodes by :func:`_homophilous_relabel` (a relabelling, so
    the degree sequence is kept).
    """
    n = len(clusters)
    rng = np.random.default_rng(seed)
    if cfg.kind == "complete" or n <= 3:
        g = nx.complete_graph(n)
    elif cfg.kind == "small_world":
        g = nx.connected_watts_strogatz_graph(n, min(cfg.k, n - 1 - (n - 1) % 2) or 2, cfg.p, tries=100,
                                              seed=int(rng.integers(2**31)))
    else:
        g = nx.barabasi_albert_graph(n, min(cfg.m, n - 1), seed=int(rng.integers(2**31)))
    # Agents are listed cluster by cluster, so placing agent i on node i would put same-cluster agents
    # next to each other on the ring: always place them by a seeded draw (random when homophily = 0).
    return _homophilous_relabel(g, clusters, cfg.homophily, rng)


def _homophilous_relabel(g: nx.Graph, clusters: Sequence[str], h: float, rng: np.random.Generator) -> nx.Graph:
    """Place agents on nodes so neighbours share clusters more often.

    Nodes are visited in breadth-first order from node 0 (so consecutive nodes are close in the
    graph); each slot takes, with probability ``h``, an agent of the same cluster as the previous
    slot's agent when one is left, otherwise any agent left (the first of a seeded permutation).
    ``h = 0`` keeps the original placement. O(N): a pointer into the permutation and one queue of
    positions per cluster, each skipping agents already placed (a list scan and ``remove`` per slot
    made a 100,000-agent graph quadratic).
    """
    order = list(nx.bfs_tree(g, 0)) if nx.is_connected(g) else list(g.nodes)
    perm = rng.permutation(len(clusters)).tolist()
    placed = [False] * len(perm)  # by position in perm
    queues: dict[str, deque[int]] = {c: deque() for c in dict.fromkeys(clusters)}
    for pos, a in enumerate(perm):
        queues[clusters[a]].append(pos)
    first = 0  # every position before it is placed
    placement: dict[int, int] = {}
    prev: int | None = None
    for node in order:
        pos = None
        if prev is not None and rng.random() < h:
            q = queues[clusters[prev]]
            while q and placed[q[0]]:
                q.popleft()
            pos = q[0] if q else None
        if pos is None:
            while placed[first]:
                first += 1
            pos = first
        placed[pos] = True
        placement[node] = prev = perm[pos]
    return nx.relabel_nodes(g, placement)


def same_cluster_edge_share(g: nx.Graph, clusters: Sequence[str]) -> float:
    """Share of edges joining agents of the same cluster (the graph's homophily, measured)."""
    edges = list(g.edges)
    return sum(clusters[u] == clusters[v] for u, v in edges) / max(1, len(edges))


def debate_groups(g: nx.Graph, size: int, rng: np.random.Generator) -> list[list[int]]:
    """Partition agents into debating groups of about ``size`` drawn from graph neighbourhoods.

    Agents are visited in a seeded random order; an unassigned agent opens a group and fills it
    with its unassigned neighbours. An agent left alone joins the smallest neighbouring group
    (or the smallest group overall if isolated).
    """
    assigned: dict[int, int] = {}
    groups: list[list[int]] = []
    for a in rng.permutation(g.number_of_nodes()).tolist():
        if a in assigned:
            continue
        members = [a]
        for nb in sorted(g.neighbors(a), key=lambda x: (rng.random(), x)):
            if len(members) >= size:
                break
            if nb not in assigned:
                members.append(nb)
        if len(members) == 1 and groups:
            near = {assigned[nb] for nb in g.neighbors(a) if nb in assigned}
            target = min(near or range(len(groups)), key=lambda i: (len(groups[i]), i))
            groups[target].append(a)
            assigned[a] = target
            continue
        for m in members:
            assigned[m] = len(groups)
        groups.append(members)
    return groups
