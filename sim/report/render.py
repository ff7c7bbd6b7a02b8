"""Run reports (``report.md`` + ``report.html`` in every run folder) and ``agora-report`` to compare runs.

A report is built from what the run already wrote (``summary.json``, parquet, PNGs), so it can be
re-rendered from any finished run folder. Both files come from the same sections, each a list of parts
(:mod:`sim.report.blocks`): Markdown for ``report.md``; for ``report.html`` agora's own Markdown goes
through the ``markdown`` package and every other part writes its own escaped HTML.

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

from sim.display import inert
from sim.report.blocks import (  # noqa: F401 (fmt, fmt_interval: the report modules' one import)
    Code,
    Details,
    Figure,
    Grid,
    Items,
    Part,
    Quote,
    Table,
    Term,
    code_span,
    fmt,
    fmt_interval,
    has_interval,
    html_text,
    keys_shown,
    md_escape,
    members_text,
    na_or,
    panel_text,
    to_html,
    to_md,
)
from sim.report.labels import label
from sim.results import Summary
from sim.run.store import atomic_write_bytes
from sim.study_config import StudyConfig

CSS = ("body{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem;line-height:1.45;color:#222}"
       ".table-wrap{overflow-x:auto;max-width:100%;margin:.6rem 0}"
       "table{border-collapse:collapse;font-size:.9rem}"
       "td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}"
       "th{background:#f3f3f3;font-weight:600}.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}th.num{white-space:normal}"
       "img{max-width:100%;height:auto}figure{margin:1rem 0}figcaption{font-style:italic;color:#555;font-size:.9rem}"
       "pre{background:#f6f6f6;padding:.6rem;overflow-x:auto;font-size:.8rem}code{overflow-wrap:anywhere}"
       "blockquote{color:#333;border-left:3px solid #ccc;margin:.3rem 0 .8rem;padding:.1rem .8rem}"
       "blockquote.said,blockquote.dilemma{white-space:pre-wrap}blockquote.dilemma{background:#f7f7f2;border-color:#b9b07a}"
       ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(24rem,1fr));gap:0 1.2rem}"
       "details{margin:.6rem 0}summary{cursor:pointer;font-weight:600}span[title]{text-decoration:underline dotted #999;cursor:help}"
       "nav{display:flex;flex-wrap:wrap;gap:.15rem .9rem;font-size:.9rem}nav a{white-space:nowrap}")


def md_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, digits: int = 3) -> Table:
    """A table part (Markdown and HTML; numbers right-aligned, text left)."""
    return Table(rows, columns, digits)


def headline_table(headline: Mapping[str, Any]) -> Table:
    """Figure, value, and a 95% interval column only when some figure has one (or says why it has none)."""
    rows: list[dict[str, Any]] = []
    for k, v in headline.items():
        value = v.get("value") if isinstance(v, Mapping) else v
        na = v.get("na") if isinstance(v, Mapping) else None
        rows.append({"figure": Term(k), "value": value,
                     "95% interval": f"[{fmt(v['low'])}, {fmt(v['high'])}]" if has_interval(v) else f"n/a: {na}" if na else ""})
    cols = ["figure", "value"] + (["95% interval"] if any(r["95% interval"] for r in rows) else [])
    return Table(rows, cols, right=("95% interval",))


# The config sections a society run reads (the whole config is in summary.json); an experiment registers its own
# (``sections=``, read through sim.experiments.registry.config_part)
CORE_CONFIG = ("seed", "name", "llm", "population", "network", "scenario", "constitution", "sim", "calibration")
LLM_KEYS = {"embedded": ("model_path", "device", "dtype", "max_batch_size", "max_batch_tokens", "prefix_sharing",
                         "prefix_cache_mb", "max_context_tokens"),
            "openai_compatible": ("base_url", "model", "api_key_env", "timeout_s", "max_retries", "backoff_s", "concurrency",
                                  "tokenizer")}


def relevant_config(config: Mapping[str, Any], sections: Sequence[str] = CORE_CONFIG) -> dict[str, Any]:
    """The ``sections`` of ``config`` a run reads (``eval`` too when it evaluates): no other study's settings, no
    other backend's."""
    out: dict[str, Any] = {}
    wanted = (*(sections or CORE_CONFIG), *(("eval",) if config.get("eval", {}).get("suites") else ()))
    for path in wanted:
        top, _, sub = path.partition(".")
        if top not in config:
            continue
        if not sub:
            out[top] = config[top]
        elif sub in config[top]:
            out.setdefault(top, {})
            if isinstance(out[top], dict) and out[top] is not config[top]:
                out[top][sub] = config[top][sub]
    if "study" in out:
        out["study"] = {"kind": config["study"].get("kind"), **out["study"]}
    if "llm" in out:
        other = {k for b, keys in LLM_KEYS.items() if b != out["llm"].get("backend") for k in keys}
        out["llm"] = {k: v for k, v in out["llm"].items() if k not in other}
    return out


