"""A deterministic OpenAI-compatible chat server for fleet tests and the client-throughput benchmark.

    python -m tests.fake_server --port PORT [--latency-ms MS] [--log FILE]

Every reply is a function of the request alone (a SHA-256 of the canonical JSON of the fields agora sends), so any number of
these servers, behind any router, answer a request identically: a run through a fleet can be compared
row for row with a run against one server. It answers the three shapes agora's ``openai_compatible``
backend sends, as vLLM does:

- a chat completion (``generate``): a reply opening with ``A.`` or ``B.``, at most ``max_tokens`` words;
- a label reading (``logprobs``/``top_logprobs``): one token with ``A``, ``B``, ``Yes`` and ``No`` among
  the top log-probabilities (their probabilities sum to 0.9);
- a scored continuation (``prompt_logprobs`` with ``continue_final_message``): vLLM's ``prompt_logprobs``
  list over the whole prompt (each message in a ChatML frame, cut into word and punctuation tokens, the
  final assistant message left open), each token with a log-probability.

``GET /health`` and ``GET /v1/models`` answer too (routers probe them). With ``--log``, each answered
request appends one line (its kind) to the file, flushed, so a test counts what each server served even
after killing it. The server is asyncio's ``Protocol`` over HTTP/1.1 keep-alive, not an HTTP framework:
it parses only what clients send here (a request line, headers, a ``Content-Length`` body), which keeps
it fast enough that the benchmark measures the client rather than the server. It binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import sys
from typing import Any

_TOKENS = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")  # words (with the space before them) and single punctuation marks
LABELS = ("A", "B", "Yes", "No")


def _units(key: bytes, n: int) -> list[float]:
    """``n`` stable numbers in [0, 1) from ``key``."""
    out: list[float] = []
    block = 0
    while len(out) < n:
        digest = hashlib.sha256(key + block.to_bytes(4, "big")).digest()
        out += [int.from_bytes(digest[i:i + 4], "big") / 2**32 for i in range(0, 32, 4)]
        block += 1
    return out[:n]


# What agora's client sends. A router re-serialises the body and adds fields at their defaults (vllm-router:
# "stream": false, "logprobs": false, "continue_final_message": false, ...): a field absent or at its default is one.
ASKED = ("model", "messages", "max_tokens", "temperature", "top_p", "seed", "logprobs", "top_logprobs", "prompt_logprobs",
         "continue_final_message", "add_generation_prompt")
DEFAULTS = {"logprobs": False, "continue_final_message": False, "add_generation_prompt": True}


def request_key(req: dict[str, Any]) -> bytes:
    """The canonical JSON of what ``req`` asks (the fields in :data:`ASKED`, none at its default)."""
    asked = {k: req[k] for k in ASKED if req.get(k) is not None and req[k] is not DEFAULTS.get(k)}
    return json.dumps(asked, sort_keys=True, separators=(",", ":")).encode()


def reply(req: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(kind, body)`` of the chat completion answering ``req``: a pure function of :func:`request_key`."""
    key = request_key(req)
    messages = req.get("messages") or [{"content": ""}]
    prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
    body: dict[str, Any] = {"id": "cmpl-" + hashlib.sha256(key).hexdigest()[:16], "object": "chat.completion",
                            "created": 0, "model": req.get("model", "fake")}
    if req.get("prompt_logprobs") is not None:  # vLLM's extension: the prompt's own tokens' log-probabilities
        kind = "continuation"
        # every prompt token, as vLLM returns them: each message in a ChatML frame, the last one left open
        tokens: list[str] = []
        for i, m in enumerate(messages):
            tokens += ["<|im_start|>", str(m.get("role", "")), "\n", *_TOKENS.findall(str(m.get("content", "")))]
            tokens += ["<|im_end|>", "\n"] if i < len(messages) - 1 else []
        units = _units(key, len(tokens))
        entries: list[Any] = [None]  # the first prompt token has no log-probability
        for i, (token, u) in enumerate(zip(tokens[1:], units[1:], strict=True)):
            entries.append({str(1000 + i): {"logprob": -0.05 - 4.0 * u, "rank": 1 + int(u * 10), "decoded_token": token}})
        body["prompt_logprobs"] = entries
        choice = {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "."}}
        completion = 1
    elif req.get("logprobs"):
        kind = "label"
        u = _units(key, len(LABELS))
        z = sum(math.exp(3 * x) for x in u)
        top = [{"token": t, "logprob": math.log(0.9 * math.exp(3 * x) / z), "bytes": list(t.encode())}
               for t, x in zip(LABELS, u, strict=True)]
        top.sort(key=lambda e: -e["logprob"])
        first = dict(top[0]) | {"top_logprobs": top[: max(1, int(req.get("top_logprobs") or 1))]}
        choice = {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": first["token"]},
                  "logprobs": {"content": [first]}}
        completion = 1
    else:
        kind = "generate"
        u = _units(key, 2)
        words = f"{'A' if u[0] < 0.5 else 'B'}. Because it weighs what matters most here, reply {u[1]:.6f}.".split()
        words = words[: max(1, int(req.get("max_tokens") or 16))]
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": " ".join(words)}}
        completion = len(words)
    body["choices"] = [choice]
    body["usage"] = {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": completion,
                     "total_tokens": prompt_chars // 4 + 1 + completion}
    return kind, body


class _Http(asyncio.Protocol):
    """One keep-alive connection: requests answered in the order they arrive."""

    def __init__(self, server: FakeServer) -> None:
        self.server, self.buf = server, b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            headers = dict((k.strip().lower(), v.strip()) for k, _, v in (h.partition(":") for h in head[1:]))
            length = int(headers.get("content-length", 0))
            if len(self.buf) < end + 4 + length:
                return
            payload, self.buf = self.buf[end + 4:end + 4 + length], self.buf[end + 4 + length:]
            method, path = (head[0].split(" ") + ["", ""])[:2]
            kind, status, data = self.server.answer(method, path.split("?")[0], payload)
            close = headers.get("connection", "").lower() == "close"
            out = (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n"
                   f"connection: {'close' if close else 'keep-alive'}\r\n\r\n").encode() + data
            if self.server.latency_s > 0:
                asyncio.get_running_loop().call_later(self.server.latency_s, self._send, out, close, kind)
            else:
                self._send(out, close, kind)

    def _send(self, out: bytes, close: bool, kind: str | None) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)
            if kind and self.server.log:  # logged as sent: a reply still waiting out its latency is not answered
                self.server.log.write(kind + "\n")
            if close:
                self.transport.close()


