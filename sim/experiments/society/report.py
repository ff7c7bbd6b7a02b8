"""A society run's report (and the sections the generations loop's report shares)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import polars as pl

from sim.experiments.registry import config_part
from sim.report.render import (
    Term,
    dilemma_texts,
    figure,
    md_table,
    render,
    standard_sections,
    transcript_sample,
)
from sim.report.social import cluster_choice_rows, plot_cluster_choices, plot_social_graph

if TYPE_CHECKING:
    from sim.experiments.society.summary import SocietySummary


def society_sections(out_dir: Path, stances: pl.DataFrame, transcripts: pl.DataFrame, graph: nx.Graph | None,
                     facet: str = "dilemma_id", marked: list[int] | None = None) -> list[tuple[str, Any]]:
    """The social graph and the choices by cluster, drawn from the run's rows (and the model's graph when
    the runner passes it; a report re-rendered from the folder reuses the PNG already there)."""
    sections: list[tuple[str, Any]] = []
    if graph is not None and not stances.is_empty():
        plot_social_graph(graph, stances, transcripts, out_dir / "social_graph.png", marked=marked or ())
    if (out_dir / "social_graph.png").is_file():
        note = ("Left: the social graph, agents coloured by cultural cluster. Right: the same layout; dark edges join "
                "agents who sat in one debate group (wider: more often), agents coloured by the share of their "
                "dilemmas on which their final choice differs from their first (grey: no later choice).")
        sections.append(("The society", [note + (" Black rims: the policy group." if marked else ""),
                                         figure("social_graph.png", "Who is tied to whom, who debated whom, who changed "
                                                                    "their choice")]))
    if not stances.is_empty():
        fname, caption = plot_cluster_choices(stances, out_dir / "cluster_choices.png", facet)
        pooled, panels = (("all dilemmas", "dilemma") if facet == "dilemma_id" else
                          ("all dilemmas and generations", f"{facet} (pooled over its dilemmas)"))
        intro = (f"Share choosing action A per cluster and phase, over {pooled}, with 95% Wilson intervals in "
                 "brackets (each agent's choice on each dilemma counted once; abstentions left out). Pooling mixes "
                 f"dilemmas; the plot below has one panel per {panels}.")
        sections.append(("Choices by cluster", [intro, md_table(cluster_choice_rows(stances)), figure(fname, caption)]))
    return sections


def steerability_line(steer: dict[str, Any]) -> str | None:
    """Steerability against the spread sampling alone makes (None for a run made before the null was computed)."""
    from sim.experiments.society.console import spread_vs_null

    if "shuffled_clusters" not in steer:
        return None
    return ("Steerability: the spread across clusters of the share choosing A (max − min over clusters, mean over "
            f"dilemmas) is {_num(steer['mean_cluster_share_spread'])}{spread_vs_null(steer, 'share_spread')}; of P(A) "
            f"{_num(steer['mean_cluster_p_a_spread'], 4)}{spread_vs_null(steer, 'p_a_spread', 4)}. "
            + ("Brackets: 95% bootstrap interval over dilemmas. " if _dilemmas(steer) != 1 else
               "With one dilemma there is no interval over dilemmas. ")
            + "The null shuffles the agents' cluster labels "
            f"({steer['shuffled_clusters']['permutations']} times, cluster sizes kept) over the same answers: the spread "
            "that sampling alone makes; p is the share of shuffles whose spread reaches the observed one.")


def _dilemmas(steer: dict[str, Any]) -> int | None:
    return (steer.get("share_spread_interval") or {}).get("n")


def _num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def society_report(out_dir: Path, summary: SocietySummary) -> list[str]:
    """``report.md``/``report.html`` of a society run (the social graph from ``summary.graph``, when the run passes it)."""
    c, t, j = summary.counts, summary.throughput, summary.judge
    stances = pl.read_parquet(out_dir / "stances.parquet") if (out_dir / "stances.parquet").is_file() else pl.DataFrame()
    tr = out_dir / "transcripts.parquet"
    transcripts = pl.read_parquet(tr) if tr.is_file() else pl.DataFrame()
    debated = (summary.config or {}).get("sim", {}).get("debate_rounds", 1) != 0
    sections = standard_sections(summary, ("A society debated moral dilemmas, critiqued" if debated else
                                           "A society answered moral dilemmas (no debate: sim.debate_rounds=0), critiqued")
                                 + " and revised its answers under a constitution, and judged pairs of answers into "
                                   "preference data.")
    parts = society_sections(out_dir, stances, transcripts, summary.graph)
    line = steerability_line(summary.steerability)
    parts = [(title, [*body, line]) if title == "Choices by cluster" and line else (title, body) for title, body in parts]
    sections[2:2] = parts
    sections.append(("Stances by cluster over steps", figure("stance_shares.png", "Share choosing action A per cluster "
                                                                                  "and step, by phase")))
    sections += [("The judges", md_table([{"figure": Term(k), "value": v} for k, v in j.items()])),
                 ("Counts", md_table([{"what": Term(k), "count": v} for k, v in c.items()])),
                 ("Where the time went", md_table([{"phase": Term(k), "seconds": v}
                                                   for k, v in t.get("phase_seconds", {}).items()]))]
    r = summary.reasons  # absent in runs made before it was counted
    if r and r.get("texts"):
        lo, hi = r["interval"]
        sections.append(("Reasons and choices", (
            f"{r['naming_other_option']} of {r['texts']} first reasons still name the option their reading did not choose "
            f"({100 * r['share']:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}], 95% interval; `sim.reason={r['mode']}`: "
            + ("the choice was read first and the reason written for it)." if r["mode"] == "after_choice"
               else "the reason was written before the choice was read; `sim.reason=after_choice` writes it for the choice).")
        )))
    if summary.eval is not None:
        from sim.report.eval import report_lines

        lines = [f"**{x.strip('# ')}**\n" if x.startswith("#") else x.strip() if x.lstrip().startswith("- ")
                 else f"- {x.strip()}" for x in report_lines(summary.eval) if x.strip()]  # its own bullets kept
        sections.append(("Validity against external data", "\n".join(lines)))
    if not transcripts.is_empty():
        sections.append(("Sample transcript", transcript_sample(transcripts, dilemma_texts(out_dir),
                                                                summary.config["sim"].get("tokens"))))
    sections.append(("Config", config_part(summary)))
    return render(out_dir, f"agora report — {summary.run_id}", sections)
