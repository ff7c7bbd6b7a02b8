"""A society run's report."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from sim.report.render import (
    config_block,
    figure,
    md_table,
    render,
    standard_sections,
    transcript_sample,
)


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
        from sim.report.eval import report_lines

        lines = [f"- {x.strip()}" for x in report_lines(summary["eval"]) if x.strip()]
        sections.append(("Validity against external data", "\n".join(lines)))
    tr = out_dir / "transcripts.parquet"
    if tr.exists():
        sections.append(("Sample transcript", transcript_sample(pl.read_parquet(tr))))
    sections.append(("Config", config_block(summary["config"])))
    return render(out_dir, f"agora report — {summary['run_id']}", sections)