class FakeServer:
    """The server's state: its latency and the log of what it answered."""

    def __init__(self, latency_s: float = 0.0, log: str | None = None) -> None:
        self.latency_s = latency_s
        self.cache: dict[bytes, tuple[str, bytes]] = {}
        self.log = open(log, "a", buffering=1) if log else None  # noqa: SIM115 (open for the server's life)

    def answer(self, method: str, path: str, payload: bytes) -> tuple[str | None, str, bytes]:
        """``(kind of chat completion or None, HTTP status, body)``."""
        if method == "GET" and path in ("/health", "/v1/health"):
            return None, "200 OK", b"{}"
        if method == "GET" and path == "/v1/models":
            return None, "200 OK", b'{"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "agora"}]}'
        if method != "POST" or path != "/v1/chat/completions":
            return None, "404 Not Found", b'{"error": {"message": "not found"}}'
        try:
            req = json.loads(payload)
            if not isinstance(req, dict):
                raise ValueError("not an object")
            key = request_key(req)
            if key not in self.cache:  # a request seen before gets its reply at once (the benchmark repeats a step)
                kind, body = reply(req)
                self.cache[key] = (kind, json.dumps(body).encode())
                if len(self.cache) > 100_000:
                    self.cache.pop(next(iter(self.cache)))
        except (ValueError, TypeError) as exc:
            return None, "400 Bad Request", json.dumps({"error": {"message": f"bad request: {exc}"}}).encode()
        return self.cache[key][0], "200 OK", self.cache[key][1]


async def serve(port: int, latency_s: float = 0.0, log: str | None = None) -> None:
    server = FakeServer(latency_s, log)
    srv = await asyncio.get_running_loop().create_server(lambda: _Http(server), "127.0.0.1", port, backlog=1024)
    print(f"listening on 127.0.0.1:{srv.sockets[0].getsockname()[1]}", flush=True)
    async with srv:
        await srv.serve_forever()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--latency-ms", type=float, default=0.0, help="delay before each reply")
    ap.add_argument("--log", default=None, help="append each answered request's kind to this file")
    a = ap.parse_args(argv)
    try:
        asyncio.run(serve(a.port, a.latency_ms / 1000, a.log))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()


class Process:
    """``python -m tests.fake_server`` on a free loopback port (for tests and benchmarks): ``url``, ``answered()``, ``stop()``."""

    def __init__(self, log: str | None = None, latency_ms: float = 0.0) -> None:
        import os
        import subprocess
        from pathlib import Path

        root = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(root), os.environ.get("PYTHONPATH"))))}
        self.log = Path(log) if log else None
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fake_server", "--port", "0", "--latency-ms", str(latency_ms),
                                      *(["--log", str(log)] if log else [])], cwd=root, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""  # printed once it listens
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the fake server did not start (exit {self.proc.poll()})")
        self.port = int(line.rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def answered(self) -> int:
        """Chat completions answered so far (needs ``log``)."""
        return sum(1 for _ in self.log.open()) if self.log and self.log.exists() else 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
