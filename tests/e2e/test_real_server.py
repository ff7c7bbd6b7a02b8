"""A real OpenAI-compatible server: llama.cpp's, through ``llama-cpp-python[server]``, on the embedded
model's own GGUF, started on 127.0.0.1 by the test. A small society runs through the
``openai_compatible`` backend against it; then through a loopback proxy that injects faults —
500s, 429 with Retry-After, truncated JSON, timeouts, refused connections (the proxy stops
listening for a while) — and, last, a server that goes down for good mid-run. Nothing may be lost: the faulted
run gives the clean run's rows, the failed run stops in one line with a resumable checkpoint.

Marked slow: ``make test-slow`` installs llama-cpp-python (it compiles llama.cpp, ~5.5 min on 2 cores,
once per venv) and runs it; CI runs it after ``make test``.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import agora

pytestmark = pytest.mark.slow  # ~5 min with the server's start; `make test-slow` (and CI) run it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v1/models")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("llama.cpp server did not come up")


@pytest.fixture(scope="module")
def llama_server():
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        pytest.fail("llama-cpp-python[server] is not installed: run `make test` (it installs it) or "
                    "`pip install 'llama-cpp-python[server]'`")
    from agents.llm.embedded import locate_gguf

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(locate_gguf()), "--host", "127.0.0.1",
                             "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2", "--logits_all", "true",
                             "--verbose", "false", "--n_threads", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class FaultProxy:
    """Forwards to ``upstream``; request k (0-based, counted over all requests) meets ``fault(k)``."""

    def __init__(self, upstream: str, port: int, fault) -> None:
        self.upstream, self.port, self.fault, self.count = upstream, port, fault, 0
        self.injected: dict[str, int] = {}
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        proxy = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                self._forward(b"")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy.lock:
                    k = proxy.count
                    proxy.count += 1
                kind = proxy.fault(k)
                if kind:
                    proxy.injected[kind] = proxy.injected.get(kind, 0) + 1
                if kind == "down":
                    return self._reply(503, b'{"error": {"message": "server is down"}}')
                if kind == "500":
                    return self._reply(500, b'{"error": {"message": "internal error"}}')
                if kind == "429":
                    return self._reply(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": "0.3"})
                if kind == "timeout":
                    time.sleep(11.0)  # the client's timeout is 10 s
                    return None
                self._forward(body, truncate=kind == "truncated")
                if kind == "close":  # then stop listening for 2 s: the next connections are refused
                    threading.Thread(target=proxy.restart, args=(2.0,), daemon=True).start()

            def _reply(self, status, data, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, body, truncate=False):
                host, port = proxy.upstream.removeprefix("http://").split(":")
                conn = http.client.HTTPConnection(host, int(port), timeout=120)
                conn.request(self.command, self.path, body=body or None, headers={"Content-Type": "application/json"})
                res = conn.getresponse()
                data = res.read()
                if truncate:
                    data = data[: len(data) // 2]
                self._reply(res.status, data)

        self.handler = H
        self._listen()

    def _listen(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def restart(self, closed_for: float) -> None:
        self.stop()
        time.sleep(closed_for)
        self._listen()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


def society(out: Path, base_url: str, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return agora("llm=openai_compatible", f"llm.base_url={base_url}/v1", "llm.model=smollm2", "llm.timeout_s=10",
                 "llm.max_retries=6", "llm.backoff_s=0.3", "llm.concurrency=2", "population.size=4", "sim.steps=2",
                 "sim.group_size=2", "sim.tokens.stance=12", "sim.tokens.debate=12", "sim.tokens.critique=12",
                 "sim.tokens.revision=12", "sim.progress=false", "sim.choice_reader=label", "sim.judge_reader=label",
                 "calibration.enabled=false", "name=served", f"hydra.run.dir={out}", *extra, timeout=timeout)


def rows(out: Path) -> dict[str, pl.DataFrame]:
    return {f: pl.read_parquet(out / f) for f in ("preferences.parquet", "stances.parquet", "transcripts.parquet")}


def same_rows(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    for name in a:
        assert a[name].shape == b[name].shape, name
    key = ["pref_id", "response_a", "response_b", "judge_id", "principle_id"]
    assert a["preferences.parquet"].select(key).equals(b["preferences.parquet"].select(key))
    diff = (a["preferences.parquet"]["p_a"] - b["preferences.parquet"]["p_a"]).abs().max()
    assert diff < 1e-3
    assert a["transcripts.parquet"]["text"].to_list() == b["transcripts.parquet"]["text"].to_list()


def test_society_through_a_real_server_survives_faults_and_an_outage(llama_server, tmp_path):
    # 1. clean: every row, logprobs read from the server
    clean = tmp_path / "clean"
    res = society(clean, llama_server)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((clean / "summary.json").read_text())
    assert s["backend"]["retries"] == 0 and s["counts"]["preferences"] > 0
    reference = rows(clean)
    assert reference["preferences.parquet"]["p_a"].is_between(0, 1).all()

    # 2. faults: 500, 429 with Retry-After, truncated JSON, a reply slower than the client's timeout,
    #    and the proxy not listening for 2 s (refused connections)
    port = free_port()
    schedule = {3: "500", 7: "429", 11: "truncated", 15: "timeout", 19: "close", 23: "500", 27: "truncated"}
    proxy = FaultProxy(llama_server, port, lambda k: schedule.get(k))
    proxy.start()
    faulted = tmp_path / "faulted"
    try:
        res = society(faulted, f"http://127.0.0.1:{port}")
    finally:
        proxy.stop()
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((faulted / "summary.json").read_text())
    causes = s["backend"]["extra"]
    print(f"faulted run: {len(schedule)} faults + 2 s refused -> {s['backend']['retries']} retries {causes}; "
          f"{s['counts']['preferences']} preferences, {s['counts']['stances']} stances")  # shown by `make test-slow`
    assert s["backend"]["retries"] >= len(schedule)  # one per fault, one or more for the closed port
    assert {"retry:connection", "retry:http_500", "retry:rate_limit", "retry:bad_response", "retry:timeout"} <= set(causes)
    same_rows(rows(faulted), reference)  # nothing lost, nothing changed

    # 3. an outage that outlasts the retry budget, after the first step's checkpoint
    first_step = json.loads((clean / "summary.json").read_text())["backend"]
    per_step = (first_step["generate_calls"] + first_step["score_calls"]) // 2
    down_from = per_step + 5
    proxy = FaultProxy(llama_server, free_port(), lambda k: "down" if k >= down_from else None)
    proxy.start()
    broken = tmp_path / "broken"
    try:
        res = society(broken, f"http://127.0.0.1:{proxy.port}")
    finally:
        proxy.stop()
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()[-1]
    assert err.startswith("agora: error: model server") and "after 7 attempts" in err and "503" in err
    assert (broken / "checkpoint.json").exists() and not (broken / "summary.json").exists()
    assert json.loads((broken / "checkpoint.json").read_text())["extra"]["society"]["state"]["steps"] == 1

    # the server is back (at another address): resume with the stored config, pointed at the live server
    res = agora(f"resume={broken}", f"llm.base_url={llama_server}/v1")
    assert res.returncode == 0, res.stderr[-3000:]
    same_rows(rows(broken), reference)
    assert json.loads((broken / "summary.json").read_text())["resumed_after_step"] == 1

    # 4. the likelihood readers need the model's chat template for llama.cpp's echo form: without
    #    llm.tokenizer the run is refused at start-up in one line, before any work
    res = society(tmp_path / "likelihood", llama_server, "sim.choice_reader=likelihood")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    err = res.stderr.strip().splitlines()[-1]
    assert "completions echo form" in err and "llm.tokenizer" in err
    assert not (tmp_path / "likelihood" / "stances.parquet").exists()


def test_likelihood_readers_in_the_echo_form_match_the_embedded_model(llama_server, tmp_path):
    """llama-cpp-python's server with ``--logits_all true`` echoes the prompt's log-probabilities: a
    society on the default (likelihood) readers finishes through it, and its readings of the same
    requests equal the embedded backend's within the difference of two kernels (llama.cpp computes the
    Q4_1 weights with 8-bit activations; the embedded backend runs the same weights dequantised to
    float32)."""
    import asyncio

    from agents import prompts
    from agents.llm.base import ScoreRequest
    from agents.llm.embedded import EmbeddedBackend, locate_gguf
    from agents.llm.openai_compat import OpenAICompatibleBackend
    from agents.scoring import likelihood_p_first
    from scenarios.dilemma import load_dilemmas

    gguf = str(locate_gguf())
    run = tmp_path / "likelihood"
    # llama-cpp-python builds an echo's log-probabilities in Python, sorting the vocabulary once per prompt
    # token: a society of 2 agents for 1 step (19 scored replies) is what a test can afford
    res = society(run, llama_server, "sim.choice_reader=likelihood", "sim.judge_reader=likelihood", f"llm.tokenizer={gguf}",
                  "population.size=2", "sim.steps=1", "llm.timeout_s=300", "llm.concurrency=1", timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((run / "summary.json").read_text())
    assert s["backend"]["extra"]["continuation_form:echo"] == 1 and s["counts"]["preferences"] > 0
    assert pl.read_parquet(run / "preferences.parquet")["p_a"].is_between(0, 1).all()

    dilemmas = load_dilemmas("default")[:3]
    replies = ("I would stay, for the greater good 🙂", "是的。我会留下。", prompts.continuation("I refuse. " * 200),
               "Cafe\u0301 — nai\u0308ve, but kind.")
    requests = [ScoreRequest(messages=prompts.choice_messages(d, None), choices=(d.action_a, d.action_b), continuation=True)
                for d in dilemmas]
    requests += [ScoreRequest(messages=prompts.judge_likelihood_messages(dilemmas[0], None, "Choose the kinder answer."),
                              choices=(replies[k], replies[k + 1]), continuation=True) for k in (0, 2)]
    served = asyncio.run(OpenAICompatibleBackend(base_url=f"{llama_server}/v1", model="smollm2", tokenizer=gguf,
                                                 timeout_s=300, concurrency=1).score_choices(requests))
    local = asyncio.run(EmbeddedBackend().score_choices(requests))
    diffs = [abs(a - b) for sa, sb in zip(served, local, strict=True) for a, b in zip(sa, sb, strict=True)]
    rel = [abs(a - b) / abs(b) for sa, sb in zip(served, local, strict=True) for a, b in zip(sa, sb, strict=True)]
    ps = [(likelihood_p_first(sa, r.choices), likelihood_p_first(sb, r.choices))
          for r, sa, sb in zip(requests, served, local, strict=True)]
    print(f"echo form vs embedded on {len(diffs)} scored replies: max |diff| {max(diffs):.3f} nats, max relative "
          f"{max(rel):.3%}; P(a) pairs {[(round(a, 3), round(b, 3)) for a, b in ps]}")  # shown by `make test-slow`
    assert max(rel) < 0.05 and max(diffs) < 2.0
    assert all(abs(a - b) < 0.25 or (a > 0.5) == (b > 0.5) for a, b in ps)
