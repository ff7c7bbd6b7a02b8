"""Large populations on the scripted backend: time per step and peak memory of a whole ``agora`` society run
(one step, checkpointed, every output written) at 1,000, 10,000 and 100,000 agents.

Each size runs as its own ``python -m sim.cli`` process, so its peak resident memory (``wait4``'s
``ru_maxrss``) is its own; an 8-agent run gives the fixed cost (interpreter, libraries), and per-agent
bytes are what a run holds above it. Not in ``make bench`` (marked slow, ~15 min on 2 cores):

    python -m pytest benches/test_population_scale.py -m slow --benchmark-json=benches/scale.json
    python -m benches.report benches/results.json --profile benches/profile.json --scale benches/scale.json

``AGORA_SCALE_MAX_GB`` (default 8) kills a run whose resident memory passes it (recorded, the benchmark fails).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIZES = (1_000, 10_000, 100_000)
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _environment(request):
    """Overrides ``benches/conftest.py``'s: these runs load no model."""
    import platform

    request.getfixturevalue("benchmark").extra_info["environment"] = {
        "python": platform.python_version(), "cpus": os.cpu_count(), "backend": "scripted"}


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
    except OSError:
        return 0


def measure(n: int, root: Path = ROOT, timeout_s: float = 900, max_gb: float | None = None) -> dict[str, Any]:
    """One ``agora llm=scripted population.size=n sim.steps=1`` run of the checkout at ``root``: its wall
    time, step time (the phases' seconds from ``summary.json``), peak RSS, and whether it finished."""
    max_kb = (max_gb or float(os.environ.get("AGORA_SCALE_MAX_GB", "8"))) * 2**20
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        argv = [sys.executable, "-m", "sim.cli", "llm=scripted", f"population.size={n}", "sim.steps=1",
                "sim.progress=false", f"hydra.run.dir={out}"]
        env = {**os.environ, "PYTHONPATH": str(root)}
        t0 = time.perf_counter()
        with open(Path(tmp) / "stderr", "wb") as err_fh:  # a file, not a pipe: a chatty run cannot block on it
            proc = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=err_fh)
        killed: list[str] = []

        def watch() -> None:  # the kernel's peak comes from wait4; this only stops a run that outgrows the machine
            while proc.poll() is None:
                if _rss_kb(proc.pid) > max_kb:
                    killed.append(f"RSS over {max_kb / 2**20:.0f} GiB")
                elif time.perf_counter() - t0 > timeout_s:
                    killed.append(f"over {timeout_s:.0f} s")
                if killed:
                    proc.kill()
                    return
                time.sleep(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: stop Popen waiting again
        watcher.join()
        err = (Path(tmp) / "stderr").read_text(errors="replace")
        row: dict[str, Any] = {"agents": n, "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
                               "peak_rss_mb": round(usage.ru_maxrss / 1024),
                               "finished": (out / "summary.json").is_file(), "stopped": killed[0] if killed else None}
        if row["finished"]:
            summary = json.loads((out / "summary.json").read_text())
            row["step_s"] = round(sum(summary["throughput"]["phase_seconds"].values()), 1)
            row["phase_s"] = summary["throughput"]["phase_seconds"]
            row["rows"] = {k: summary["counts"][k] for k in ("stances", "transcript_messages", "preferences")}
            row["calls"] = {k: summary["backend"][k] for k in ("generate_calls", "score_calls")}
        elif not killed:
            row["error"] = err.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
    return row


def exponent(a: dict[str, Any], b: dict[str, Any], key: str, base: float = 0.0) -> float | None:
    """Slope of log(value - base) against log(agents) between two sizes."""
    if key not in a or key not in b or a[key] <= base or b[key] <= base:
        return None
    return round(math.log((b[key] - base) / (a[key] - base)) / math.log(b["agents"] / a["agents"]), 3)


def test_population_scale(benchmark):
    base = measure(8)
    rows = [measure(n) for n in SIZES[:-1]]
    rows.append(benchmark.pedantic(lambda: measure(SIZES[-1]), rounds=1, iterations=1))
    for r in rows:
        r["bytes_per_agent"] = round((r["peak_rss_mb"] - base["peak_rss_mb"]) * 2**20 / r["agents"])
    ten, hundred = rows[-2], rows[-1]
    benchmark.extra_info.update(
        name="population_scale", base_rss_mb=base["peak_rss_mb"], runs=rows,
        time_exponent=exponent(ten, hundred, "step_s"),
        memory_exponent=exponent(ten, hundred, "peak_rss_mb", base["peak_rss_mb"]))
    assert all(r["finished"] for r in rows), [r for r in rows if not r["finished"]]
    assert benchmark.extra_info["time_exponent"] <= 1.15 and benchmark.extra_info["memory_exponent"] <= 1.15
