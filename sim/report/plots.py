"""PNG plots of a run (matplotlib, headless)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import Formatter  # noqa: E402

from agents.worldview import cluster_label  # noqa: E402
from sim.display import inert  # noqa: E402
from sim.report.labels import known_range  # noqa: E402
from sim.run.store import atomic_write_bytes  # noqa: E402

PHASES = (("initial", "first answer"), ("post_debate", "after debate"), ("revised", "after critique"))


def error_bars(values: Sequence[float], lows: Sequence[float | None], highs: Sequence[float | None]) -> list[list[float]]:
    """matplotlib's ``xerr``/``yerr`` (distances below and above each value) from interval bounds; a
    missing bound draws no bar on that side."""
    return [[v - (lo if lo is not None else v) for v, lo in zip(values, lows, strict=True)],
            [(hi if hi is not None else v) - v for v, hi in zip(values, highs, strict=True)]]


class _InertTicks(Formatter):
    """Any formatter's tick labels made inert as they are drawn (labels given to ``set_xticks``, category names);
    everything else is the wrapped formatter's (its locations, offset and state)."""

    def __init__(self, inner: Formatter) -> None:
        self.inner = inner

    def __getattr__(self, name: str):  # noqa: ANN204  (only for what this class lacks)
        return getattr(self.inner, name)

    def __call__(self, x, pos=None) -> str:  # noqa: ANN001
        return inert(self.inner(x, pos), newlines=False)

    def format_ticks(self, values) -> list[str]:  # noqa: ANN001
        return [inert(t, newlines=False) for t in self.inner.format_ticks(values)]

    def format_data(self, value) -> str:  # noqa: ANN001
        return inert(self.inner.format_data(value), newlines=False)

    def format_data_short(self, value) -> str:  # noqa: ANN001
        return inert(self.inner.format_data_short(value), newlines=False)

    def get_offset(self) -> str:
        return inert(self.inner.get_offset(), newlines=False)

    def set_locs(self, locs) -> None:  # noqa: ANN001
        self.inner.set_locs(locs)

    def set_axis(self, axis) -> None:  # noqa: ANN001
        self.axis = axis
        self.inner.set_axis(axis)


def inert_text(fig) -> None:  # noqa: ANN001
    """Every text of ``fig`` inert (:func:`sim.display.inert`: a title naming a dilemma, a legend of cluster
    names) and never read as mathtext (a ``$`` in an id is a dollar sign, not a formula that fails to parse)."""
    for t in fig.findobj(Text):
        t.set_text(inert(t.get_text()))
        t.set_parse_math(False)
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for get, put in ((axis.get_major_formatter, axis.set_major_formatter),
                             (axis.get_minor_formatter, axis.set_minor_formatter)):
                if not isinstance(get(), _InertTicks):
                    put(_InertTicks(get()))


def save_png(fig, path: Path, tight: bool = False, **savefig_kw) -> None:
    """Render a figure to PNG and write it atomically (readers never see half a file); closes it.

    Its text is made inert (:func:`inert_text`) before anything draws it: ``tight`` lays it out here, after
    that (``fig.tight_layout()`` draws, and matplotlib's missing-glyph warnings would quote a raw control)."""
    inert_text(fig)
    buf = io.BytesIO()
    with matplotlib.rc_context({"text.parse_math": False}):  # tick labels are made while drawing
        if tight:
            fig.tight_layout()
        fig.savefig(buf, format="png", **savefig_kw)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def axis_limits(metric: str, points: Sequence[float | None]) -> tuple[float, float]:
    """A figure's value axis: its whole range when it is a share or probability, else one that holds zero
    and every value and interval bound; never a zoom onto the spread between runs or generations."""
    known = known_range(metric)
    finite = [x for x in points if x is not None and math.isfinite(x)]
    lo, hi = known if known else (min([0.0, *finite]), max([0.0, *finite]))
    if known and finite:  # a value outside the nominal range is still drawn
        lo, hi = min(lo, *finite), max(hi, *finite)
    span = (hi - lo) or 1.0
    return lo - 0.04 * span, hi + 0.04 * span


def plot_stance_shares(stances: pl.DataFrame, path: Path, title: str = "") -> None:
    """Share choosing action A per cluster over steps, one panel per phase (small multiples)."""
    shares = (stances.filter(pl.col("choice") != "abstain")
              .group_by("step", "cluster", "phase").agg((pl.col("choice") == "a").mean().alias("share_a"))
              .sort("step"))
    clusters = sorted(shares["cluster"].unique().to_list())
    phases = [(k, label) for k, label in PHASES if k in set(shares["phase"].to_list())]
    fig, axes = plt.subplots(1, len(phases), figsize=(3.6 * len(phases) + 1.6, 3.8), dpi=110, sharey=True, squeeze=False)
    colours = plt.get_cmap("tab10")
    steps = sorted(shares["step"].unique().to_list())
    for ax, (phase, label) in zip(axes[0], phases, strict=True):
        for ci, cluster in enumerate(clusters):
            sub = shares.filter((pl.col("cluster") == cluster) & (pl.col("phase") == phase))
            offset = (ci - (len(clusters) - 1) / 2) * 0.04  # keep coinciding points visible
            ax.plot([x + offset for x in sub["step"]], sub["share_a"], "-o", color=colours(ci % 10), label=cluster_label(cluster),
                    alpha=0.85)
        ax.set_title(label, fontsize=10)
        ax.set_xticks(steps)
        ax.set_xlabel("step (one dilemma each)")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("share choosing action A")
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"Stance shares per cluster {title}".strip(), fontsize=10)
    save_png(fig, path, tight=True)