def config_block(config: Mapping[str, Any], kind: str = StudyConfig.kind, sections: Sequence[str] = CORE_CONFIG) -> Details:
    """The ``sections`` of ``config`` a run of ``kind`` reads, folded (:func:`relevant_config`)."""
    # the persona reaches every agent's prompt and reading: shown with every kind's sections
    shown = relevant_config(config, [*sections, *(["persona"] if "persona" in config and "persona" not in sections else [])])
    text = yaml.safe_dump(shown, sort_keys=False, width=110, allow_unicode=True)
    return Details(f"Config: the {len(shown)} sections a {kind} run reads ({text.count(chr(10))} lines; "
                   "the whole config is in summary.json)", [Code(text, "yaml")])


def dilemma_texts(out_dir: Path, config: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Each dilemma's text as its judges saw it (``preferences.parquet``'s ``prompt``), by id; without
    preferences, from the run's dilemma file (``scenario.dilemmas``) when it can still be read."""
    p = out_dir / "preferences.parquet"
    if p.is_file():
        df = pl.read_parquet(p, columns=["dilemma_id", "prompt"]).unique("dilemma_id", keep="first", maintain_order=True)
        return dict(df.iter_rows())
    if config is None:
        return {}
    from agents.prompts import dilemma_text
    from scenarios.dilemma import load_dilemmas
    from scenarios.errors import InputError

    try:
        return {d.id: dilemma_text(d) for d in load_dilemmas(config["scenario"]["dilemmas"])}
    except (InputError, OSError, KeyError):  # moved or edited since: the page names the dilemma by id only
        return {}


def transcript_sample(transcripts: pl.DataFrame, dilemmas: Mapping[str, str] | None = None,
                      budgets: Mapping[str, Any] | None = None, per_phase: int = 2) -> list[Part]:
    """The first dilemma (its text), then whole messages: two first answers, one debate group's turns in
    order, one critique with the revision it led to. ``budgets``: ``sim.tokens`` (replies end there)."""
    if transcripts.is_empty():
        return ["_(no transcripts)_"]
    d = transcripts["dilemma_id"][0]
    sub = transcripts.filter((pl.col("dilemma_id") == d) & (pl.col("generation") == transcripts["generation"][0]))
    parts: list[Part] = [f"**Dilemma {code_span(d)}**" + (f" (step {sub['step'][0]})" if "step" in sub.columns else "")]
    if dilemmas and d in dilemmas:
        parts.append(Quote(dilemmas[d], css="dilemma"))
    if budgets:
        parts.append("Replies are shown whole, as generated: at most " + ", ".join(
            f"{v} new tokens for a {k}" for k, v in budgets.items()) + " (`sim.tokens.*`).")
    who = lambda r: f"agent {r['agent_id']} ({cluster(r['cluster'])})"  # noqa: E731
    for r in sub.filter(pl.col("phase") == "stance").head(per_phase).iter_rows(named=True):
        parts.append(Quote(r["text"], f"*first answer* — {who(r)}:"))
    debate = sub.filter(pl.col("phase") == "debate")
    if len(debate):
        g0 = debate["group_id"][0]
        turns = debate.filter(pl.col("group_id") == g0).sort("turn")
        parts.append(f"*debate*, group {g0} ({turns['agent_id'].n_unique()} agents, {len(turns)} turns):")
        parts += [Quote(r["text"], f"turn {r['turn']} — {who(r)}:") for r in turns.iter_rows(named=True)]
    for crit in sub.filter(pl.col("phase") == "critique").head(1).iter_rows(named=True):
        parts.append(Quote(crit["text"], f"*critique* of agent {crit['target_id']}'s answer by {who(crit)}, under "
                                         f"principle {code_span(crit['principle_id'])}:"))
        rev = sub.filter((pl.col("phase") == "revision") & (pl.col("agent_id") == crit["target_id"]))
        parts += [Quote(r["text"], f"*revision* — {who(r)}:") for r in rev.head(1).iter_rows(named=True)]
    return parts


