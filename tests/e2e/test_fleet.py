"""One society over a fleet of model servers: two local OpenAI-compatible servers behind a real
``vllm-router`` (the ``fleet`` extra; ``make test`` installs it), all on 127.0.0.1, one server
killed with SIGKILL during the second step.

The servers are ``tests/fake_server.py`` processes: each reply is a function of the request alone,
so the fleet run must give the rows of a run against one healthy server, byte for byte. Twice:
with the router's own retries off, every call the dead server loses comes back to agora, which
retries it and counts it in ``summary.json`` (``backend.retries``, by cause); with them on (the
router's default), the router re-sends the call to the live server and counts it in its Prometheus
``vllm_router_retries_total``. Either way the run finishes, nothing is lost, every label is valid.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from sim.experiments import run_experiment as run
from tests.fake_server import Process
from tests.helpers import compose

FILES = ("preferences.parquet", "stances.parquet", "transcripts.parquet", "metrics.parquet")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, timeout: float = 2) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        return res.status, res.read().decode()
    finally:
        conn.close()


class Router:
    """``vllm-router`` on a free loopback port over ``workers``, Prometheus metrics on another."""

    def __init__(self, workers: list[str], log: Path, retries: bool) -> None:
        try:
            import vllm_router  # noqa: F401
        except ImportError:
            pytest.fail("vllm-router is not installed: `make test` installs it (the `fleet` extra), or "
                        "`pip install -c constraints.txt -e '.[fleet]'`")
        self.port, self.metrics_port = free_port(), free_port()
        argv = [sys.executable, "-m", "vllm_router.launch_router", "--host", "127.0.0.1", "--port", str(self.port),
                "--worker-urls", *workers, "--policy", "round_robin", "--prometheus-host", "127.0.0.1",
                "--prometheus-port", str(self.metrics_port), "--worker-startup-check-interval", "1",
                "--log-level", "warning", *([] if retries else ["--disable-retries"])]
        self.log = log
        with log.open("w") as fh:
            self.proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm-router exited with {self.proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if get(self.port, "/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            self.stop()
            raise TimeoutError(f"vllm-router did not come up in 30 s: {log.read_text()[-2000:]}")
        self.url = f"http://127.0.0.1:{self.port}"

    def counter(self, name: str) -> float:
        """Sum of a Prometheus counter over its labels (0 when the router has not created it yet)."""
        _, text = get(self.metrics_port, "/metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and line[len(name)] in "{ ")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def config(base_url: str):
    # 12 agents, 2 steps: ~300 HTTP calls; 16 in flight, so a kill always catches some of them
    cfg = compose("llm=openai_compatible", f"llm.base_url={base_url}/v1", "llm.model=fake", "llm.concurrency=16",
                  "llm.timeout_s=10", "llm.max_retries=6", "llm.backoff_s=0.05", "population.size=12", "sim.steps=2",
                  "sim.progress=false", "calibration.enabled=false", "name=fleet", scripted=False)
    assert cfg.sim.choice_reader == "likelihood" and cfg.sim.judge_reader == "likelihood"  # prompt_logprobs on every score
    return cfg


def society(base_url: str, out: Path) -> dict:
    summary = run(config(base_url), out)
    assert (out / "summary.json").exists()
    return summary


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The run against one healthy server: its folder, summary and the HTTP calls it took."""
    tmp = tmp_path_factory.mktemp("reference")
    server = Process(tmp / "served.log", latency_ms=2)
    try:
        summary = society(server.url, tmp / "run")
        return tmp / "run", summary, server.answered()
    finally:
        server.stop()


def valid_labels(out: Path) -> None:
    prefs = pl.read_parquet(out / "preferences.parquet")
    assert prefs.height > 0 and prefs["p_a"].null_count() == 0
    assert all(math.isfinite(p) and 0 <= p <= 1 for p in prefs["p_a"])
    stances = pl.read_parquet(out / "stances.parquet")
    assert stances.height > 0 and stances["choice"].is_in(["a", "b"]).all()


@pytest.mark.parametrize("router_retries", [False, True], ids=["agora-retries", "router-retries"])
def test_a_society_over_two_servers_behind_vllm_router_survives_one_killed_mid_step(reference, tmp_path, router_retries):
    ref_dir, ref_summary, ref_calls = reference
    valid_labels(ref_dir)
    doomed, survivor = Process(tmp_path / "doomed.log", latency_ms=2), Process(tmp_path / "survivor.log", latency_ms=2)
    router = Router([doomed.url, survivor.url], tmp_path / "router.log", retries=router_retries)
    out = tmp_path / "run"
    killed: dict = {}

    def kill_mid_run() -> None:
        # round robin: the doomed server has answered ~3/8 of the run's calls three quarters of the way
        # through it, in the second of two steps
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60 and doomed.proc.poll() is None:
            if doomed.answered() >= 3 * ref_calls // 8:
                ckpt = out / "checkpoint.json"  # written (atomically) after each step
                killed["steps_done"] = json.loads(ckpt.read_text())["extra"]["society"]["state"]["steps"] if ckpt.exists() else 0
                os.kill(doomed.proc.pid, signal.SIGKILL)
                killed["answered"] = doomed.answered()
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=kill_mid_run, daemon=True)
    try:
        watcher.start()
        summary = society(router.url, out)
        watcher.join(timeout=10)
        router_retried = router.counter("vllm_router_retries_total")
    finally:
        router.stop()
        doomed.stop()
        survivor.stop()

    # killed in the second step, and the run finished on the survivor
    assert killed.get("steps_done") == 1, (killed, router.log.read_text()[-2000:])
    assert doomed.proc.returncode == -signal.SIGKILL
    assert survivor.answered() > killed["answered"]

    # nothing lost: the same calls, the same rows, byte for byte
    for key in ("generate_calls", "score_calls"):
        assert summary["backend"][key] == ref_summary["backend"][key]
    assert doomed.answered() + survivor.answered() >= ref_calls
    for f in FILES:
        assert (out / f).read_bytes() == (ref_dir / f).read_bytes(), f
    assert summary["counts"] == ref_summary["counts"]
    valid_labels(out)

    # retries counted where they happened
    backend = summary["backend"]
    causes = {k: v for k, v in backend["extra"].items() if k.startswith("retry:")}
    assert backend["retries"] == sum(causes.values())
    print(f"router retries {'on' if router_retries else 'off'}: doomed server killed after {killed['answered']} calls; "
          f"agora retried {backend['retries']} {causes}, the router {router_retried:.0f}; "
          f"{doomed.answered()} + {survivor.answered()} answered for {ref_calls} calls")
    if router_retries:
        assert router_retried >= 1
    else:
        assert backend["retries"] >= 1 and router_retried == 0
        assert set(causes) <= {"retry:connection", "retry:timeout"} | {f"retry:http_{c}" for c in (500, 502, 503, 504)}


def test_the_fake_server_is_deterministic_per_request():
    """What the row-for-row comparison rests on: two servers answer one request alike, whatever a router adds."""
    from tests.fake_server import reply

    req = {"model": "fake", "messages": [{"role": "user", "content": "A or B?"}], "max_tokens": 8, "temperature": 0.7,
           "top_p": 0.95, "seed": 7}
    router_added = {"stream": False, "ignore_eos": False, "logprobs": False, "continue_final_message": False}
    assert reply(req) == reply(dict(reversed(list(req.items())))) == reply(req | router_added)
    assert reply(req | {"prompt_logprobs": 0})[0] == "continuation" and reply(req | {"logprobs": True})[0] == "label"
    assert reply(req) != reply(req | {"seed": 8})
