"""What a researcher looks at first in a society: who is tied to whom, who debated whom, who changed
their mind, and what each cluster chooses (with intervals). Plots read the run's own rows and, for the
ties, the model's graph (``Society.graph``: it is not written to disk, so the runner passes it in)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import combinations, islice
from pathlib import Path
from typing import Any

import networkx as nx
import polars as pl

from agents.worldview import cluster_label
from alignment.metrics import proportion_interval
from sim.report.plots import PHASES, error_bars, save_png

PHASE_STYLE = {"initial": ("o", "#4c72b0"), "post_debate": ("s", "#dd8452"), "revised": ("^", "#55a868")}
MAX_PANELS = 6
# spring_layout is quadratic in agents (2 s at 500, 13 s at 2,000 on 2 cores; hours at 100,000), and a
# page cannot show more nodes than this anyway: larger graphs are drawn as one agent's neighbourhood
MAX_DRAWN = 500


def debate_pairs(transcripts: pl.DataFrame) -> Counter[tuple[int, int]]:
    """How often each pair of agents sat in the same debate group (one count per group per dilemma)."""
    debate = transcripts.filter(pl.col("phase") == "debate")
    groups = debate.group_by("generation", "step", "dilemma_id", "group_id").agg(pl.col("agent_id").unique().sort())
    return Counter(pair for members in groups["agent_id"].to_list() for pair in combinations(members, 2))


def stance_change(stances: pl.DataFrame) -> dict[int, float]:
    """Per agent: the share of its dilemmas where its last choice (after critique, else after debate)
    differs from its first answer. Agents with no later choice are left out."""
    wide = (stances.select("generation", "dilemma_id", "agent_id", "phase", "choice")
            .pivot("phase", index=["generation", "dilemma_id", "agent_id"], values="choice", aggregate_function="first"))
    later = [p for p in ("revised", "post_debate") if p in wide.columns]
    if "initial" not in wide.columns or not later:
        return {}
    changed = (wide.with_columns(pl.coalesce(later).alias("last"))
               .filter(pl.col("last").is_not_null())
               .group_by("agent_id").agg((pl.col("last") != pl.col("initial")).mean().alias("changed")))
    return dict(changed.iter_rows())


def neighbourhood(graph: nx.Graph, k: int) -> list[int]:
    """``k`` agents in breadth-first order from the lowest-numbered one (then the rest in order, when its
    component is smaller): a connected patch of the graph, the same on every render."""
    start = min(graph.nodes)
    order = list(islice(nx.bfs_tree(graph, start), k))
    seen = set(order)
    return order + list(islice((v for v in sorted(graph.nodes) if v not in seen), k - len(order)))


def _clusters(stances: pl.DataFrame) -> dict[int, str]:
    return dict(stances.group_by("agent_id").agg(pl.col("cluster").first()).iter_rows())


def plot_social_graph(graph: nx.Graph, stances: pl.DataFrame, transcripts: pl.DataFrame, path: Path,
                      marked: Sequence[int] = ()) -> str:
    """Two views of one layout: the social graph with agents coloured by cluster; who debated whom (edge
    width: debates together) with agents coloured by how often they changed their choice. ``marked``
    agents (a policy group) get a black rim. Returns the file name."""
    from sim.report.plots import plt

    total = graph.number_of_nodes()
    if total > MAX_DRAWN:
        graph = graph.subgraph(neighbourhood(graph, MAX_DRAWN))
    who = _clusters(stances)
    names = sorted(set(who.values()))
    colours = plt.get_cmap("tab10")
    colour = {c: colours(i % 10) for i, c in enumerate(names)}  # the stance-share plot's colours
    nodes = sorted(graph.nodes)
    n = len(nodes)
    pos = nx.spring_layout(graph, seed=0, k=1.6 / max(1, n) ** 0.5)
    size = max(12, 320 - 0.6 * n)
    marked = set(marked)
    rim = ["black" if v in marked else "white" for v in nodes]
    rim_width = 1.5 if n <= 100 else 0.4  # a white rim would hide a small node's colour
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12.5, 5.6), dpi=100)
    nx.draw_networkx_edges(graph, pos, ax=ax1, edge_color="#999999", width=1.0, alpha=0.6)
    nx.draw_networkx_nodes(graph, pos, nodelist=nodes, ax=ax1, node_size=size, edgecolors=rim, linewidths=rim_width,
                           node_color=[colour.get(who.get(v), "#cccccc") for v in nodes])
    for c in names:
        ax1.scatter([], [], color=colour[c], label=cluster_label(c), s=40)
    if marked:
        ax1.scatter([], [], facecolor="white", edgecolor="black", label="policy group", s=40)
    ax1.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.02), ncol=3, frameon=False)
    same = sum(who.get(u) == who.get(v) for u, v in graph.edges) / max(1, graph.number_of_edges())
    shown = f"{n} agents" if n == total else f"the {n} agents nearest agent {min(graph.nodes)} of {total:,}"
    ax1.set_title(f"Social graph: {shown}, {graph.number_of_edges()} ties ({same:.0%} within a cluster)", fontsize=10)
    pairs = Counter({p: c for p, c in debate_pairs(transcripts).items() if p[0] in graph and p[1] in graph})
    top = max(pairs.values(), default=1)
    nx.draw_networkx_edges(graph, pos, ax=ax2, edge_color="#dddddd", width=0.8)
    if pairs:  # thinner and fainter as they multiply, so a 512-agent society is not one black blot
        dense = min(1.0, 150 / len(pairs))
        nx.draw_networkx_edges(nx.Graph(list(pairs)), pos, ax=ax2, edgelist=list(pairs), edge_color="#333333",
                               width=[(0.6 + 2.4 * c / top) * max(0.3, dense) for c in pairs.values()],
                               alpha=max(0.12, 0.7 * dense))
    change = stance_change(stances)
    cmap = plt.get_cmap("plasma")
    nx.draw_networkx_nodes(graph, pos, nodelist=nodes, ax=ax2, node_size=size, edgecolors=rim, linewidths=rim_width,
                           node_color=[cmap(change[v]) if v in change else "#cccccc" for v in nodes])
    if n <= 40:  # agent ids, haloed in white: readable on every node colour without hiding it
        from matplotlib import patheffects

        for ax in (ax1, ax2):
            texts = nx.draw_networkx_labels(graph, pos, ax=ax, font_size=7 if n > 16 else 8)
            for t in texts.values():
                t.set_path_effects([patheffects.withStroke(linewidth=2.2, foreground="white")])
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=ax2, shrink=0.75, label="share of its dilemmas on which\nthe agent changed its choice")
    ax2.set_title(("Who debated whom (dark: same debate group, wider: more often)" if pairs
                   else "No debates in this run (sim.debate_rounds=0)")
                  + ("" if change else "\nand no choice after the first to compare"), fontsize=10)
    for ax in (ax1, ax2):
        ax.set_axis_off()
    save_png(fig, path, tight=True)
    return path.name


def cluster_choices(stances: pl.DataFrame, by: Sequence[str] = ()) -> pl.DataFrame:
    """Share choosing A per cluster and phase (and ``by``), with its 95% Wilson interval. Abstentions are
    left out; each agent's choice on each dilemma counts once (choices of one agent are not independent,
    so the interval is narrower than the truth when agents are consistent across dilemmas)."""
    g = (stances.filter(pl.col("choice") != "abstain")
         .group_by(*by, "cluster", "phase", maintain_order=True)
         .agg(pl.len().alias("n"), (pl.col("choice") == "a").sum().alias("k"), pl.col("p_a").mean().alias("mean_p_a")))
    bounds = [proportion_interval(k, n) for k, n in zip(g["k"].to_list(), g["n"].to_list(), strict=True)]
    return g.with_columns(pl.Series("share_a", [b[0] for b in bounds]), pl.Series("low", [b[1] for b in bounds]),
                          pl.Series("high", [b[2] for b in bounds])).sort(*by, "cluster")


def cluster_choice_rows(stances: pl.DataFrame) -> list[dict[str, Any]]:
    """One row per cluster: agents, and the share choosing A with its interval per phase (all dilemmas)."""
    t = cluster_choices(stances)
    agents = dict(stances.group_by("cluster").agg(pl.col("agent_id").n_unique()).iter_rows())
    rows = []
    for c in sorted(agents):
        row: dict[str, Any] = {"cluster": cluster_label(c), "agents": agents[c],
                               "choices per phase": int(t.filter(pl.col("cluster") == c)["n"].max())}
        for phase, name in PHASES:
            r = t.filter((pl.col("cluster") == c) & (pl.col("phase") == phase))
            if len(r):
                row[name] = {"value": r["share_a"][0], "low": r["low"][0],
                                                            "high": r["high"][0]}
        first = t.filter((pl.col("cluster") == c) & (pl.col("phase") == "initial"))
        row["mean P(A), first answer"] = first["mean_p_a"][0] if len(first) else None
        rows.append(row)
    return rows


def plot_cluster_choices(stances: pl.DataFrame, path: Path, facet: str = "dilemma_id") -> tuple[str, str]:
    """Small multiples, one panel per ``facet`` value (the first six): per cluster, the share choosing A
    in each phase with its 95% Wilson interval. Returns the file name and a caption."""
    from sim.report.plots import plt

    t = cluster_choices(stances, by=[facet])
    values = list(dict.fromkeys(stances[facet].to_list()))
    shown = values[:MAX_PANELS]
    names = sorted(t["cluster"].unique().to_list())
    phases = [(p, lbl) for p, lbl in PHASES if p in set(t["phase"].to_list())]
    cols = min(3, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + 1.2, 0.45 * len(names) * rows + 1.4 * rows + 0.6),
                             dpi=100, sharex=True, sharey=True, squeeze=False)
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    for ax, v in zip(axes.flat, shown, strict=False):
        for k, (phase, lbl) in enumerate(phases):
            sub = t.filter((pl.col(facet) == v) & (pl.col("phase") == phase))
            y = [names.index(c) + (k - (len(phases) - 1) / 2) * 0.22 for c in sub["cluster"]]
            marker, colour = PHASE_STYLE[phase]
            ax.errorbar(sub["share_a"], y, xerr=error_bars(sub["share_a"], sub["low"], sub["high"]),
                        fmt=marker, color=colour, capsize=2, ms=5, label=lbl)
        ax.axvline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xlim(-0.03, 1.03)
        ax.set_yticks(range(len(names)), [cluster_label(c) for c in names], fontsize=8)
        ax.grid(alpha=0.3, axis="x")
        ax.set_title(f"{'dilemma ' if facet == 'dilemma_id' else facet + ' '}{v}", fontsize=9)
    axes.flat[0].invert_yaxis()  # shared y: once for all panels (first cluster and first phase on top)
    for ax in axes[-1]:
        ax.set_xlabel("share choosing A (95% Wilson interval)", fontsize=8)
    axes.flat[0].legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.08), ncol=len(phases), frameon=False)
    save_png(fig, path, tight=True)
    more = f" (the first {len(shown)} of {len(values)})" if len(values) > len(shown) else ""
    what = "dilemma" if facet == "dilemma_id" else facet
    return path.name, f"Share choosing action A per cluster and phase, one panel per {what}{more}, with 95% intervals"