def cluster(name: str) -> str:
    from agents.worldview import cluster_label

    return cluster_label(name)


def figure(fname: str, caption: str) -> Figure:
    return Figure(fname, caption)


def render(out_dir: Path, title: str, sections: Sequence[tuple[str, Part | Sequence[Part]]],
           stem: str = "report") -> list[str]:
    """Write ``<stem>.md`` and ``<stem>.html`` (atomically) from ``(heading, parts)`` sections; a last
    section lists the raw keys behind the labels shown. Headings are plain text (one may name a dilemma);
    both pages are made inert whole, last, so no part can bring a raw control in (:mod:`sim.display`)."""
    sections = [(h, b) for h, b in sections if b]
    keys = list(dict.fromkeys(k for _, b in sections for k in keys_shown(b)))
    if keys:
        col = "key in summary.json and the parquet files"
        rows = [{"shown as": label(k), col: k} for k in keys]
        sections.append(("Keys", Details(f"Data keys behind this page's labels ({len(keys)})", [Table(rows, code=(col,))])))
    md = f"# {md_escape(title)}\n\n" + "\n\n".join(f"## {md_escape(h)}\n\n{to_md(b)}" for h, b in sections) + "\n"
    nav = "<nav>" + "".join(f'<a href="#s{k}">{html_text(h)}</a>' for k, (h, _) in enumerate(sections)) + "</nav>"
    body = "\n".join(f'<h2 id="s{k}">{html_text(h)}</h2>\n{to_html(b)}' for k, (h, b) in enumerate(sections))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>\n"
            f"{nav}\n{body}\n</body></html>\n")
    atomic_write_bytes(out_dir / f"{stem}.md", inert(md).encode())
    atomic_write_bytes(out_dir / f"{stem}.html", inert(page).encode())
    return [f"{stem}.md", f"{stem}.html"]


def standard_sections(summary: Mapping[str, Any] | Summary, intro: str = "") -> list[tuple[str, Part | Sequence[Part]]]:
    """Opening sections every run report shares: what was run, and its headline figures."""
    if isinstance(summary, Summary):
        summary = summary.to_json()
    wall = summary.get("wall_seconds")
    what = (f"Run `{summary.get('run_id', '?')}` ({summary.get('kind', StudyConfig.kind)}), "
            f"{'n/a' if wall is None else f'{wall:.1f}'} s wall time.")
    return [("Summary", (intro + "\n\n" if intro else "") + what),
            ("Key figures", headline_table(summary.get("headline", {}))),
            ("Label quality", label_quality_section(summary.get("label_quality"), _gate_off(summary)))]


def _gate_off(summary: Mapping[str, Any]) -> str:
    """Why a run has no label-quality figures: the setting, or an experiment that reads no labels."""
    calibration = (summary.get("config") or {}).get("calibration") or {}
    return "`calibration.enabled=false`" if calibration.get("enabled", True) is False else \
        "this experiment reads no labels: its run skips the label-quality gate"


def label_quality_section(block: Mapping[str, Any] | None, why: str = "`calibration.enabled=false`") -> str:
    """The calibration slice's figures: can this run's labels be trusted?"""
    if not block:
        return f"Not measured ({why})."
    from sim.gate.calibration import lines

    verdict = {True: "The judge's accuracy interval clears chance.",
               False: "**The judge's accuracy interval does not clear chance: its labels are not shown to carry "
                      "information.**", None: ""}[block.get("judge_clears_chance")]
    return (f"The run's readers on a seeded slice of {block['source']}, {block['seconds']} s. {verdict}\n\n"
            + "\n".join(f"- {line}" for line in lines(block)))


def constitution_versions(versions: Sequence[Mapping[str, Any]]) -> list[Part]:
    """Each version's judging principles (drafted by agents: untrusted text) with their approval."""
    parts: list[Part] = []
    for v in versions:
        parts.append(f"**{code_span(v['tag'])}** (before generation {v['generation']})")
        parts.append(Items([(p["text"], f"(approval {fmt(p.get('approval'), 2)})" if p.get("approval") is not None else "")
                            for p in v["judge"]]))
    return parts
