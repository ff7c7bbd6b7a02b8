"""The evolving-norms experiment's plot and report page, read from its typed summary."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl

from agents.culture import MFQ_AXES
from sim.experiments.evolving_norms.config import NormConfig
from sim.experiments.evolving_norms.summary import NormsSummary
from sim.experiments.registry import config_part
from sim.report.render import (
    figure,
    md_table,
    render,
    standard_sections,
)

PLOT = "norms_tracking.png"


def plot_norms(table: pl.DataFrame, schedule: list[NormConfig], out_dir: Path) -> list[str]:
    """Fit with the norm in force, the norms' value axes and the clusters' shares, by generation."""
    from sim.report.plots import plt, save_png  # here: matplotlib is slow to load (the CLI imports this)

    gen = table["generation"].to_list()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=100)
    ax = axes[0]
    ax.plot(gen, table["mean_fit"], "-o", label="population")
    ax.fill_between(gen, table["mean_fit"] - table["sd_fit"], table["mean_fit"] + table["sd_fit"], alpha=0.15)
    if table["policy_fit"].is_not_nan().any():
        ax.plot(gen, table["policy_fit"], "-s", label="policy")
    for n in schedule[1:]:
        ax.axvline(n.generation - 0.5, color="k", ls="--", lw=0.8)
        ax.text(n.generation - 0.45, ax.get_ylim()[1], n.name, fontsize=7, va="top")
    ax.set_title("fit with the current norm (±1 sd)", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    axes_tracked = [n.axis for n in schedule if n.axis] or list(MFQ_AXES)
    for a in dict.fromkeys(axes_tracked):
        ax.plot(gen, table[f"mean[{a}]"], "-o", label=a)
    ax.set_title("population mean of the norms' value axes (MFQ, 0-5)", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[2]
    for c in [c for c in table.columns if c.startswith("share[")]:
        ax.plot(gen, table[c], "-o", label=c[6:-1])
    ax.plot(gen, table["lineage_entropy"], "k--", label="cluster entropy")
    ax.set_title("who is left: cluster shares and their entropy", fontsize=9)
    ax.legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("generation")
        ax.set_xticks(gen)
        ax.grid(alpha=0.3)
    save_png(fig, out_dir / PLOT, tight=True)
    return [PLOT]


def norms_report(out_dir: Path, summary: NormsSummary) -> list[str]:
    """``report.md`` and ``report.html`` from the summary."""
    sched = md_table([{"from generation": n.generation, "norm": n.name, "principle": n.text} for n in summary.schedule])
    cols = ["generation", "norm", "mean_fit", "sd_fit", "policy_fit", "lineage_entropy", "founders_alive",
            "choice_entropy", "mfq_dispersion", "replaced"]
    shifts = md_table([s.to_json() for s in summary.shifts]) if summary.shifts else "_(no norm change inside the run)_"
    lost = md_table([{"figure": k, "last − first generation": v} for k, v in dataclasses.asdict(summary.pluralism_change).items()])
    sections = standard_sections(summary, "Agents are judged each generation for fit with the norm in force; the "
                                          "least fit leave and offspring of the fittest (mutated worldviews) replace "
                                          "them. Lag = generations until mean fit under a new norm rises by half the "
                                          "between-agent sd at the shift (None: not within the run).")
    sections += [("Norm schedule", sched), ("Tracking each shift", shifts), ("Per generation", md_table(summary.generations, cols)),
                 ("Pluralism lost along the way", lost), ("Plot", figure(PLOT, "Fit, value axes and cluster shares by "
                                                                             "generation")),
                 ("Config", config_part(summary))]
    return render(out_dir, f"agora evolving norms — {summary.run_id}", sections)
