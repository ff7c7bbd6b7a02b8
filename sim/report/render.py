"""Run reports (``report.md`` + ``report.html`` in every run folder) and ``agora-report`` to compare runs.

A report is built from what the run already wrote (``summary.json``, parquet, PNGs), so it can be
re-rendered from any finished run folder. Markdown is the source; the HTML is the same text rendered
by the ``markdown`` package, with the plots beside it as relative links.

Every ``summary.json`` carries ``kind`` and ``headline``: ``{metric: {"value", "low", "high"}}``
(interval bounds optional). ``agora-report`` compares runs by those alone, so a new experiment
joins the comparison by filling its headline.
"""

from __future__ import annotations

import html
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
    from sim.calibration import lines

    verdict = {True: "The judge's accuracy interval clears chance.",
               False: "**The judge's accuracy interval does not clear chance: its labels are not shown to carry "
                      "information.**", None: ""}[block.get("judge_clears_chance")]
    return (f"The run's readers on a seeded slice of {block['source']}, {block['seconds']} s. {verdict}\n\n"
            + "\n".join(f"- {line}" for line in lines(block)))






def constitution_versions(versions: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for v in versions:
        lines = "\n".join(f"{k}. {html.escape(p['text'])} (approval {fmt(p.get('approval'), 2)})"
                          for k, p in enumerate(v["judge"], start=1))
        parts.append(f"**{v['tag']}** (before generation {v['generation']})\n\n{lines}")
    return "\n\n".join(parts)


# -- agora-report ---------------------------------------------------------------------------------
