"""Run reports (``report.md`` + ``report.html`` in every run folder) and ``agora-report`` to compare runs.

A report is built from what the run already wrote (``summary.json``, parquet, PNGs), so it can be
re-rendered from any finished run folder. Markdown is the source; the HTML is the same text rendered
by the ``markdown`` package, with the plots beside it as relative links.

Every ``summary.json`` carries ``kind`` and ``headline``: ``{metric: {"value", "low", "high"}}``
(interval bounds optional). ``agora-report`` compares runs by those alone, so a new experiment
joins the comparison by filling its headline.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from sim.store import atomic_write_bytes

CSS = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}"
       "table{border-collapse:collapse;font-size:.9rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}"
       "th{background:#f3f3f3}img{max-width:100%}pre{background:#f6f6f6;padding:.6rem;overflow-x:auto;font-size:.8rem}"
       "blockquote{color:#444;border-left:3px solid #ccc;margin-left:0;padding-left:.8rem}")


def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, float):
        return f"{x:.2e}" if 0 < abs(x) < 10 ** -digits else f"{x:.{digits}f}"  # small effects stay visible
    return str(x)


def fmt_interval(v: Any, digits: int = 3) -> str:
    """``0.512 [0.401, 0.630]`` from a headline entry (a number or ``{"value","low","high"}``)."""
    if not isinstance(v, Mapping):
        return fmt(v, digits)
    s = fmt(v.get("value"), digits)
    if v.get("low") is not None and v.get("high") is not None:
        s += f" [{fmt(v['low'], digits)}, {fmt(v['high'], digits)}]"
    return s


def md_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 3) -> str:
    """A Markdown table (pipes in cells escaped). Hand-written: polars has no Markdown writer and
    pandas' needs ``tabulate``, a dependency for three lines."""
    if not rows:
        return "_(no rows)_"
    cols = list(columns or rows[0].keys())
    cell = lambda v: fmt_interval(v, digits).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def headline_table(headline: Mapping[str, Any]) -> str:
    return md_table([{"figure": k, "value [95% interval]": v} for k, v in headline.items()])


def config_block(config: Mapping[str, Any]) -> str:
    return "```yaml\n" + yaml.safe_dump(dict(config), sort_keys=False, width=110).strip() + "\n```"


def quote(text: str, limit: int = 600) -> str:
    """Agent text as a Markdown blockquote, HTML-escaped (it is untrusted: no raw HTML or links run)."""
    t = " ".join(str(text).split())
    t = t[:limit] + (" …" if len(t) > limit else "")
    return "> " + html.escape(t).replace("[", "&#91;").replace("*", "&#42;").replace("_", "&#95;")


def transcript_sample(transcripts: pl.DataFrame, n_dilemmas: int = 1, per_phase: int = 2) -> str:
    """The first dilemma's messages, a few per phase, in order."""
    if transcripts.is_empty():
        return "_(no transcripts)_"
    parts = []
    for d in transcripts["dilemma_id"].unique(maintain_order=True).to_list()[:n_dilemmas]:
        parts.append(f"**Dilemma `{d}`**")
        sub = transcripts.filter(pl.col("dilemma_id") == d)
        for phase in sub["phase"].unique(maintain_order=True).to_list():
            for r in sub.filter(pl.col("phase") == phase).head(per_phase).iter_rows(named=True):
                who = f"agent {r['agent_id']} ({r['cluster']})"
                parts.append(f"*{phase}* — {who}:\n\n{quote(r['text'])}")
    return "\n\n".join(parts)


def figure(fname: str, caption: str) -> str:
    return f"![{caption}]({fname})\n\n*{caption}*"


def render(out_dir: Path, title: str, sections: Sequence[tuple[str, str]], stem: str = "report") -> list[str]:
    """Write ``<stem>.md`` and ``<stem>.html`` (atomically) from ``(heading, markdown)`` sections."""
    import markdown

    md = f"# {title}\n\n" + "\n\n".join(f"## {h}\n\n{body}" for h, body in sections if body) + "\n"
    body = markdown.markdown(md, extensions=["tables", "fenced_code"])
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")
    atomic_write_bytes(out_dir / f"{stem}.md", md.encode())
    atomic_write_bytes(out_dir / f"{stem}.html", page.encode())
    return [f"{stem}.md", f"{stem}.html"]


