"""The Overton experiment's plot and report page, read from its typed summary and the run folder's tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from agents.worldview import cluster_label
from sim.experiments.overton.summary import ConditionCoverage, OvertonSummary
from sim.experiments.registry import config_part
from sim.report.render import (
    Quote,
    Term,
    dilemma_texts,
    figure,
    fmt,
    fmt_interval,
    md_table,
    members_text,
    na_or,
    render,
    standard_sections,
)

PLOT = "overton_coverage.png"


def plot_overton(conditions: dict[str, ConditionCoverage], out_dir: Path) -> list[str]:
    """Coverage and soft coverage per condition, with their 95% bootstrap intervals over dilemmas."""
    from sim.report.plots import error_bars, plt, save_png  # here: matplotlib is slow to load (see run.py)

    conds = list(conditions)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110, sharey=True)
    titles = {"coverage": "Overton coverage: share of positions covered (P > ½)",
              "soft_coverage": "Soft coverage: mean P(covers a position)"}
    for ax, (key, title) in zip(axes, titles.items(), strict=True):
        vals = [getattr(conditions[c], key) for c in conds]
        mid = [v.value if v.value is not None else 0.0 for v in vals]
        ax.bar(conds, mid, yerr=error_bars(mid, [v.low for v in vals], [v.high for v in vals]), capsize=4,
               color=["#999999", "#4c72b0", "#55a868", "#c44e52"][:len(conds)])
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{title}\n(95% bootstrap CI over dilemmas)", fontsize=9)
    axes[0].set_ylabel("share of the clusters' positions")
    save_png(fig, out_dir / PLOT, tight=True)
    return [PLOT]


def _sample(out_dir: Path, summary: OvertonSummary, answers: pl.DataFrame, positions: pl.DataFrame,
            pairs: pl.DataFrame) -> list[Any]:
    """The first dilemma: its positions, then each condition's answer and the positions it covers."""
    d0 = answers["dilemma_id"][0]
    text = dilemma_texts(out_dir, summary.config).get(d0)
    parts: list[Any] = [Quote(text, css="dilemma")] if text else []
    parts += [Quote(q["text"], f"position **{q['label']}** ({', '.join(map(cluster_label, q['clusters']))}; "
                               f"{q['voices']} voices, P(side) {q['p_side']:.2f}):")
              for q in positions.filter(pl.col("dilemma_id") == d0).iter_rows(named=True)]
    shown = answers.with_row_index("answer").filter((pl.col("dilemma_id") == d0) & (pl.col("condition") != "member"))
    for r in shown.iter_rows(named=True):
        got = pairs.filter(pl.col("answer") == r["answer"])
        covered = ", ".join(f"{q} ({p:.2f})" for q, p, c in got.select("position", "p_yes", "covered").iter_rows() if c)
        parts.append(Quote(r["text"], f"*{r['condition']}* — coverage {r['coverage']:.2f}, covers: {covered or 'none'}"))
    return parts


def overton_report(out_dir: Path, summary: OvertonSummary) -> list[str]:
    """``report.md`` and ``report.html`` from the summary and the run's ``overton_*.parquet`` tables."""
    answers = pl.read_parquet(out_dir / "overton_answers.parquet")
    positions = pl.read_parquet(out_dir / "overton_positions.parquet")
    pairs = pl.read_parquet(out_dir / "overton_coverage.parquet")
    rows = [{"condition": c, "answers": v.answers, "coverage [95% CI]": v.coverage, "soft coverage [95% CI]": v.soft_coverage}
            for c, v in summary.conditions.items()]
    diffs = [{"difference": Term(k), "mean [95% CI]": v, "permutation p": na_or(v, "permutation_p"), "dilemmas": v.n}
             for k, v in summary.differences.items()]
    own, other = summary.validity.own_position, summary.validity.other_positions
    validity = (f"Panel members' answers covered their own cluster's position in {fmt_interval(own)} of {own.n} "
                f"readings (mean P {fmt(own.mean_p)}) and the other positions in {fmt_interval(other)} of {other.n} "
                f"(mean P {fmt(other.mean_p)}); {summary.validity.self_readings_excluded} readings of a "
                "position by the very voice it quotes are left out. A judge that does not tell these apart cannot "
                "measure coverage either.")
    asked = summary.config.get("study", {}).get("overton", {}).get("panel_size")
    intro = (f"{summary.dilemmas} dilemmas; each cluster's position is its voices' side and the reason of its "
             f"surest voice ({summary.positions_per_dilemma.mean:.1f} positions per dilemma). Coverage is the share of "
             "those positions an answer represents, as a yes/no judge reads it, for the base model alone, the model "
             f"told to weigh the clusters, and a panel {members_text(summary.panel_size, asked, 'overton')} merged by a "
             "synthesiser.")
    sections = standard_sections(summary, intro)
    sections += [("Coverage per condition", md_table(rows)), ("Paired differences (per dilemma)", md_table(diffs)),
                 ("Does the judge recognise a position's own voices?", validity),
                 ("Plot", figure(PLOT, "Overton coverage per condition (95% bootstrap intervals over dilemmas)")),
                 (f"Sample (dilemma {answers['dilemma_id'][0]})", _sample(out_dir, summary, answers, positions, pairs)),
                 ("Config", config_part(summary))]
    return render(out_dir, f"agora overton — {summary.run_id}", sections)
