"""agora-report: one page comparing finished runs (a sweep's seeds, or any folders)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from sim.report.labels import label as label_of
from sim.report.plots import axis_limits, error_bars, save_png
from sim.report.render import (
    Grid,
    Term,
    code_span,
    figure,
    fmt,
    md_table,
    render,
)
from sim.results import Interval, Summary


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders (holding ``summary.json``) at or below each path, in a stable order."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: no such directory")
        found = [p] if (p / "summary.json").is_file() else sorted(  # sweep points by number (2 before 10), then names
            (s.parent for s in p.rglob("summary.json")), key=lambda q: [(0, int(x), "") if x.isdigit() else (1, 0, x)
                                                                        for x in q.parts])
        if not found:
            raise FileNotFoundError(f"{p}: no finished run (no summary.json at or below it)")
        runs += [r for r in found if r not in runs]
    return runs


RUN_MARKS = (".hydra", "cli.log", "checkpoint.json", ".agora.lock")  # what a run folder holds before its summary.json


@dataclass(frozen=True)
class Unfinished:
    """A run that did not finish: its folder (or, for a sweep point that never started, the sweep folder and
    the point's number), the overrides that made it, and why it has no ``summary.json``."""

    folder: str
    label: str
    reason: str


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def unfinished_runs(paths: Sequence[str | Path]) -> list[Unfinished]:
    """Folders at or below each path that a run made (Hydra's ``.hydra/``, ``cli.log``, a checkpoint, a lock)
    but that hold no ``summary.json``, each with its reason (:func:`why_unfinished`); folders inside a
    finished or an unfinished run are theirs, not runs."""
    out: list[Unfinished] = []
    for root in map(Path, paths):
        if not root.is_dir():
            continue
        stack = [root]
        while stack:
            d = stack.pop()
            if (d / "summary.json").is_file() or (d / "eval.json").is_file():  # a finished run, an agora-eval folder
                continue
            if any((d / m).exists() for m in RUN_MARKS):
                out.append(Unfinished(str(d), _overrides_label(d), why_unfinished(d)))
                continue
            try:
                kids = sorted((k for k in d.iterdir() if k.is_dir() and not k.is_symlink()), key=_natural, reverse=True)
            except OSError:
                continue
            stack += kids
    return sorted({u.folder: u for u in out}.values(), key=lambda u: _natural(Path(u.folder)))


def _natural(p: Path) -> list[Any]:
    return [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in p.parts]


def _overrides_label(run: Path) -> str:
    ov = run / ".hydra" / "overrides.yaml"
    try:
        items = yaml.safe_load(ov.read_text()) if ov.is_file() else []
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return ""
    return " ".join(str(o) for o in items or [] if not str(o).startswith(("hydra", "resume=")))


_STOP_LINE = re.compile(r"\b(agora(?:-eval)?): (error: .*|interrupted.*)")


def last_agora_line(log: Path) -> tuple[str, str] | None:
    """The last line of a run's ``cli.log`` that says why it stopped (``agora: error: ...``, ``agora-eval: interrupted
    ...``: the CLI writes it there as on the console): the command and the line without its prefix; or None."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - 1_000_000))  # the tail: a long run's log can be large
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    found = [m.groups() for ln in text.splitlines() if (m := _STOP_LINE.search(ln))]
    return (found[-1][0], found[-1][1].strip()) if found else None


def why_unfinished(run: Path) -> str:
    """Why a run folder has no ``summary.json``: running, failed (its error), interrupted or killed (its
    checkpoint kept), or stopped before any step was kept."""
    from sim.run.checkpoint import CHECKPOINT
    from sim.run.lock import holder

    who = holder(run)
    if who is not None:
        return f"still running ({who})"
    stop = last_agora_line(run / "cli.log")
    prog, said = stop if stop else (_command_of(run), None)
    kept = (run / CHECKPOINT).is_file()
    resume = f"; {prog} resume={run} continues it" if kept else ""
    if said and said.startswith("error: "):
        return f"failed: {said.removeprefix('error: ')}"
    if said:
        return f"{said.split(' (', 1)[0]}{resume}"  # "interrupted"
    if kept:
        return f"killed: its checkpoint is kept, no summary.json{resume}"
    return "never started, or killed before its first checkpoint (no checkpoint, no error in cli.log)"


def _command_of(run: Path) -> str:
    """The command that continues a stopped run: ``agora-eval`` for its own runs (their checkpoint's kind), else agora."""
    from sim.run.checkpoint import CHECKPOINT

    try:
        kind = json.loads((run / CHECKPOINT).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return "agora"
    return "agora-eval" if kind == "eval" else "agora"


class NotARun(ValueError):
    """A ``summary.json`` that is not a finished agora run's."""


def read_summary(run: Path) -> dict[str, Any]:
    """A finished run's ``summary.json``: a JSON object with the ``run_id`` and ``kind`` every run writes."""
    path = run / "summary.json"
    try:
        s = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotARun(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(s, dict) or not {"run_id", "kind"} <= s.keys():
        raise NotARun(f"{path}: not an agora run's summary (a JSON object with run_id and kind)")
    return s


def run_label(run: Path, run_id: str) -> str:
    """The Hydra overrides that made the run (what differs in a sweep), else its run id."""
    ov = run / ".hydra" / "overrides.yaml"
    if ov.is_file():
        items = [o for o in (yaml.safe_load(ov.read_text()) or []) if not str(o).startswith(("hydra", "resume="))]
        if items:
            return " ".join(map(str, items))
    return run_id or run.name


def comparison_table(runs: Sequence[Path]) -> pl.DataFrame:
    """One row per run: label, kind, wall time, and each headline figure (value, low, high)."""
    rows = []
    for r in runs:
        s = Summary.from_json(read_summary(r))  # what every run's summary holds, whatever its kind
        row: dict[str, Any] = {"run": str(r), "label": run_label(r, s.run_id), "kind": s.kind,
                               "seed": s.config.get("seed"), "wall_seconds": s.wall_seconds}
        for k, v in s.headline.items():
            i = v if isinstance(v, Interval) else Interval(value=v)
            row[k] = i.value
            row[f"{k} low"], row[f"{k} high"] = i.low, i.high
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
    """Across seeds of the same setting, one row per (setting, figure): runs, mean, sd, min and max
    (long, so the table stays as narrow as the page however many figures there are). None when no
    setting repeats."""
    label = pl.col("label").str.replace_all(r"(^| )seed=\S+", "").str.strip_chars()
    grouped = df.with_columns(pl.when(label == "").then(pl.lit("(one setting)")).otherwise(label).alias("setting"))
    if grouped.group_by("setting").len()["len"].max() < 2:
        return None
    long = grouped.unpivot(_metrics(df), index="setting", variable_name="figure").drop_nulls("value")
    return (long.group_by("setting", "figure", maintain_order=True)
            .agg(pl.len().alias("runs"), pl.col("value").mean().alias("mean"), pl.col("value").std().alias("sd"),
                 pl.col("value").min().alias("min"), pl.col("value").max().alias("max")))


def plot_comparison(df: pl.DataFrame, out_dir: Path) -> list[str]:
    """One dot plot per headline figure: a row per run, interval bars where the run reported them."""
    from sim.report.plots import plt

    written = []
    for m in _metrics(df):
        sub = df.filter(pl.col(m).is_not_null())
        if sub.is_empty():
            continue
        fig, ax = plt.subplots(figsize=(5.6, 0.42 * len(sub) + 1.5), dpi=100)  # two to a row on the page
        y = list(range(len(sub)))
        vals = sub[m].to_list()
        lo = sub[f"{m} low"].to_list() if f"{m} low" in sub.columns else [None] * len(sub)
        hi = sub[f"{m} high"].to_list() if f"{m} high" in sub.columns else [None] * len(sub)
        ax.errorbar(vals, y, xerr=error_bars(vals, lo, hi), fmt="o", capsize=3)
        left, right = axis_limits(m, [*vals, *lo, *hi])
        ax.set_xlim(left, right)
        if left < 0 < right:
            ax.axvline(0, color="grey", lw=0.8)
        for v, yy in zip(vals, y, strict=True):  # the number itself: differences the axis does not magnify
            ax.annotate(fmt(v), (v, yy), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=7)
        ax.set_yticks(y, [s[:48] for s in sub["label"].to_list()], fontsize=8)
        ax.set_ylim(len(sub) - 0.4, -0.7)
        ax.ticklabel_format(axis="x", useOffset=False)
        ax.set_title(label_of(m), fontsize=10)
        ax.grid(alpha=0.3, axis="x")
        fname = "compare_" + "".join(ch if ch.isalnum() else "_" for ch in m).strip("_") + ".png"
        save_png(fig, out_dir / fname, tight=True)
        written.append(fname)
    return written


def compare(paths: Sequence[str | Path], out_dir: Path, unfinished: Sequence[Unfinished] = ()) -> Path:
    """Write ``report.md``/``report.html``, ``comparison.parquet`` and plots comparing the runs; ``unfinished``
    (see :func:`unfinished_runs`) are listed in a table with their reasons."""
    from sim.run.store import write_parquet

    runs = find_runs(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = comparison_table(runs)
    write_parquet(df, out_dir / "comparison.parquet")
    plots = plot_comparison(df, out_dir)
    records = df.to_dicts()
    names: list[str] = []
    for r in records:  # one column per run: two runs of one setting and seed get a number
        names.append(next(n for k in range(1, len(records) + 2) if (n := r["label"] + (f" ({k})" if k > 1 else ""))
                          not in names))
        r["label"] = names[-1]
    listing = [{"label": r["label"], "kind": r["kind"], "seed": r["seed"], "wall_seconds": r["wall_seconds"],
                "folder": r["run"]} for r in records]
    by_figure = [{"figure": Term(m), **{r["label"]: {"value": r[m], "low": r.get(f"{m} low"), "high": r.get(f"{m} high")}
                                        for r in records}} for m in _metrics(df)]
    common = df["common"][0] if len(df) else ""
    told = f"{plural(len(runs), 'run')} compared" + (f"; {len(unfinished)} did not finish (below)" if unfinished else "")
    sections = [("Runs", [f"{told}." + (f" Settings shared by all: {code_span(common)}." if common else ""),
                          md_table(listing)]),
                ("Headline figures", ["One column per run; 95% intervals in brackets where the run gives them.",
                                      md_table(by_figure)])]
    seeds = seed_summary(df)
    if seeds is not None:
        rows = [{"figure": Term(r.pop("figure")), **r} for r in seeds.to_dicts()]  # by figure, its settings together
        sections.append(("Across seeds", ["Per setting, each figure's mean, SD, lowest and highest over its seeds.",
                                          md_table(rows)]))
    shown = [m for m in _metrics(df) if df[m].is_not_null().any()]
    sections.append(("Plots", Grid([figure(p, label_of(m)) for p, m in zip(plots, shown, strict=True)])))
    if unfinished:
        shared = set(common.split(" ")) if common else set()  # listed once under Runs
        rows = [{"folder": u.folder, "overrides": " ".join(t for t in u.label.split(" ") if t not in shared) or u.label,
                 "reason": u.reason} for u in unfinished]
        sections.insert(1, ("Did not finish", ["Runs with no summary.json, left out of the comparison.", md_table(rows)]))
    render(out_dir, f"agora comparison of {plural(len(runs), 'run')}", sections)
    return out_dir / "report.md"
