"""The pluralism experiment's plot and report page, read from its typed summary and the run folder's table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from agents.worldview import cluster_label
from sim.experiments.pluralism.summary import ConditionEntropy, PluralismSummary
from sim.experiments.registry import config_part
from sim.report.render import (
    Quote,
    Term,
    dilemma_texts,
    figure,
    fmt_interval,
    md_table,
    members_text,
    na_or,
    render,
    standard_sections,
)

PLOT = "pluralism_entropy.png"


def plot_pluralism(conditions: dict[str, ConditionEntropy], names: list[str], out_dir: Path) -> list[str]:
    """PDS entropy per condition with its 95% bootstrap interval, and the judged perspective mix."""
    from sim.report.plots import error_bars, plt, save_png  # here: matplotlib is slow to load (the CLI imports this)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    conds = list(conditions)
    vals = [conditions[c].entropy for c in conds]
    mid = [v.value or 0 for v in vals]
    err = error_bars(mid, [v.low for v in vals], [v.high for v in vals])
    ax1.bar(conds, mid, yerr=err, capsize=4, color=["#999999", "#4c72b0", "#55a868"][:len(conds)])
    ax1.set_ylim(0, 1.05)
    ax1.set_ylabel("perspective entropy (0 = one view, 1 = all equally)")
    ax1.set_title("Perspective diversity per answer (95% bootstrap CI)", fontsize=9)
    bottom = np.zeros(len(conds))
    colours = plt.get_cmap("tab10")
    for k, n in enumerate(names):
        share = np.array([conditions[c].mean_distribution.get(n) or 0 for c in conds])
        ax2.bar(conds, share, bottom=bottom, label=cluster_label(n), color=colours(k % 10))
        bottom += share
    ax2.set_ylabel("mean share of the judged perspective")
    ax2.set_title("Whose perspective the answers reflect", fontsize=9)
    ax2.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    save_png(fig, out_dir / PLOT, tight=True)
    return [PLOT]


def pluralism_report(out_dir: Path, summary: PluralismSummary) -> list[str]:
    """``report.md`` and ``report.html`` from the summary and the run's ``pluralism_answers.parquet``."""
    answers = pl.read_parquet(out_dir / "pluralism_answers.parquet")
    names = summary.clusters
    rows = [{"condition": c, "answers": v.answers, "PDS entropy [95% CI]": v.entropy, "pooled entropy": v.pooled_entropy,
             **{cluster_label(n): v.mean_distribution.get(n) for n in names}}
            for c, v in summary.conditions.items()]
    diffs = [{"difference": Term(k), "mean [95% CI]": v, "permutation p": na_or(v, "permutation_p")}
             for k, v in summary.differences.items()]
    acc = summary.classifier_member_accuracy
    validity = (f"The judge named a panel member's own cluster for {fmt_interval(acc)} of {acc.n} member answers "
                f"(chance {acc.chance:.2f}). Near chance, the perspective distributions say more about the judge "
                "than about the answers." if acc else "")
    d0 = answers["dilemma_id"][0]
    text = dilemma_texts(out_dir, summary.config).get(d0)
    who = lambda r: f" — {cluster_label(r['cluster'])}" if r["cluster"] else ""  # noqa: E731
    sample = ([Quote(text, css="dilemma")] if text else []) + [
        Quote(r["text"], f"*{r['condition']}*{who(r)} (entropy {r['entropy']:.2f}, judged {cluster_label(r['top'])}):")
        for r in answers.filter(pl.col("dilemma_id") == d0).iter_rows(named=True)]
    asked = summary.config.get("study", {}).get("pluralism", {}).get("panel_size")
    sections = standard_sections(summary, f"{summary.dilemmas} dilemmas answered three ways: one model alone, the "
                                          "same model told to weigh every cluster's view, and a panel of agents "
                                          f"{members_text(summary.panel_size, asked, 'pluralism')} from different "
                                          "clusters merged by a synthesiser.")
    sections += [("Perspective entropy per condition", md_table(rows)), ("Paired differences (per dilemma)", md_table(diffs)),
                 ("Is the judge able to tell perspectives apart?", validity),
                 ("Plot", figure(PLOT, "PDS entropy per condition and the judged perspective mix")),
                 (f"Sample answers (dilemma {d0})", sample),
                 ("Config", config_part(summary))]
    return render(out_dir, f"agora pluralism — {summary.run_id}", sections)
