import networkx as nx
import numpy as np
import pytest

from sim.config import NetworkConfig
from sim.society.network import build_graph, debate_groups, same_cluster_edge_share

CLUSTERS = ["a"] * 10 + ["b"] * 10 + ["c"] * 10 + ["d"] * 10


@pytest.mark.parametrize("kind", ["small_world", "scale_free", "complete"])
def test_graphs_are_seeded_and_connected(kind):
    cfg = NetworkConfig(kind=kind)
    g1, g2, g3 = (build_graph(cfg, CLUSTERS, s) for s in (1, 1, 2))
    assert nx.is_connected(g1) and g1.number_of_nodes() == len(CLUSTERS)
    assert sorted(g1.edges) == sorted(g2.edges)
    if kind != "complete":
        assert sorted(g1.edges) != sorted(g3.edges)


def test_homophily_raises_same_cluster_edges():
    plain = np.mean([same_cluster_edge_share(build_graph(NetworkConfig(), CLUSTERS, s), CLUSTERS) for s in range(20)])
    homo = np.mean([same_cluster_edge_share(build_graph(NetworkConfig(homophily=0.9), CLUSTERS, s), CLUSTERS)
                    for s in range(20)])
    assert plain == pytest.approx(0.25, abs=0.08)  # random placement: 1/4 of edges within a cluster
    assert homo > plain + 0.1


def test_debate_groups_partition_everyone():
    g = build_graph(NetworkConfig(), CLUSTERS, 0)
    groups = debate_groups(g, 3, np.random.default_rng(0))
    members = sorted(m for grp in groups for m in grp)
    assert members == list(range(len(CLUSTERS)))
    assert all(2 <= len(grp) <= 4 for grp in groups)
    assert groups == debate_groups(g, 3, np.random.default_rng(0))


def test_bad_network_config():
    with pytest.raises(ValueError, match="network.kind"):
        NetworkConfig(kind="ring")


def _relabel_by_list(g, clusters, h, rng):
    """The placement as first written (a list scan and ``remove`` per slot, O(N^2)): the reference."""
    order = list(nx.bfs_tree(g, 0)) if nx.is_connected(g) else list(g.nodes)
    remaining = list(rng.permutation(len(clusters)))
    placement, prev = {}, None
    for node in order:
        pick = None
        if prev is not None and rng.random() < h:
            pick = next((a for a in remaining if clusters[a] == clusters[prev]), None)
        if pick is None:
            pick = remaining[0]
        remaining.remove(pick)
        placement[node] = prev = int(pick)
    return placement


@pytest.mark.parametrize("h", [0.0, 0.3, 0.9, 1.0])
def test_linear_placement_matches_the_list_scan(h):
    from sim.society.network import _homophilous_relabel

    for seed in range(5):
        rng = np.random.default_rng(seed)
        clusters = [str(c) for c in rng.choice(list("abcd"), size=120, p=[0.55, 0.25, 0.15, 0.05])]
        g = nx.connected_watts_strogatz_graph(len(clusters), 4, 0.1, seed=seed)
        want = nx.relabel_nodes(g, _relabel_by_list(g, clusters, h, np.random.default_rng(seed)))
        got = _homophilous_relabel(g, clusters, h, np.random.default_rng(seed))
        assert list(got.nodes) == list(want.nodes) and list(got.edges) == list(want.edges)
