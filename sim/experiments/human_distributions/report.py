"""The human-distributions experiment's plots and report page, read from its typed summary and the run's profiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from sim.experiments.human_distributions.summary import HumanSummary, InstrumentResult
from sim.experiments.registry import config_part
from sim.report.render import figure, fmt_interval, md_table, render, standard_sections

TITLES = {"mfq": "MFQ-30 foundations (0-5)", "moral_machine": "Moral Machine preferences (AMCE, -1..1)"}
CONDITIONS = (("model", "agents with persona", "#4c72b0"), ("no_persona", "no persona", "#999999"),
              ("shuffled", "shuffled countries", "#dd8452"))


def _scatter(profiles: pl.DataFrame, instrument: str, out_dir: Path) -> str:
    """Model against people per country, one panel per dimension; the no-persona answer as a dashed line."""
    from sim.report.plots import plt, save_png  # here: matplotlib is slow to load (the CLI imports this)

    df = profiles.filter(pl.col("instrument") == instrument)
    dims = list(dict.fromkeys(df["dimension"].to_list()))
    cols = min(3, len(dims))
    rows = -(-len(dims) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), dpi=110, squeeze=False)
    for ax, d in zip(axes.flat, dims, strict=False):
        sub = df.filter(pl.col("dimension") == d)
        ax.errorbar(sub["human"], sub["model"], xerr=1.96 * sub["human_se"].to_numpy(), fmt="o", ms=3,
                    color="#4c72b0", ecolor="#bbbbbb")
        for c, x, y in zip(sub["country"], sub["human"], sub["model"], strict=True):
            ax.annotate(c[:3], (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax.axhline(sub["model_no_persona"][0], ls="--", color="#999999", lw=1)
        ax.set_title(d.replace("_", " "), fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(dims):]:
        ax.axis("off")
    fig.supxlabel("people (95% CI)", fontsize=8)
    fig.supylabel("model, agents with the country's persona", fontsize=8)
    fig.suptitle(f"{TITLES[instrument]}: model vs people per country (dashed: no persona)", fontsize=9)
    name = f"human_{instrument}_profiles.png"
    save_png(fig, out_dir / name, tight=True)
    return name


def _metrics_plot(results: dict[str, InstrumentResult], out_dir: Path) -> str:
    from sim.report.plots import error_bars, plt, save_png  # here: matplotlib is slow to load (the CLI imports this)

    insts = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110, layout="constrained")
    x = np.arange(len(insts))
    for ax, metric in zip(axes, ("distance", "correlation"), strict=True):
        for j, (cond, label, colour) in enumerate(CONDITIONS):
            vals = [getattr(results[i].conditions()[cond], metric) for i in insts]
            mid = [v.value if v.value is not None else np.nan for v in vals]
            # clipped: an interval can still miss its point (e.g. every replicate on one side of it)
            err = np.clip(error_bars([0 if np.isnan(m) else m for m in mid], [v.low for v in vals],
                                     [v.high for v in vals]), 0, None)
            # an undefined figure is a labelled gap: a NaN bar has no extent and breaks the figure's layout
            ax.bar(x + (j - 1) * 0.26, np.nan_to_num(mid), 0.26, yerr=np.nan_to_num(err), capsize=3, color=colour,
                   label=label)
            for k, m in enumerate(mid):
                if np.isnan(m):  # e.g. no persona: one profile for every country
                    ax.text(x[k] + (j - 1) * 0.26, 0.03, "undefined", rotation=90, fontsize=7, ha="center", va="bottom")
        ax.set_xticks(x, [TITLES[i].split(" (")[0] for i in insts], fontsize=8)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title({"distance": "Distance from people (RMS per country; lower is closer)",
                      "correlation": "Between-country correlation (higher: tells countries apart as people do)"}[metric],
                     fontsize=8)
    axes[1].set_ylim(-1.05, 1.05)
    axes[0].legend(fontsize=7)
    save_png(fig, out_dir / "human_agreement.png")
    return "human_agreement.png"


def plot_human(profiles: pl.DataFrame, results: dict[str, InstrumentResult], countries: list[str], out_dir: Path) -> list[str]:
    return [_metrics_plot(results, out_dir), *(_scatter(profiles, inst, out_dir) for inst in results)]


def _instrument_sections(inst: str, m: InstrumentResult, profiles: pl.DataFrame, countries: list[str]) -> list:
    conds = m.conditions()
    rows = [{"condition": label, "distance [95% CI]": conds[cond].distance,
             "between-country r [95% CI]": conds[cond].correlation if conds[cond].correlation.value is not None
             else f"undefined ({conds[cond].correlation.reason or 'one profile for all countries'})"}
            for cond, label, _ in CONDITIONS]
    p = m.model.permutation_p
    how = ("every other ordering of the countries (exact p, the identity counted)" if m.shuffled.exact
           else "seeded random country shuffles")
    note = (f"Model r against {m.shuffled.permutations} {how}: permutation p = {p}. The shuffled row is the "
            "mean and 2.5-97.5% range over shuffles; the other rows' intervals are basic bootstrap intervals."
            if p is not None else f"Permutation p: n/a ({m.shuffled.permutation_p_na or 'not computed'}).")
    per = [{"country": c, "model distance": m.model.per_country_distance[i],
            "no-persona distance": m.no_persona.per_country_distance[i]} for i, c in enumerate(countries)]
    wide = (profiles.filter(pl.col("instrument") == inst)
            .with_columns(pl.format("{} / {}", pl.col("model").round(2), pl.col("human").round(2)).alias("cell"))
            .pivot(on="dimension", index="country", values="cell"))
    return [(f"{TITLES[inst]}: agreement with people", [md_table(rows), note]),
            (f"{TITLES[inst]}: per country", md_table(per)),
            (f"{TITLES[inst]}: profiles (model / people)", md_table(wide.to_dicts())),
            (f"{TITLES[inst]}: plot", figure(f"human_{inst}_profiles.png", "Model against people per country"))]


def human_report(out_dir: Path, summary: HumanSummary) -> list[str]:
    """``report.md`` and ``report.html`` from the summary and the run's ``human_profiles.parquet``."""
    profiles = pl.read_parquet(out_dir / "human_profiles.parquet")
    countries = summary.countries
    intro = (f"{summary.agents} agents ({summary.persona} persona, {summary.reader} reader) in "
             f"{len(countries)} countries answered {', '.join(summary.results)}; their per-country profiles are "
             "compared with people's, beside the same model with no persona and the model's profiles given to "
             "shuffled countries.")
    sections = standard_sections(summary, intro)
    if summary.caveats:
        sections.append(("Caveats", "\n".join(f"- **{c}**" for c in summary.caveats)))
    sections.append(("Agreement at a glance", figure("human_agreement.png", "Distance and between-country correlation "
                                                                            "with 95% bootstrap intervals")))
    for inst, m in summary.results.items():
        sections += _instrument_sections(inst, m, profiles, countries)
    catch = summary.mfq_catch_pass
    if catch:
        sections.append(("MFQ-30 catch items", f"{fmt_interval(catch)} of {catch.n} agents pass both catch items "
                         f"(no persona: {'passes' if catch.no_persona else 'fails'}). An agent that rates 'good at "
                         "math' as morally relevant, or disagrees that doing good beats doing bad, is not reading the "
                         "questionnaire."))
    sections.append(("Data sources", "\n".join(f"- {k}: {v}" for k, v in summary.citations.items())))
    sections.append(("Config", config_part(summary)))
    return render(out_dir, f"agora human distributions — {summary.run_id}", sections)
