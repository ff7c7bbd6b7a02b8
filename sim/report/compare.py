"""agora-report: one page comparing finished runs (a sweep's seeds, or any folders)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from sim.report.plots import save_png
from sim.report.render import (
    figure,
    md_table,
    render,
)


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders (holding ``summary.json``) at or below each path, in a stable order."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: no such directory")
        found = [p] if (p / "summary.json").is_file() else sorted(
            (s.parent for s in p.rglob("summary.json")), key=lambda q: [int(x) if x.isdigit() else x for x in q.parts])
        if not found:
            raise FileNotFoundError(f"{p}: no finished run (no summary.json at or below it)")
        runs += [r for r in found if r not in runs]
    return runs


def run_label(run: Path, summary: Mapping[str, Any]) -> str:
    """The Hydra overrides that made the run (what differs in a sweep), else its run id."""
    ov = run / ".hydra" / "overrides.yaml"
    if ov.is_file():
        items = [o for o in (yaml.safe_load(ov.read_text()) or []) if not str(o).startswith(("hydra", "resume="))]
        if items:
            return " ".join(map(str, items))
    return str(summary.get("run_id", run.name))


def comparison_table(runs: Sequence[Path]) -> pl.DataFrame:
    """One row per run: label, kind, wall time, and each headline figure (value, low, high)."""
    rows = []
    for r in runs:
        s = json.loads((r / "summary.json").read_text())
        row: dict[str, Any] = {"run": str(r), "label": run_label(r, s), "kind": s.get("kind", "society"),
                               "seed": s.get("config", {}).get("seed"), "wall_seconds": s.get("wall_seconds")}
        for k, v in s.get("headline", {}).items():
            v = v if isinstance(v, Mapping) else {"value": v}
            row[k] = v.get("value")
            row[f"{k} low"], row[f"{k} high"] = v.get("low"), v.get("high")
        rows.append(row)
    df = pl.DataFrame(rows, infer_schema_length=None)
    tokens = [set(lbl.split(" ")) for lbl in df["label"].to_list()]
    common = set.intersection(*tokens) if len(tokens) > 1 else set()
    if common:  # label each run by what differs; the shared settings are listed once in the report
        short = [" ".join(t for t in lbl.split(" ") if t not in common) or lbl for lbl in df["label"].to_list()]
        df = df.with_columns(pl.Series("label", short))
    return df.with_columns(pl.lit(" ".join(sorted(common))).alias("common"))


def _metrics(df: pl.DataFrame) -> list[str]:
    fixed = {"run", "label", "kind", "seed", "wall_seconds", "common"}
    return [c for c in df.columns if c not in fixed and not c.endswith((" low", " high")) and df[c].dtype.is_numeric()]


def seed_summary(df: pl.DataFrame) -> pl.DataFrame | None:
    """Across seeds of the same setting: mean, sd and n of each figure (None when no setting repeats)."""
    label = pl.col("label").str.replace_all(r"(^| )seed=\S+", "").str.strip_chars()
    grouped = df.with_columns(label.alias("setting"))
    if grouped.group_by("setting").len()["len"].max() < 2:
        return None
    aggs = []
    for m in _metrics(df):
        aggs += [pl.col(m).mean().alias(f"{m} mean"), pl.col(m).std().alias(f"{m} sd")]
    return grouped.group_by("setting", maintain_order=True).agg(pl.len().alias("runs"), *aggs)


def plot_comparison(df: pl.DataFrame, out_dir: Path) -> list[str]:
    """One dot plot per headline figure: a row per run, interval bars where the run reported them."""
    from sim.report.plots import plt

    written = []
    for m in _metrics(df):
        sub = df.filter(pl.col(m).is_not_null())
        if sub.is_empty():
            continue
        fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(sub) + 1.4), dpi=100)
        y = list(range(len(sub)))
        vals = sub[m].to_list()
        lo = sub[f"{m} low"].to_list() if f"{m} low" in sub.columns else [None] * len(sub)
        hi = sub[f"{m} high"].to_list() if f"{m} high" in sub.columns else [None] * len(sub)
        err = [[v - (low if low is not None else v) for v, low in zip(vals, lo, strict=True)],
               [(high if high is not None else v) - v for v, high in zip(vals, hi, strict=True)]]
        ax.errorbar(vals, y, xerr=err, fmt="o", capsize=3)
        ax.set_yticks(y, [s[:48] for s in sub["label"].to_list()], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(m, fontsize=10)
        ax.grid(alpha=0.3, axis="x")
        fig.tight_layout()
        fname = "compare_" + "".join(ch if ch.isalnum() else "_" for ch in m).strip("_") + ".png"
        save_png(fig, out_dir / fname)
        written.append(fname)
    return written


def compare(paths: Sequence[str | Path], out_dir: Path) -> Path:
    """Write ``report.md``/``report.html``, ``comparison.parquet`` and plots comparing the runs."""
    from sim.store import write_parquet

    runs = find_runs(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = comparison_table(runs)
    write_parquet(df, out_dir / "comparison.parquet")
    plots = plot_comparison(df, out_dir)
    shown = ["label", "kind", "wall_seconds"] + _metrics(df)
    rows = []
    for r in df.iter_rows(named=True):
        row = {c: r[c] for c in shown if c in r}
        for m in _metrics(df):
            row[m] = {"value": r[m], "low": r.get(f"{m} low"), "high": r.get(f"{m} high")}
        rows.append(row)
    common = df["common"][0] if len(df) else ""
    sections = [("Runs", f"{len(runs)} runs: " + ", ".join(f"`{r}`" for r in runs)
                 + (f"\n\nSettings shared by all: `{common}`" if common else "")),
                ("Headline figures (95% intervals where the run gives them)", md_table(rows, shown))]
    seeds = seed_summary(df)
    if seeds is not None:
        sections.append(("Across seeds", md_table(seeds.to_dicts())))
    sections.append(("Plots", "\n\n".join(figure(p, p.removeprefix("compare_").removesuffix(".png")) for p in plots)))
    render(out_dir, f"agora comparison of {len(runs)} runs", sections)
    return out_dir / "report.md"
