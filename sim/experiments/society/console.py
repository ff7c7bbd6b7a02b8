"""What ``agora`` prints when a society run or the generations loop finishes."""

from __future__ import annotations

from pathlib import Path

from sim.display import inert_lines


def society_lines(summary: dict, out: Path) -> str:
    """What ``agora`` prints when a society run finishes."""
    from sim.report.console import quality_lines  # here: the gate's lines load Mesa and scipy, the eval's matplotlib
    from sim.report.eval import report_lines as eval_lines

    c, t, j, s = summary["counts"], summary["throughput"], summary["judge"], summary["steerability"]
    fmt = lambda x, p=3: "n/a" if x is None else f"{x:.{p}f}"  # noqa: E731
    return inert_lines([
        f"agora: run {summary['run_id']} finished in {summary['wall_seconds']:.0f} s -> {out}",
        f"  {c['agents']} agents x {c['steps']} steps: {c['stances']} stances "
        f"({c['unparsed_stance_texts']} of {c['initial_stances']} free-text replies unparseable), "
        f"{c['preferences']} preferences",
        f"  throughput: {fmt(t['stances_per_s'], 2)} stances/s, {fmt(t['preferences_per_s'], 2)} preferences/s",
        f"  judge: position-flip rate {fmt(j['position_flip_rate'], 2)}, "
        f"mean |p_a - 0.5| {fmt(j['label_informativeness_mean_abs_p_minus_half'])}",
        f"  steerability: mean spread of share choosing A across clusters {fmt(s['mean_cluster_share_spread'], 2)}"
        f"{spread_vs_null(s, 'share_spread')}, of P(A) {fmt(s['mean_cluster_p_a_spread'], 4)}{spread_vs_null(s, 'p_a_spread', 4)}",
    ] + [f"  label quality: {line}" for line in quality_lines(summary.get("label_quality"))]
      + (["  " + line for line in eval_lines(summary["eval"]) if line] if "eval" in summary else []))


def spread_vs_null(steer: dict, key: str, digits: int = 2) -> str:
    """`` [low, high] (shuffled-cluster null mean m, 95th pct q; p x)`` for a steerability spread (empty for a run
    made before they were computed; each part shown only when computable)."""
    fmt = lambda x: "n/a" if x is None else f"{x:.{digits}f}"  # noqa: E731
    ci, null = steer.get(f"{key}_interval"), steer.get("shuffled_clusters", {}).get(key)
    out = f" [{fmt(ci['low'])}, {fmt(ci['high'])}]" if ci and ci.get("low") is not None else ""
    if null and null.get("p") is not None:
        out += f" (shuffled-cluster null mean {fmt(null['mean'])}, 95th pct {fmt(null['p95'])}; p {null['p']:.3f})"
    return out


def generations_lines(summary: dict, out: Path) -> str:
    """Per-generation metrics as a table: one row per metric, one column per generation."""
    rows = summary["generations"]
    keys = [k for k in rows[0] if k not in ("generation", "na")]
    for r in rows[1:]:
        keys += [k for k in r if k not in keys and k not in ("generation", "na")]
    width = max(len(k) for k in keys)
    lines = [f"agora: {len(rows)} generations in {summary['wall_seconds']:.0f} s -> {out}",
             f"  {'metric':<{width}}  " + "  ".join(f"{'gen ' + str(r['generation']):>12}" for r in rows)]
    for k in keys:
        cells = []
        for r in rows:
            v = r.get(k)
            cells.append(f"{v:>12.3f}" if isinstance(v, float) else f"{str(v if v is not None else '-')[:12]:>12}")
        lines.append(f"  {k:<{width}}  " + "  ".join(cells))
    return inert_lines(lines)
