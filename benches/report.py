"""Render ``benches/RESULTS.md`` from pytest-benchmark's JSON (and the profiler's JSON if present).

    python -m benches.report benches/results.json [more.json ...] [--profile benches/profile.json]
        [--scale benches/scale.json] [--server benches/server.json] [--out benches/RESULTS.md]

Several results files are merged in order: a benchmark of a later file replaces the one of the same name
in an earlier file (a part of the suite re-run alone), and each row says which run measured it.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return str(x)


def _spread(mean: Any, sd: Any, rounds: Any) -> str:
    """``61.5 ± 0.4 s, 3 rounds`` (the sample standard deviation over rounds); ``262 s, 1 round`` has none."""
    n = f"{rounds} round" + ("s" if rounds != 1 else "") if rounds else ""
    body = f"{mean} ± {sd} s" if sd is not None else f"{mean} s"
    return f"{body}, {n}" if n else body


def throughput_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| workload | items | agora: rate (seconds, mean ± sd over rounds) | baseline | ratio of means | target | "
           "baseline is |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        target = "" if r.get("target") is None else f"≥ {r['target']}× " + ("✅" if r["ratio"] >= r["target"] else "❌")
        ratio = f"**{r['ratio']}×**" + (f" ± {r['ratio_sd']}" if r.get("ratio_sd") is not None else "")
        out.append(f"| {r['name']} ({r['unit']}) | {r['items']} | "
                   f"{_fmt(r['agora_rate'])} ({_spread(r['agora_s'], r.get('agora_sd'), r.get('agora_rounds'))}) | "
                   f"{_fmt(r['baseline_rate'])} ({_spread(r['baseline_s'], r.get('baseline_sd'), r.get('baseline_rounds'))}) | "
                   f"{ratio} | {target} | {r['baseline']} |")
    return out


def likelihood_table(rows: list[dict[str, Any]]) -> list[str]:
    """The likelihood readings against lm-evaluation-harness's HFLM and the naive loop (``benches/test_likelihood.py``)."""
    out = ["| workload | items | agora: rate (s) | lm-eval HFLM: rate (s) | naive loop: rate (s) | agora / HFLM | "
           "agora / naive | target | max \\|Δ log-lik\\| | tokens forwarded: agora / HFLM |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        target = "" if r.get("target") is None else f"≥ {r['target']}× " + ("✅" if r["ratio"] >= r["target"] else "❌")
        naive = f"**{r['ratio_vs_naive']}×**" + (f" ± {r['ratio_vs_naive_sd']}" if r.get("ratio_vs_naive_sd") is not None else "")
        out.append(f"| {r['name']} ({r['unit']}) | {r['items']} | "
                   f"{_fmt(r['agora_rate'])} ({_spread(r['agora_s'], r.get('agora_sd'), r.get('agora_rounds'))}) | "
                   f"{_fmt(r['baseline_rate'])} ({_spread(r['baseline_s'], r.get('baseline_sd'), r.get('baseline_rounds'))}) | "
                   f"{_fmt(r['naive_rate'])} ({_spread(r['naive_s'], None, r.get('naive_rounds'))}) | "
                   f"**{r['ratio']}×**" + (f" ± {r['ratio_sd']}" if r.get("ratio_sd") is not None else "") + f" | {naive} | "
                   f"{target} | {r['max_abs_logprob_diff']:.1e} | {r['tokens_forwarded']:,} / {r['baseline_tokens']:,} |")
    return out


def server_section(server: dict[str, Any]) -> list[str]:
    """``benches/server_step.py``'s figures: a whole default step, agora's embedded engine against llama.cpp's server."""
    s = server["summary"]
    a, b = s["agora"], s["llama.cpp"]
    n = len(server["rounds"])

    def step(x: dict[str, Any]) -> str:
        return f"{x['step_s']} s" + (f" ± {x['step_sd']}" if x.get("step_sd") is not None else "")

    lines = ["## A whole default step: agora's engine against llama.cpp's server", "",
             f"`{server['command']}` ({server['datetime']}): `agora sim.steps=1` with {server['readers']} readers, "
             f"{n} round{'s' if n != 1 else ''} alternating the two sides; llama-cpp-python {server['llama_cpp_python']} "
             f"serving the same Q4_1 GGUF with {server['threads']} threads on 127.0.0.1. Seconds are the step's phases "
             "(from each run's `summary.json`); mean ± sd over rounds.", "",
             "| | agora (embedded) | llama.cpp server | server / agora |", "|---|---|---|---|",
             f"| step | {step(a)} | {step(b)} | **{s['ratio']}×** (per round: {', '.join(map(str, s['ratio_per_round']))}) |",
             f"| stances/s | {a['stances_per_s']} | {b['stances_per_s']} | {round(a['stances_per_s'] / b['stances_per_s'], 2)}× |",
             f"| preferences/s | {a['preferences_per_s']} | {b['preferences_per_s']} | "
             f"{round(a['preferences_per_s'] / b['preferences_per_s'], 2)}× |"]
    lines += [f"| {phase} s | {a['phase_seconds'][phase]} | {b['phase_seconds'].get(phase, '—')} | "
              f"{s['phase_ratio'].get(phase, '—')}× |" for phase in a["phase_seconds"]]
    return lines + [""]


def merge(files: list[dict[str, Any]]) -> dict[str, Any]:
    """pytest-benchmark JSONs merged in order (a later benchmark replaces an earlier one of the same name), each
    benchmark's ``extra_info`` given the ``measured`` datetime of its run."""
    out = dict(files[-1])
    by_name: dict[str, dict[str, Any]] = {}
    for f in files:
        for b in f["benchmarks"]:
            b["extra_info"].setdefault("measured", f.get("datetime", "?")[:16])
            by_name[b["name"]] = b
    out["benchmarks"] = list(by_name.values())
    out["datetime"] = ", ".join(sorted({f.get("datetime", "?")[:16] for f in files}))
    return out


def scale_section(scale: dict[str, Any]) -> list[str]:
    """``benches/test_population_scale.py``'s figures (its own JSON: the benchmark is not in ``make bench``)."""
    m = scale.get("machine_info", {})
    lines = []
    for i in (b["extra_info"] for b in scale["benchmarks"] if b["extra_info"].get("name") == "population_scale"):
        lines += ["## Large populations (scripted backend)", "",
                  f"`agora llm=scripted population.size=N sim.steps=1`, one process per size, on "
                  f"{m.get('cpu', {}).get('brand_raw', '?')} ({m.get('cpu', {}).get('count', '?')} logical cores, no GPU), "
                  f"{scale.get('datetime', '?')[:16]}. Peak RSS is the process's (`wait4`); bytes per agent are above "
                  f"an 8-agent run's {i['base_rss_mb']:,} MB (interpreter and libraries).", "",
                  "| agents | step s | run wall s | run CPU s | peak RSS MB | bytes per agent | finished |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['agents']:,} | {r.get('step_s', '—')} | {r['wall_s']} | {r.get('cpu_s', '—')} | {r['peak_rss_mb']:,} | "
                  f"{r['bytes_per_agent']:,} | {'yes' if r['finished'] else 'no: ' + str(r.get('stopped') or r.get('error'))} |"
                  for r in i["runs"]]
        lines += ["", f"Scaling exponent from 10,000 to 100,000 agents: time per step **{i['time_exponent']}**"
                      + (f" (the run's CPU time {i['cpu_exponent']})" if "cpu_exponent" in i else "")
                      + f", memory above the fixed cost **{i['memory_exponent']}** (target ≤ 1.15)."]
        lines += [f"- {r['agents']:,} agents: {r['note']}" for r in i["runs"] if r.get("note")] + [""]
    return lines


def render(bench: dict[str, Any], profile: dict[str, Any] | None, scale: dict[str, Any] | None = None,
           server: dict[str, Any] | None = None) -> str:
    m, info = bench.get("machine_info", {}), [b["extra_info"] for b in bench["benchmarks"]]
    env = max((i for i in info if "environment" in i), key=lambda i: i.get("measured", ""), default={}).get("environment", {})
    lines = ["# Benchmark results", "",
             "Generated by `make bench` (`benches/`, pytest-benchmark); every ratio is measured in the same process, "
             "on the same model and inputs, against the baseline named in its row.", "",
             "## Machine", "",
             f"- CPU: {m.get('cpu', {}).get('brand_raw', platform.processor() or '?')}, "
             f"{m.get('cpu', {}).get('count', '?')} logical cores; Python {m.get('python_version', '?')}",
             f"- torch {env.get('torch', '?')}, transformers {env.get('transformers', '?')}, device `{env.get('device', '?')}`, "
             f"dtype {env.get('dtype', '?')}, torch threads {env.get('threads', '?')}",
             f"- model: {env.get('model', '?')} ({env.get('params', '?')} parameters)",
             f"- runs: {bench.get('datetime', '?')} (each row names its own), quick mode: {env.get('quick', '?')}", ""]
    readings = [i for i in info if "ratio" in i and "ratio_vs_naive" in i]
    if readings:
        lines += ["## Likelihood readings against lm-evaluation-harness", "",
                  "The society's own likelihood requests (the default personas; MoralChoice and DailyDilemmas items) scored by "
                  "agora's engine, by lm-evaluation-harness's `HFLM.loglikelihood` and by the naive loop, in one process on "
                  "the same loaded model and threads (`benches/test_likelihood.py`); agora's side mean ± sd over rounds.", ""]
        lines += likelihood_table(readings) + [""]
        for i in readings:
            lines.append(f"- **{i['name']}**: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in i.items() if k in (
                "hflm_batch", "naive_rounds", "max_abs_option_gap_diff", "max_abs_logprob_diff_naive", "distinct_tokens", "measured",
                "baseline")))
        lines.append("")
    flows = [i for i in info if "ratio" in i and "ratio_vs_naive" not in i]
    if flows:
        lines += ["## Throughput", ""] + throughput_table(flows) + [""]
        for i in flows:
            shown = {"name", "unit", "items", "agora_s", "baseline_s", "agora_rate", "baseline_rate", "baseline", "ratio",
                     "target", "environment", "agora_sd", "baseline_sd", "agora_rounds", "baseline_rounds", "ratio_sd"}
            extras = {k: v for k, v in i.items() if k not in shown}
            if extras:
                lines.append(f"- **{i['name']}**: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in extras.items()))
        lines.append("")
    for i in info:
        if "exponent" in i:
            ok = "✅" if i["exponent"] <= i["target"] else "❌"
            sds = i.get("step_seconds_sd") or [None] * len(i["populations"])
            lines += [f"## Scaling: {i['name']}", "", f"| population | step seconds (mean ± sd, {i.get('rounds', 1)} "
                      f"round{'s' if i.get('rounds', 1) != 1 else ''} each) |", "|---|---|"]
            lines += [f"| {n} | {s}" + (f" ± {sd}" if sd is not None else "") + " |"
                      for n, s, sd in zip(i["populations"], i["step_seconds"], sds, strict=True)]
            lines += ["", f"Fitted exponent of time vs N: **{i['exponent']}** (target ≤ {i['target']} {ok})"
                      + (f"; {i['tokens_per_reply']} tokens per reply." if "tokens_per_reply" in i else "."), ""]
    if profile:
        lines += ["## Where the time goes in one default step", "",
                  f"cProfile of `{profile['command']}` ({profile['wall_s']:.1f} s wall, {profile['population']} agents). "
                  "Buckets are cumulative time of the named functions (a call inside another bucket counts once, "
                  "in the outermost).", "", "| bucket | seconds | share |", "|---|---|---|"]
        lines += [f"| {k} | {v:.2f} | {100 * v / profile['wall_s']:.1f}% |" for k, v in profile["buckets"].items()]
        lines += [""] + [f"- {n}" for n in profile.get("notes", [])] + [""]
    if server:
        lines += server_section(server)
    if scale:
        lines += scale_section(scale)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, nargs="+", help="pytest-benchmark JSONs, merged in order")
    ap.add_argument("--profile", type=Path, default=None)
    ap.add_argument("--scale", type=Path, default=Path(__file__).with_name("scale.json"),
                    help="benches/test_population_scale.py's JSON, kept across `make bench` runs (skipped if absent)")
    ap.add_argument("--server", type=Path, default=Path(__file__).with_name("server.json"),
                    help="benches/server_step.py's JSON (skipped if absent)")
    ap.add_argument("--notes", type=Path, default=Path(__file__).with_name("NOTES.md"),
                    help="hand-written analysis appended verbatim (kept across re-runs)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    a = ap.parse_args(argv)
    bench = merge([json.loads(r.read_text()) for r in a.results])
    profile = json.loads(a.profile.read_text()) if a.profile and a.profile.is_file() else None
    scale = json.loads(a.scale.read_text()) if a.scale and a.scale.is_file() else None
    server = json.loads(a.server.read_text()) if a.server and a.server.is_file() else None
    text = render(bench, profile, scale, server)
    if a.notes and a.notes.is_file():
        text += "\n" + a.notes.read_text()
    a.out.write_text(text)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
