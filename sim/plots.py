"""PNG plots of a run (matplotlib, headless)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from sim.store import atomic_write_bytes  # noqa: E402

PHASE_STYLE = {"initial": "-", "post_debate": "--", "revised": ":"}


def plot_stance_shares(stances: pl.DataFrame, path: Path, title: str = "") -> None:
    """Share choosing action A per cluster over steps; line style = phase (initial/after debate/revised)."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    shares = (stances.filter(pl.col("choice") != "abstain")
              .group_by("step", "cluster", "phase").agg((pl.col("choice") == "a").mean().alias("share_a"))
              .sort("step"))
    clusters = sorted(shares["cluster"].unique().to_list())
    colours = plt.get_cmap("tab10")
    for ci, cluster in enumerate(clusters):
        for phase, style in PHASE_STYLE.items():
            sub = shares.filter((pl.col("cluster") == cluster) & (pl.col("phase") == phase))
            if len(sub):
                ax.plot(sub["step"], sub["share_a"], style, marker="o", color=colours(ci % 10),
                        label=f"{cluster} ({phase.replace('_', ' ')})")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("step (one new dilemma per step)")
    ax.set_ylabel("share choosing action A")
    ax.set_title(f"Stance shares per cluster {title}".strip(), fontsize=10)
    steps = sorted(shares["step"].unique().to_list())
    ax.set_xticks(steps)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
