"""One whole default step on agora's embedded engine against the same step on llama.cpp's server.

    python -m benches.server_step [--out benches/server.json] [--rounds 1] [override ...]

Both sides run ``agora sim.steps=1`` as a child process with the label readers
(``sim.choice_reader=label sim.judge_reader=label``); the default likelihood readers can run against this
server through its completions ``echo`` form (``llm.tokenizer``, README "Model servers"), not measured here yet. The server
is ``llama-cpp-python[server]`` (``python -m llama_cpp.server``) on the embedded model's own Q4_1 GGUF,
2 threads, bound to 127.0.0.1, with ``--logits_all true`` (its chat completions return log-probabilities
only so), reached through agora's ``openai_compatible`` backend. The embedded side is the default engine
(fp32 weights converted from the same GGUF, torch threads 2). Rounds alternate the two sides, so a change
in the machine's load falls on both. Each side's figures come from the run's own ``summary.json``: the
seconds of each phase of the step (their sum is the step), stances/s and preferences/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.e2e.test_real_server import free_port, wait_listening

ROOT = Path(__file__).resolve().parents[1]
LABEL = ["sim.steps=1", "sim.choice_reader=label", "sim.judge_reader=label", "sim.progress=false"]


def start_server(threads: int = 2) -> tuple[subprocess.Popen, str]:
    """llama.cpp's server on the default model's GGUF, on 127.0.0.1 (the caller stops it)."""
    from agents.llm.embedded import locate_gguf

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(locate_gguf()), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2", "--logits_all", "true",
                             "--verbose", "false", "--n_threads", str(threads), "--n_threads_batch", str(threads)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(port, proc)
    except BaseException:
        proc.terminate()
        proc.wait(timeout=30)
        raise
    return proc, f"http://127.0.0.1:{port}/v1"


def run_step(overrides: list[str], timeout_s: int = 1800) -> dict[str, Any]:
    """``agora`` with ``overrides`` as a child process; its summary's step figures and wall seconds."""
    with tempfile.TemporaryDirectory(prefix="server-step-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "sim.cli", *overrides, f"hydra.run.dir={tmp}"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout_s)
        wall = time.perf_counter() - t0
        if done.returncode:
            raise RuntimeError(f"agora {' '.join(overrides)} failed: {(done.stderr or done.stdout)[-1500:]}")
        summary = json.loads((Path(tmp) / "summary.json").read_text())
    t = summary["throughput"]
    return {"step_s": round(sum(t["phase_seconds"].values()), 2), "phase_seconds": t["phase_seconds"],
            "stances_per_s": t["stances_per_s"], "preferences_per_s": t["preferences_per_s"],
            "debate_messages_per_s": t.get("debate_messages_per_s"), "process_wall_s": round(wall, 1),
            "backend": summary.get("backend"), "loadavg": os.getloadavg()[0]}


def _mean_sd(xs: list[float]) -> tuple[float, float | None]:
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("server.json"))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("overrides", nargs="*", help="more agora overrides for both sides")
    a = ap.parse_args(argv)
    import llama_cpp

    proc, url = start_server()
    rounds: list[dict[str, Any]] = []
    try:
        for k in range(a.rounds):
            sides = {"agora": LABEL + a.overrides,
                     "llama.cpp": LABEL + a.overrides + ["llm=openai_compatible", f"llm.base_url={url}", "llm.model=smollm2",
                                                         "llm.timeout_s=600", "llm.concurrency=4"]}
            order = list(sides) if k % 2 == 0 else list(sides)[::-1]
            rounds.append({name: run_step(sides[name]) for name in order})
            print(json.dumps(rounds[-1]), flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    out: dict[str, Any] = {"command": "python -m benches.server_step " + " ".join(sys.argv[1:] if argv is None else argv),
                           "llama_cpp_python": llama_cpp.__version__, "threads": 2, "readers": "label (both sides)",
                           "datetime": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rounds": rounds}
    summary: dict[str, Any] = {}
    for side in ("agora", "llama.cpp"):
        step = _mean_sd([r[side]["step_s"] for r in rounds])
        summary[side] = {"step_s": round(step[0], 2), "step_sd": None if step[1] is None else round(step[1], 2),
                         "stances_per_s": round(statistics.mean(r[side]["stances_per_s"] for r in rounds), 3),
                         "preferences_per_s": round(statistics.mean(r[side]["preferences_per_s"] for r in rounds), 3),
                         "phase_seconds": {p: round(statistics.mean(r[side]["phase_seconds"][p] for r in rounds), 2)
                                           for p in rounds[0][side]["phase_seconds"]}}
    ratios = [r["llama.cpp"]["step_s"] / r["agora"]["step_s"] for r in rounds]
    summary["ratio"] = round(summary["llama.cpp"]["step_s"] / summary["agora"]["step_s"], 2)
    summary["ratio_per_round"] = [round(x, 2) for x in ratios]
    summary["phase_ratio"] = {p: round(summary["llama.cpp"]["phase_seconds"][p] / summary["agora"]["phase_seconds"][p], 2)
                              for p in summary["agora"]["phase_seconds"] if summary["agora"]["phase_seconds"][p]}
    out["summary"] = summary
    a.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
