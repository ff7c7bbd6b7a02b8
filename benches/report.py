"""Render ``benches/RESULTS.md`` from pytest-benchmark's JSON (and the profiler's JSON if present).

    python -m benches.report benches/results.json [more.json ...] [--profile benches/profile.json]
        [--scale benches/scale.json] [--server benches/server.json] [--client benches/client.json]
        [--collector benches/collector.json] [--out benches/RESULTS.md]

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


def collector_section(collector: dict[str, Any]) -> list[str]:
    """``benches/test_step_collector.py``'s figures: CPU per agent-step at 1k-10k agents and the step collector's
    ratio against the previous policy in one process (its own JSON, like the population-scale one)."""
    m = collector.get("machine_info", {})
    info = {b["extra_info"].get("name"): b["extra_info"] for b in collector["benchmarks"]}
    machine = (f"{m.get('cpu', {}).get('brand_raw', '?')} ({m.get('cpu', {}).get('count', '?')} logical cores, no GPU), "
               f"{collector.get('datetime', '?')[:16]}")
    lines = ["### CPU per agent-step (scripted backend)", ""]
    if cpu := info.get("agent_step_cpu"):
        loads = cpu["load"]
        lines += [f"Whole `agora llm=scripted population.size=N sim.steps=1` runs (checkpointed, every output written), one "
                  f"process each, {cpu['repeats']} repeats per size interleaved, on {machine}, load average "
                  f"{min(loads):.1f}–{max(loads):.1f} (a shared machine; CPU time moves less with load than wall time). "
                  f"CPU per agent-step = (the run's CPU − a 10-agent run's {cpu['base_cpu_s']} s) / N.", "",
                  "| agents | ms of CPU per agent-step, median | range over repeats |", "|---|---|---|"]
        lines += [f"| {int(n):,} | **{v['median']:.2f}** | {v['min']:.2f}–{v['max']:.2f} |"
                  for n, v in cpu["ms_per_agent_step"].items()]
        a, b = cpu["exponent_sizes"]
        lines += ["", f"The framework's CPU grows as N^{cpu['cpu_exponent']} from {a:,} to {b:,} agents; at that exponent "
                      f"100,000 agents would take **~{cpu['projected_100k_ms']:.2f} ms per agent-step** (a projection, "
                      f"not a run). Target ≤ 1 ms: {'✅' if cpu['projected_100k_ms'] <= 1 else '❌'}.", ""]
    if r := info.get("collector_ratio"):
        b, a = r["baseline_ms_per_agent"], r["agora_ms_per_agent"]
        lines += [f"The step's garbage-collector policy (`{r['policy']}`, `sim/society/model.py`) against the previous one (the "
                  f"pre-step heap frozen, CPython's thresholds), one {r['agents']:,}-agent step in one process, "
                  f"{r['rounds']} rounds each, alternating: **{a['median']:.2f} ms** of CPU per agent-step "
                  f"({a['min']:.2f}–{a['max']:.2f}) vs {b['median']:.2f} ms ({b['min']:.2f}–{b['max']:.2f}), "
                  f"**{r['ratio']}×**; the rows of every round equal. Load average {r['load']:.1f}.", ""]
    return lines


# One vLLM server's throughput, for the fleet estimate: a maintainer's `vllm bench serve` of Llama-3.1-8B-Instruct
# on ShareGPT (1,000 requests, one server; the GPU is not named there), vllm-project/vllm pull request 18566.
VLLM_REFERENCE = {"total_tokens_per_s": 14029.44, "requests_per_s": 32.42,
                  "source": "vllm-project/vllm PR #18566: `vllm serve meta-llama/Llama-3.1-8B-Instruct`, `vllm bench serve` "
                            "on ShareGPT, 1,000 requests: 32.42 req/s, 14,029 total tokens/s"}
FLEET_AGENTS = 10_000


def client_section(client: dict[str, Any], scale: dict[str, Any] | None = None) -> list[str]:
    """``benches/test_client_throughput.py``'s figures (its own JSON, like the population-scale one), with the
    scripted 10,000-agent step of ``scale`` (the society's own cost per request) where there is one."""
    m = client.get("machine_info", {})
    lines: list[str] = []
    for i in (b["extra_info"] for b in client["benchmarks"] if b["extra_info"].get("name") == "client_throughput"):
        mix, tok = i["mix_per_agent"], i["tokens"]
        per_agent = sum(mix.values())
        best = max(i["table"], key=lambda r: r["req_per_s"])
        lines += ["## Client throughput: requests/s one agora process issues", "",
                  f"`OpenAICompatibleBackend` against `tests/fake_server.py` in its own process answering at once, on "
                  f"{m.get('cpu', {}).get('brand_raw', '?')} ({m.get('cpu', {}).get('count', '?')} logical cores, shared "
                  f"by client and server), {client.get('datetime', '?')[:16]}. The requests are a scripted {i['agents']}-agent "
                  f"step's, replayed {i['repeat']}× per round ({i['http_requests_per_round']:,} HTTP requests) as the "
                  "society issues them: per agent per step " + ", ".join(f"{v:g} {k}" for k, v in mix.items())
                  + f" ({per_agent:g} requests). Every round's answers equal the first's.", "",
                  "| llm.concurrency | requests/s (mean ± sd over rounds) | rounds |", "|---|---|---|"]
        lines += [f"| {r['concurrency']} | **{r['req_per_s']:,}**" + (f" ± {r['req_per_s_sd']:,}" if r.get("req_per_s_sd") is not None
                  else "") + f" | {r['rounds']} |" for r in i["table"]]
        alone = f"{i['server_alone_req_per_s']:,}" + (f" ± {i['server_alone_sd']:,}" if i.get("server_alone_sd") is not None else "")
        lines += ["", f"The server alone, to a bare keep-alive client (64 connections): **{alone} requests/s**, so the "
                      f"figures above are the client's. Target ≥ 1,000 requests/s: "
                      + ("✅" if best["req_per_s"] >= 1000 else "❌") + f" (best {best['req_per_s']:,} at concurrency "
                      f"{best['concurrency']}).", ""]
        p = i["profile"]
        lines += [f"Where one round's time goes at concurrency {p['concurrency']} (cProfile, {p['wall_s']} s wall under the "
                  "profiler; own time by package):", "", "| part | share of own time |", "|---|---|"]
        lines += [f"| {k} | {100 * v:.1f}% |" for k, v in p["buckets"].items()]
        lines += ["", "Top functions by own time: " + "; ".join(f"`{t['function']}` {t['own_s']} s ({t['calls']:,} calls)"
                                                             for t in p["top"][:8]) + ".", ""]
        # the fleet estimate: tokens a step's average request carries, against one vLLM server's token rate
        n_gen, n_cont = mix.get("generate", 0), mix.get("continuation", 0) + mix.get("label", 0)
        per_request = (n_gen * (tok["generate_prompt"] + tok["generate_budget"])
                       + n_cont * (tok["continuation_prompt"] + 1)) / per_agent
        server_rps = VLLM_REFERENCE["total_tokens_per_s"] / per_request
        step_requests = per_agent * FLEET_AGENTS
        lines += [f"### How many vLLM servers one process keeps busy ({FLEET_AGENTS:,}-agent step; an estimate)", "",
                  f"A {FLEET_AGENTS:,}-agent step sends {step_requests:,.0f} requests; at {best['req_per_s']:,} requests/s "
                  f"one process issues them in {step_requests / best['req_per_s']:,.0f} s. Its average request carries "
                  f"~{per_request:.0f} tokens (chat completions: {tok['generate_prompt']:.0f} prompt tokens and at most "
                  f"{tok['generate_budget']:.0f} new ones; scored continuations: {tok['continuation_prompt']:.0f} prompt tokens "
                  f"and 1 new one; SmolLM2's tokenizer). Assumed server throughput: {VLLM_REFERENCE['source']}. At that "
                  f"token rate one server takes ~{server_rps:.0f} of agora's requests/s, so one process keeps "
                  f"**~{best['req_per_s'] / server_rps:.0f} such servers** busy, and the step takes at least "
                  f"{step_requests / server_rps / 60:,.0f} server-minutes. This is an estimate: agora's requests are "
                  "mostly prefill (scoring asks for 1 new token), which a GPU runs at several times its decode rate, and "
                  "personas and dilemmas share prompt prefixes that vLLM's prefix cache skips; both make a server faster "
                  "on this mix than on ShareGPT, so one process keeps fewer of them busy than the figure says. A "
                  "larger model than 8B, or an older GPU, goes the other way."]
        framework = next((r for r in (scale or {}).get("runs", []) if r.get("agents") == FLEET_AGENTS and r.get("step_s")), None)
        if framework:
            own = framework["agents"] * per_agent / framework["step_s"]
            both = 1 / (1 / best["req_per_s"] + 1 / own)
            lines[-1] += (f" The society's own work comes on top in the same process: the scripted {FLEET_AGENTS:,}-agent "
                          f"step takes {framework['step_s']} s with no HTTP at all (~{own:,.0f} requests' worth a second, "
                          f"[Large populations](#large-populations-scripted-backend)), so a real run issues ~{both:,.0f} "
                          f"requests/s and keeps ~{both / server_rps:.0f} servers busy; more servers take more processes "
                          "(one society per process: a sweep's points, or seeds).")
        lines.append("")
    return lines


def render(bench: dict[str, Any], profile: dict[str, Any] | None, scale: dict[str, Any] | None = None,
           client: dict[str, Any] | None = None, server: dict[str, Any] | None = None,
           collector: dict[str, Any] | None = None) -> str:
    m, info = bench.get("machine_info", {}), [b["extra_info"] for b in bench["benchmarks"]]
    # the newest row that loaded the model (the scripted rows' environment names no torch or model)
    env = max((i for i in info if "torch" in i.get("environment", {})), key=lambda i: i.get("measured", ""),
              default={}).get("environment", {})
    lines = ["# Benchmark results", "",
             "Generated by `make bench` (`benches/`, pytest-benchmark); every ratio is measured in the same process, "
             "on the same model and inputs, against the baseline named in its row.", "",
             "## Machine", "",
             f"- CPU: {m.get('cpu', {}).get('brand_raw', platform.processor() or '?')}, "
             f"{m.get('cpu', {}).get('count', '?')} logical cores; Python {m.get('python_version', '?')}",
             f"- torch {env.get('torch', '?')}, transformers {env.get('transformers', '?')}, device `{env.get('device', '?')}`, "
             f"dtype {env.get('dtype', '?')}, torch threads {env.get('threads', '?')}",
             f"- model: {env.get('model', '?')} ({env.get('params', '?')} parameters)",
             f"- runs: {bench.get('datetime', '?')} (each row names its own), quick mode: {env.get('quick', '?')}",
             "- load: other jobs may share the machine's cores; `load_avg_1m` under a benchmark is the 1-minute load "
             "average at its start and end (above the torch threads: other jobs ran beside it)", ""]
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
                "baseline", "load_avg_1m")))
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
    if collector:
        lines += collector_section(collector)
    if client:
        scale_info = next((b["extra_info"] for b in (scale or {}).get("benchmarks", [])
                           if b["extra_info"].get("name") == "population_scale"), None)
        lines += client_section(client, scale_info)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, nargs="+", help="pytest-benchmark JSONs, merged in order")
    ap.add_argument("--profile", type=Path, default=None)
    ap.add_argument("--scale", type=Path, default=Path(__file__).with_name("scale.json"),
                    help="benches/test_population_scale.py's JSON, kept across `make bench` runs (skipped if absent)")
    ap.add_argument("--server", type=Path, default=Path(__file__).with_name("server.json"),
                    help="benches/server_step.py's JSON (skipped if absent)")
    ap.add_argument("--client", type=Path, default=Path(__file__).with_name("client.json"),
                    help="benches/test_client_throughput.py's JSON, kept across `make bench` runs (skipped if absent)")
    ap.add_argument("--collector", type=Path, default=Path(__file__).with_name("collector.json"),
                    help="benches/test_step_collector.py's JSON, kept across `make bench` runs (skipped if absent)")
    ap.add_argument("--notes", type=Path, default=Path(__file__).with_name("NOTES.md"),
                    help="hand-written analysis appended verbatim (kept across re-runs)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    a = ap.parse_args(argv)
    bench = merge([json.loads(r.read_text()) for r in a.results])
    profile = json.loads(a.profile.read_text()) if a.profile and a.profile.is_file() else None
    scale = json.loads(a.scale.read_text()) if a.scale and a.scale.is_file() else None
    server = json.loads(a.server.read_text()) if a.server and a.server.is_file() else None
    client = json.loads(a.client.read_text()) if a.client and a.client.is_file() else None
    collector = json.loads(a.collector.read_text()) if a.collector and a.collector.is_file() else None
    text = render(bench, profile, scale, client, server, collector)
    if a.notes and a.notes.is_file():
        text += "\n" + a.notes.read_text()
    a.out.write_text(text)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
