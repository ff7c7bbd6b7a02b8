"""How many requests per second one agora process issues through its ``openai_compatible`` client, the
figure that decides how many model servers one society can keep busy.

The server is ``tests/fake_server.py`` in its own process with no latency: it answers each request
at once, deterministically, so what is measured is the client. The requests are a real society
step's: one scripted step of 64 agents is run and every call it makes is recorded (4 chat completions
and 9 scored continuations per agent with the default readers), then replayed as the society issues
them (each agent's call on its own, all of a phase at once) at concurrency 1 to 512
(``llm.concurrency``). Every round's answers must equal the first round's. The server alone is
measured with a bare keep-alive HTTP client, so it is known not to be the bottleneck, and one round is
profiled with cProfile. Not in ``make bench`` (marked slow); ``make bench-client`` runs it:

    python -m pytest benches/test_client_throughput.py -m slow --benchmark-json=benches/client.json
    python -m benches.report benches/results.json --profile benches/profile.json --client benches/client.json
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import platform
import pstats
import re
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agents.llm.base import GenerateRequest, ScoreRequest
from benches.workloads import rounds

pytestmark = pytest.mark.slow
CONCURRENCY = (1, 8, 32, 128, 512)
AGENTS = 64  # the recorded step; replayed REPEAT times per round (~3,300 HTTP requests)
REPEAT = 4

# own-time buckets of the profile: the first match of a frame's file path (built-ins: of their name) wins
BUCKETS = (("idle in epoll (the client waiting on the server)", ("select.epoll",)),
           ("sockets (send, recv)", ("_socket.socket",)),
           ("HTTP client (aiohttp, yarl, multidict)", ("/aiohttp/", "/yarl/", "/multidict/", "/propcache/")),
           ("event loop (asyncio)", ("/asyncio/", "selectors.py", "_contextvars", "_asyncio")),
           ("JSON (json)", ("/json/", "_json")),
           ("agora client (agents/llm)", ("agents/llm/",)),
           ("openai SDK, pydantic, httpx (if used)", ("/openai/", "/pydantic", "/httpx", "/httpcore", "/anyio/")),
           ("benchmark harness", ("benches/",)))


@pytest.fixture(autouse=True)
def _environment(request):
    """Overrides ``benches/conftest.py``'s: no model is loaded here."""
    import openai

    request.getfixturevalue("benchmark").extra_info["environment"] = {
        "python": platform.python_version(), "cpus": os.cpu_count(), "openai": openai.__version__}


def society_calls(agents: int = AGENTS) -> list[tuple[str, GenerateRequest | ScoreRequest]]:
    """Every call one scripted society step makes, in order: ``("generate", request)`` or ``("score", request)``."""
    from agents.llm.scripted import ScriptedBackend
    from sim.experiments import run_experiment as run
    from tests.helpers import compose

    backend = ScriptedBackend(record=True)
    cfg = compose(f"population.size={agents}", "sim.steps=1", "calibration.enabled=false")
    with tempfile.TemporaryDirectory() as tmp:
        run(cfg, Path(tmp), backend=backend)
    return [("generate", r) for r in backend.seen_generate] + [("score", r) for r in backend.seen_score]


def http_count(calls: list[tuple[str, Any]]) -> Counter[str]:
    """HTTP requests by kind: a chat completion, a label reading (one request), a scored continuation (one per choice)."""
    out: Counter[str] = Counter()
    for op, r in calls:
        if op == "generate":
            out["generate"] += 1
        elif r.continuation:
            out["continuation"] += len(r.choices)
        else:
            out["label"] += 1
    return out


def token_counts(calls: list[tuple[str, Any]]) -> dict[str, float]:
    """Mean prompt tokens of each kind of HTTP request, and the mean generation budget, counted with the
    embedded model's tokenizer and chat template (SmolLM2's; other models' tokenizers differ by some tens
    of per cent)."""
    from transformers import AutoTokenizer

    from agents.llm.embedded import prepare_default_model

    tok = AutoTokenizer.from_pretrained(prepare_default_model())
    def n(msgs: list[dict], **kw: Any) -> int:
        return len(tok.apply_chat_template(msgs, tokenize=True, return_dict=True, **kw)["input_ids"])

    gen, cont, budget = [], [], []
    for op, r in calls:
        msgs = [{"role": m.role, "content": m.content} for m in r.messages]
        if op == "generate":
            gen.append(n(msgs, add_generation_prompt=True))
            budget.append(r.max_new_tokens)
        elif r.continuation:
            cont += [n([*msgs, {"role": "assistant", "content": r.assistant_prefix + c}], continue_final_message=True)
                     for c in r.choices]
    return {"generate_prompt": round(statistics.mean(gen), 1), "generate_budget": round(statistics.mean(budget), 1),
            "continuation_prompt": round(statistics.mean(cont), 1)}