def standard_sections(summary: Mapping[str, Any], intro: str = "") -> list[tuple[str, str]]:
    """Opening sections every run report shares: what was run, and its headline figures."""
    what = (f"Run `{summary.get('run_id', '?')}` ({summary.get('kind', 'society')}), "
            f"{fmt(summary.get('wall_seconds'), 0)} s wall time.")
    return [("Summary", (intro + "\n\n" if intro else "") + what),
            ("Key figures", headline_table(summary.get("headline", {}))),
            ("Label quality", label_quality_section(summary.get("label_quality")))]


def label_quality_section(block: Mapping[str, Any] | None) -> str:
    """The calibration slice's figures: can this run's labels be trusted?"""
    if not block:
        return "Not measured (`calibration.enabled=false`)."
    from alignment.calibration import lines

    verdict = {True: "The judge's accuracy interval clears chance.",
               False: "**The judge's accuracy interval does not clear chance: its labels are not shown to carry "
                      "information.**", None: ""}[block.get("judge_clears_chance")]
    return (f"The run's readers on a seeded slice of {block['source']}, {block['seconds']} s. {verdict}\n\n"
            + "\n".join(f"- {line}" for line in lines(block)))


def society_report(out_dir: Path, summary: Mapping[str, Any]) -> list[str]:
    """``report.md``/``report.html`` of a society run."""
    c, t, j = summary["counts"], summary["throughput"], summary["judge"]
    counts = md_table([{"what": k.replace("_", " "), "count": v} for k, v in c.items()])
    phase = md_table([{"phase": k, "seconds": v} for k, v in t.get("phase_seconds", {}).items()])
    judge = md_table([{"figure": k.replace("_", " "), "value": v} for k, v in j.items()])
    by_cluster = md_table([{"cluster": k, "share choosing A": v["share_a"], "mean P(A)": v["p_a"]}
                           for k, v in summary["steerability"]["by_cluster"].items()])
    sections = standard_sections(summary, "A society debated moral dilemmas, critiqued and revised its answers "
                                          "under a constitution, and judged pairs of answers into preference data.")
    sections += [("Counts", counts), ("Where the time went", phase), ("The judges", judge),
                 ("Stances by cluster", by_cluster + "\n\n" + figure("stance_shares.png", "Share choosing action A per "
                                                                                          "cluster, by phase"))]
    if "eval" in summary:
        from alignment.evaluate import report_lines

        lines = [f"- {x.strip()}" for x in report_lines(summary["eval"]) if x.strip()]
        sections.append(("Validity against external data", "\n".join(lines)))
    tr = out_dir / "transcripts.parquet"
    if tr.exists():
        sections.append(("Sample transcript", transcript_sample(pl.read_parquet(tr))))
    sections.append(("Config", config_block(summary["config"])))
    return render(out_dir, f"agora report — {summary['run_id']}", sections)


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


def constitution_versions(versions: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for v in versions:
        lines = "\n".join(f"{k}. {html.escape(p['text'])} (approval {fmt(p.get('approval'), 2)})"
                          for k, p in enumerate(v["judge"], start=1))
        parts.append(f"**{v['tag']}** (before generation {v['generation']})\n\n{lines}")
    return "\n\n".join(parts)


# -- agora-report ---------------------------------------------------------------------------------
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
    from sim.plots import plt, save_png

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


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="agora-report", description="Compare finished agora runs or a --multirun sweep "
                                 "side by side (report.md, report.html, comparison.parquet, plots).")
    ap.add_argument("dirs", nargs="+", help="run folders, or folders holding runs (a sweep's multirun/... folder)")
    ap.add_argument("-o", "--out", help="output folder (default: the folder given, when one; else ./agora_report)")
    args = ap.parse_args(argv)
    single_parent = len(args.dirs) == 1 and not (Path(args.dirs[0]) / "summary.json").is_file()
    out = Path(args.out) if args.out else Path(args.dirs[0]) if single_parent else Path("agora_report")
    try:
        path = compare(args.dirs, out)
    except (FileNotFoundError, json.JSONDecodeError, KeyError) as exc:
        print(f"agora-report: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"agora-report: compared {len(find_runs(args.dirs))} runs -> {path}")


if __name__ == "__main__":
    main()
