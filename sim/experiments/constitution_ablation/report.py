"""The constitution ablation's plot and report page, read from its typed summary and the run folder's transcripts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from sim.experiments.constitution_ablation.summary import AblationSummary, Effect, RewardArm
from sim.experiments.registry import config_part
from sim.report.render import (
    dilemma_texts,
    figure,
    md_table,
    render,
    standard_sections,
    transcript_sample,
)


def plot_ablation(effects: dict[str, dict[str, Effect]], reward: dict[str, RewardArm], out_dir: Path) -> list[str]:
    """Heat map: rows = constitution judged under, columns = direction; cell = shift vs none."""
    from sim.report.plots import plt, save_png  # here: matplotlib is slow to load (the CLI imports this)

    arms = [a for a in effects if a != "none"]
    dirs = list(next(iter(effects.values())).keys()) if effects else []
    if not arms or not dirs:
        return []
    panels: list[tuple[str, Callable[[str, str], float | None]]] = [("labels", lambda a, d: effects[a][d].value)]
    if reward:
        panels.append(("reward model", lambda a, d: r.rm_shift.value if a in reward and (r := reward[a].directions.get(d))
                       else None))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 1, 0.6 * len(arms) + 2.2), dpi=110, squeeze=False)
    for ax, (title, get) in zip(axes[0], panels, strict=True):
        m = np.array([[get(a, d) if get(a, d) is not None else np.nan for d in dirs] for a in arms], float)
        lim = max(np.nanmax(np.abs(m)) if np.isfinite(m).any() else 0.0, 1e-3)
        im = ax.imshow(m, cmap="RdBu", vmin=-lim, vmax=lim)
        ax.set_xticks(range(len(dirs)), dirs, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(arms)), arms, fontsize=8)
        for i in range(len(arms)):
            for j in range(len(dirs)):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:+.3f}", ha="center", va="center", fontsize=7)
        ax.set_xlabel("direction (property rated)")
        ax.set_title(f"{title}: shift toward direction vs 'none'", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    save_png(fig, out_dir / "ablation_shift.png", tight=True)
    return ["ablation_shift.png"]


def ablation_report(out_dir: Path, summary: AblationSummary) -> list[str]:
    """``report.md`` and ``report.html`` from the summary and the run's ``transcripts.parquet``."""
    transcripts = pl.read_parquet(out_dir / "transcripts.parquet")
    arms = md_table([{"arm": n, "constitution": a.tag, "judging principles": len(a.principles),
                      "direction (rated property)": a.direction or "—", "mean P(a)": summary.mean_p_a[n],
                      "mean |Δp| vs none": summary.label_change_vs_none[n]} for n, a in summary.arms.items()])
    rows = [{"judged under": a, "direction": d, "shift [95% CI]": e, "d_z": e.d_z, "P(prefer more-D)": e.agreement,
             "pairs": e.pairs} for a, per in summary.effects.items() for d, e in per.items()]
    sections = standard_sections(summary, f"One society's {summary.pairs} judged pairs, judged again under each "
                                          "constitution by the same judges. Shift = change, vs no constitution, in the "
                                          "probability of preferring the answer a persona-free rater scores higher on "
                                          "the property a constitution names (its diagonal is the constitution's own "
                                          "direction).")
    sections += [("Arms", arms), ("Preference shift toward each direction", md_table(rows))]
    if summary.reward:
        rm = [{"reward model of": a, "direction": d, "RM ranks more-D higher": v.rm_agreement, "vs none [95% CI]": v.rm_shift}
              for a, per in summary.reward.items() for d, v in per.directions.items()]
        sections.append(("Reward models trained on each arm's labels (held-out pairs)", md_table(rm)))
    elif summary.reward_na:
        sections.append(("Reward models trained on each arm's labels (held-out pairs)", f"n/a: {summary.reward_na}."))
    if summary.plots:
        sections.append(("Plot", figure("ablation_shift.png", "Shift toward each direction, labels and reward models")))
    sections += [("Sample transcript", transcript_sample(transcripts, dilemma_texts(out_dir), summary.config["sim"].get("tokens"))),
                 ("Config", config_part(summary))]
    return render(out_dir, f"agora constitution ablation — {summary.run_id}", sections)