def http_bodies(calls: list[tuple[str, Any]], model: str = "fake") -> list[bytes]:
    """The JSON bodies agora's client sends for ``calls`` (for the bare client that measures the server alone)."""
    out = []
    for op, r in calls:
        msgs = [{"role": m.role, "content": m.content} for m in r.messages]
        if op == "generate":
            out.append({"messages": msgs, "model": model, "max_tokens": r.max_new_tokens, "seed": r.seed,
                        "temperature": r.temperature, "top_p": r.top_p})
        elif r.continuation:
            out += [{"messages": [*msgs, {"role": "assistant", "content": r.assistant_prefix + c}], "model": model,
                     "max_tokens": 1, "temperature": 0.0, "continue_final_message": True, "add_generation_prompt": False,
                     "prompt_logprobs": 0} for c in r.choices]
        else:
            out.append({"messages": msgs, "model": model, "max_tokens": 1, "temperature": 0.0, "logprobs": True,
                        "top_logprobs": 10})
    return [json.dumps(b).encode() for b in out]


def server_alone(port: int, bodies: list[bytes], n: int, connections: int = 64) -> float:
    """Requests/s the server answers to a bare keep-alive client (``connections`` of them, one request in
    flight each); every reply is checked to be a 200."""
    reqs = [b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(b), b) for b in bodies]
    length = re.compile(rb"content-length: (\d+)", re.IGNORECASE)

    async def main() -> float:
        todo = iter(range(n))

        async def worker() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for i in todo:
                writer.write(reqs[i % len(reqs)])
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head[:40]
                m = length.search(head)
                await reader.readexactly(int(m.group(1)) if m else 0)
            writer.close()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return n / (time.perf_counter() - t0)

    return asyncio.run(main())


def replay(backend, calls: list[tuple[str, Any]]) -> list[Any]:
    """One step's calls as a society issues them: each on its own (one request per call), all at once."""

    async def one(op: str, r: Any) -> Any:
        return (await backend.generate([r]))[0] if op == "generate" else (await backend.score_choices([r]))[0]

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(one(op, r) for op, r in calls)))

    return asyncio.run(main())


def profile_round(backend, calls) -> dict[str, Any]:
    """cProfile of one replayed round: own time by bucket and the top functions by own time."""
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    replay(backend, calls)
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    own: Counter[str] = Counter()
    rows = []
    for (file, line, name), (_cc, ncalls, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = name if file == "~" else file
        bucket = next((b for b, keys in BUCKETS if any(k in where for k in keys)), "other")
        own[bucket] += tottime
        short = "/".join(Path(file).parts[-2:]) if file != "~" else "(built-in)"
        rows.append((tottime, ncalls, f"{name} ({short}:{line})"))
    rows.sort(reverse=True)
    total = sum(own.values())
    return {"wall_s": round(wall, 3), "profiled_s": round(total, 3),
            "buckets": {k: round(v / total, 3) for k, v in own.most_common()},
            "top": [{"function": f, "own_s": round(t, 3), "calls": n} for t, n, f in rows[:12]]}


def test_client_throughput(benchmark):
    from agents.llm.openai_compat import OpenAICompatibleBackend
    from tests.fake_server import Process

    step = society_calls()
    mix = http_count(step)
    tokens = token_counts(step)
    calls = step * REPEAT
    n_http = sum(mix.values()) * REPEAT
    server = Process()
    try:
        alone = [server_alone(server.port, http_bodies(step), n_http) for _ in range(rounds(3))]
        table, reference = [], None
        for c in CONCURRENCY:
            backend = OpenAICompatibleBackend(base_url=f"{server.url}/v1", model="fake", concurrency=c, max_retries=0,
                                              timeout_s=60)
            seconds = []
            for _ in range(rounds(3)):
                t0 = time.perf_counter()
                out = replay(backend, calls)
                seconds.append(time.perf_counter() - t0)
                reference = reference or out
                assert out == reference  # same answers at every concurrency, every round
            rates = [n_http / s for s in seconds]
            assert backend.stats.retries == 0 and backend.stats.fallbacks == 0
            table.append({"concurrency": c, "rounds": len(rates), "req_per_s": round(statistics.mean(rates), 1),
                          "req_per_s_sd": round(statistics.stdev(rates), 1) if len(rates) > 1 else None,
                          "seconds": [round(s, 3) for s in seconds]})
        best = max(table, key=lambda r: r["req_per_s"])
        backend = OpenAICompatibleBackend(base_url=f"{server.url}/v1", model="fake", concurrency=best["concurrency"],
                                          max_retries=0)
        benchmark.pedantic(lambda: replay(backend, calls), rounds=1, iterations=1)  # pytest-benchmark's own record
        profile = profile_round(backend, calls)
    finally:
        server.stop()
    benchmark.extra_info.update(
        name="client_throughput", agents=AGENTS, repeat=REPEAT, http_requests_per_round=n_http,
        mix_per_agent={k: round(v / AGENTS, 2) for k, v in sorted(mix.items())}, tokens=tokens,
        server_alone_req_per_s=round(statistics.mean(alone), 1),
        server_alone_sd=round(statistics.stdev(alone), 1) if len(alone) > 1 else None,
        table=table, best_concurrency=best["concurrency"], profile=profile | {"concurrency": best["concurrency"]})
    print(json.dumps({k: benchmark.extra_info[k] for k in ("mix_per_agent", "server_alone_req_per_s", "table")}, indent=1))
    print(json.dumps(profile, indent=1))
    assert best["req_per_s"] < benchmark.extra_info["server_alone_req_per_s"]  # the client, not the server, is measured
