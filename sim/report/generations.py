"""The generations loop's plots and report."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from sim.report.plots import save_png
from sim.report.render import (
    config_block,
    constitution_versions,
    figure,
    md_table,
    render,
    standard_sections,
    transcript_sample,
)


def plot_generations(metrics: pl.DataFrame, out_dir: Path) -> list[str]:
    """One PNG per metric against generation."""
    from sim.report.plots import plt

    written = []
    agree = [c for c in metrics.columns if c.startswith("agreement[")]
    groups: dict[str, list[str]] = {"agreement_by_cluster": agree}
    for c in metrics.columns:
        if c not in agree and c != "generation" and metrics[c].dtype.is_numeric():
            groups[c] = [c]
    for name, cols in groups.items():
        if not cols or metrics.select(cols).null_count().sum_horizontal().item() == len(metrics) * len(cols):
            continue
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
        for c in cols:
            ax.plot(metrics["generation"], metrics[c], marker="o", label=c)
        ax.set_xlabel("generation")
        ax.set_title(name, fontsize=10)
        ax.set_xticks(metrics["generation"].to_list())
        ax.grid(alpha=0.3)
        if len(cols) > 1:
            ax.legend(fontsize=7)
        fig.tight_layout()
        fname = f"gen_{name.replace('[', '_').replace(']', '')}.png"
        save_png(fig, out_dir / fname)
        written.append(fname)
    return written


def generations_report(out_dir: Path, summary: Mapping[str, Any]) -> list[str]:
    rows = summary["generations"]
    keys = ["generation", "preferences", "js_policy_population", "pds_entropy", "value_drift_js", "consensus_initial",
            "position_flip_rate", "rm_eval_accuracy", "dpo_eval_margin_before", "dpo_eval_margin_after"]
    sections = standard_sections(summary, "Generations of the closed loop: the society's feedback trains a reward "
                                          "model and DPO-tunes the policy, which half of each cluster then speaks with.")
    sections.append(("Per generation", md_table(rows, [k for k in keys if any(k in r for r in rows)])))
    if summary.get("constitutions"):
        sections.append(("Collective constitution", constitution_versions(summary["constitutions"])))
    sections.append(("Plots", "\n\n".join(figure(p, p.removesuffix(".png").replace("_", " ")) for p in summary["plots"])))
    tr = out_dir / "transcripts.parquet"
    if tr.exists():
        sections.append(("Sample transcript", transcript_sample(pl.read_parquet(tr))))
    sections.append(("Config", config_block(summary["config"])))
    return render(out_dir, f"agora report — {summary['run_id']}", sections)
