"""The generations loop's plots and report."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from agents.worldview import cluster_label
from sim.experiments.registry import config_part
from sim.experiments.society.report import society_sections
from sim.report.labels import label
from sim.report.plots import axis_limits, save_png
from sim.report.render import (
    Grid,
    Term,
    constitution_versions,
    dilemma_texts,
    figure,
    md_table,
    render,
    standard_sections,
    transcript_sample,
)

if TYPE_CHECKING:
    from sim.experiments.society.summary import GenerationsSummary


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
        values = [v for c in cols for v in metrics[c].to_list()]
        if not any(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            continue  # nothing measured (e.g. no position flips without a second order): no empty plot
        fig, ax = plt.subplots(figsize=(5.6, 3.4), dpi=100)  # two to a row on the page
        for c in cols:
            ax.plot(metrics["generation"], metrics[c], marker="o",
                    label=cluster_label(c[len("agreement["):-1]) if c in agree else label(c))
        ax.set_ylim(*axis_limits(cols[0], values))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel("generation")
        ax.set_title(label(name), fontsize=10)
        ax.set_xticks(metrics["generation"].to_list())
        ax.grid(alpha=0.3)
        if len(cols) > 1:
            ax.legend(fontsize=7)
        fname = f"gen_{name.replace('[', '_').replace(']', '')}.png"
        save_png(fig, out_dir / fname, tight=True)
        written.append(fname)
    return written


def per_generation(rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Metrics as rows, generations as columns (a page is narrower than a run is long)."""
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in ("generation", "na")))
    return [{"figure": Term(k), **{f"generation {r['generation']}": r.get(k) for r in rows}} for k in keys]


def _plot_key(fname: str) -> str:
    """``gen_pds_entropy.png`` -> ``pds_entropy`` (``gen_agreement_x.png`` -> ``agreement[x]``)."""
    stem = fname.removeprefix("gen_").removesuffix(".png")
    if stem.startswith("agreement_") and stem != "agreement_by_cluster":
        return f"agreement[{stem.removeprefix('agreement_')}]"
    return stem


def generations_report(out_dir: Path, summary: GenerationsSummary) -> list[str]:
    """``report.md``/``report.html`` of the generations loop (the social graph, the same in every generation, from
    ``summary.graph`` when the run passes it)."""
    rows = summary.generations
    sections = standard_sections(summary, "Generations of the closed loop: the society's feedback trains a reward "
                                          "model and DPO-tunes the policy, which half of each cluster then speaks with.")
    st, tr = out_dir / "stances.parquet", out_dir / "transcripts.parquet"
    stances = pl.read_parquet(st) if st.is_file() else pl.DataFrame()
    transcripts = pl.read_parquet(tr) if tr.is_file() else pl.DataFrame()
    sections[2:2] = society_sections(out_dir, stances, transcripts, summary.graph, facet="generation",
                                     marked=summary.policy_group)
    sections.append(("Per generation", md_table(per_generation(rows))))
    missing = [f"- generation {r['generation']}, {label(k)}: {why}" for r in rows for k, why in r.get("na", {}).items()]
    if missing:
        sections.append(("Figures not computed (n/a)", "\n".join(missing)))
    if summary.constitutions:
        sections.append(("Collective constitution", constitution_versions(summary.constitutions)))
    sections.append(("Plots", Grid([figure(p, label(_plot_key(p))) for p in summary.plots])))
    if not transcripts.is_empty():
        sections.append(("Sample transcript", transcript_sample(transcripts, dilemma_texts(out_dir),
                                                                summary.config["sim"].get("tokens"))))
    sections.append(("Config", config_part(summary)))
    return render(out_dir, f"agora report — {summary.run_id}", sections)
