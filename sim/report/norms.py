"""The evolving-norms experiment's plots and report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from agents.culture import MFQ_AXES
from sim.config import AgoraConfig
from sim.report.plots import save_png
from sim.report.render import (
    config_block,
    figure,
    md_table,
    render,
    standard_sections,
)


def plot_norms(table: pl.DataFrame, cfg: AgoraConfig, out_dir: Path) -> list[str]:
    from sim.report.plots import plt

    gen = table["generation"].to_list()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=100)
    ax = axes[0]
    ax.plot(gen, table["mean_fit"], "-o", label="population")
    ax.fill_between(gen, table["mean_fit"] - table["sd_fit"], table["mean_fit"] + table["sd_fit"], alpha=0.15)
    if table["policy_fit"].is_not_nan().any():
        ax.plot(gen, table["policy_fit"], "-s", label="policy")
    for n in cfg.study.norms.schedule[1:]:
        ax.axvline(n.generation - 0.5, color="k", ls="--", lw=0.8)
        ax.text(n.generation - 0.45, ax.get_ylim()[1], n.name, fontsize=7, va="top")
    ax.set_title("fit with the current norm (±1 sd)", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    axes_tracked = [n.axis for n in cfg.study.norms.schedule if n.axis] or list(MFQ_AXES)
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
    save_png(fig, out_dir / "norms_tracking.png", tight=True)
    return ["norms_tracking.png"]


def norms_report(out_dir: Path, summary: dict[str, Any]) -> list[str]:

    sched = md_table([{"from generation": n["generation"], "norm": n["name"], "principle": n["text"]}
                      for n in summary["schedule"]])
    cols = ["generation", "norm", "mean_fit", "sd_fit", "policy_fit", "lineage_entropy", "founders_alive",
            "choice_entropy", "mfq_dispersion", "replaced"]
    shifts = md_table(summary["shifts"]) if summary["shifts"] else "_(no norm change inside the run)_"
    lost = md_table([{"figure": k, "last − first generation": v} for k, v in summary["pluralism_change"].items()])
    sections = standard_sections(summary, "Agents are judged each generation for fit with the norm in force; the "
                                          "least fit leave and offspring of the fittest (mutated worldviews) replace "
                                          "them. Lag = generations until mean fit under a new norm rises by half the "
                                          "between-agent sd at the shift (None: not within the run).")
    sections += [("Norm schedule", sched), ("Tracking each shift", shifts), ("Per generation", md_table(summary["generations"], cols)),
                 ("Pluralism lost along the way", lost), ("Plot", figure("norms_tracking.png", "Fit, value axes and "
                                                                                             "cluster shares by generation")),
                 ("Config", config_block(summary["config"], "evolving_norms"))]
    return render(out_dir, f"agora evolving norms — {summary['run_id']}", sections)
