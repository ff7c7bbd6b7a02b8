"""The openai_compatible backend against a local HTTP server speaking the chat-completions API.

(A real llama.cpp/vLLM server test belongs to the reliability work; this one checks our side of
the protocol: requests, logprob reading, the parsed-letter fallback, and errors.)
"""

import asyncio
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agents.llm.base import BackendError, ChatMessage, GenerateRequest, ScoreRequest
from agents.llm.openai_compat import OpenAICompatibleBackend


class Handler(BaseHTTPRequestHandler):
    with_logprobs = True
    seen: list[dict] = []

    def log_message(self, *a):  # keep test output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Handler.seen.append(body)
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "B because."}}
        if body.get("logprobs") and Handler.with_logprobs:
            choice["message"]["content"] = "B"
            top = [{"token": "B", "logprob": -0.2, "bytes": [66]}, {"token": "A", "logprob": -1.8, "bytes": [65]}]
            choice["logprobs"] = {"content": [{"token": "B", "logprob": -0.2, "bytes": [66], "top_logprobs": top}]}
        out = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"], "choices": [choice],
               "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(handler):
    """A loopback chat-completions server with ``handler``: yields its base URL."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    finally:
        srv.shutdown()


@pytest.fixture()
def server():
    yield from serve(Handler)


MSGS = (ChatMessage(role="user", content="A or B?"),)


def test_generate_and_score_with_logprobs(server):
    Handler.with_logprobs, Handler.seen = True, []
    b = OpenAICompatibleBackend(base_url=server, model="tiny", max_retries=0)
    (text,) = asyncio.run(b.generate([GenerateRequest(messages=MSGS, max_new_tokens=5, seed=3)]))
    assert text == "B because."
    assert Handler.seen[0]["max_tokens"] == 5 and Handler.seen[0]["seed"] == 3
    (s,) = asyncio.run(b.score_choices([ScoreRequest(messages=MSGS, choices=("A", "B"))]))
    assert s[1] > s[0] and sum(2.718281828 ** x for x in s) == pytest.approx(1.0)
    assert b.stats.fallbacks == 0


def test_score_without_logprobs_falls_back_to_parsed_letter_and_counts_it(server):
    Handler.with_logprobs = False
    b = OpenAICompatibleBackend(base_url=server, model="tiny", max_retries=0)
    (s,) = asyncio.run(b.score_choices([ScoreRequest(messages=MSGS, choices=("A", "B"))]))
    assert s[1] > s[0] and b.stats.fallbacks == 1


def test_unreachable_server_gives_one_line_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    b = OpenAICompatibleBackend(base_url=f"http://127.0.0.1:{port}/v1", model="tiny", max_retries=0, timeout_s=5)
    with pytest.raises(BackendError) as err:
        asyncio.run(b.generate([GenerateRequest(messages=MSGS)]))
    assert "\n" not in str(err.value) and f"127.0.0.1:{port}" in str(err.value)


class FaultyHandler(Handler):
    """Serves ``Handler``'s replies after a scripted queue of faults, one per request."""

    faults: list[str] = []

    def do_POST(self):
        fault = FaultyHandler.faults.pop(0) if FaultyHandler.faults else None
        length = int(self.headers["Content-Length"])
        if fault == "drop":  # read the request, then close the connection without a reply
            self.rfile.read(length)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault in ("500", "429", "truncated", "slow"):
            self.rfile.read(length)
            if fault == "slow":
                import time

                time.sleep(1.5)  # past the client's timeout
                return
            status, body = {"500": (500, b'{"error": {"message": "boom"}}'),
                            "429": (429, b'{"error": {"message": "slow down"}}'),
                            "truncated": (200, b'{"id": "x", "object": "chat.completion", "choi')}[fault]
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if fault == "429":
                self.send_header("Retry-After", "0.2")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.rfile = __import__("io").BytesIO(self.rfile.read(length))
        super().do_POST()


@pytest.fixture()
def faulty():
    yield from serve(FaultyHandler)


def test_retries_every_transient_fault_with_backoff_and_counts_them(faulty):
    import time

    Handler.with_logprobs = True
    FaultyHandler.faults = ["500", "429", "truncated", "drop", "slow"]
    b = OpenAICompatibleBackend(base_url=faulty, model="tiny", max_retries=5, backoff_s=0.01, timeout_s=1.0)
    t0 = time.perf_counter()
    (s,) = asyncio.run(b.score_choices([ScoreRequest(messages=MSGS, choices=("A", "B"))]))
    assert s[1] > s[0]  # the answer after the faults is the real one
    assert b.stats.retries == 5
    assert b.stats.extra == {"retry:http_500": 1, "retry:rate_limit": 1, "retry:bad_response": 1, "retry:connection": 1,
                             "retry:timeout": 1}
    assert time.perf_counter() - t0 >= 0.2  # Retry-After was honoured


def test_persistent_faults_fail_in_one_line_after_the_retry_budget(faulty):
    FaultyHandler.faults = ["500"] * 10
    b = OpenAICompatibleBackend(base_url=faulty, model="tiny", max_retries=2, backoff_s=0.01)
    with pytest.raises(BackendError) as err:
        asyncio.run(b.generate([GenerateRequest(messages=MSGS)]))
    assert "after 3 attempts" in str(err.value) and "\n" not in str(err.value) and b.stats.retries == 2
    FaultyHandler.faults = []


def test_client_errors_are_not_retried():
    class Reject(FaultyHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(400)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    running = serve(Reject)
    b = OpenAICompatibleBackend(base_url=next(running), model="tiny", max_retries=3)
    with pytest.raises(BackendError):
        asyncio.run(b.generate([GenerateRequest(messages=MSGS)]))
    assert b.stats.retries == 0
    running.close()


def test_works_across_event_loops_under_contention(server):
    """A society runs each step in its own asyncio.run: the limit and connections must follow the loop."""
    Handler.with_logprobs = True
    b = OpenAICompatibleBackend(base_url=server, model="tiny", max_retries=0, concurrency=1)
    for _ in range(2):
        out = asyncio.run(b.score_choices([ScoreRequest(messages=MSGS, choices=("A", "B"))] * 3))
        assert len(out) == 3 and all(s[1] > s[0] for s in out)


def test_each_event_loop_closes_its_own_connections(server, caplog):
    """A session made on one ``asyncio.run`` is closed on that loop as it ends, not left to the garbage
    collector, which used to log 'Event loop is closed' tracebacks (and aiohttp 'Unclosed client session')."""
    import gc
    import logging

    Handler.with_logprobs = True
    b = OpenAICompatibleBackend(base_url=server, model="tiny", max_retries=0, concurrency=2)
    sessions = []
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        for _ in range(3):
            out = asyncio.run(b.score_choices([ScoreRequest(messages=MSGS, choices=("A", "B"))] * 3))
            assert len(out) == 3
            sessions.append(b._session)
        gc.collect()
    assert len({id(s) for s in sessions}) == 3 and all(s.closed for s in sessions)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]


def test_a_loop_left_open_keeps_its_session_until_it_closes(server, caplog):
    """A run's one loop (``asyncio.Runner``) stays open between its stages while other work runs its own
    ``asyncio.run`` (the society's evaluation after its steps): the open loop's session is closed when that loop
    closes, on that loop, with nothing logged."""
    import gc
    import logging

    b = OpenAICompatibleBackend(base_url=server, model="tiny", max_retries=0, concurrency=2)
    req = [ScoreRequest(messages=MSGS, choices=("A", "B"))] * 2
    sessions = []
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        with asyncio.Runner() as runner:
            runner.run(b.score_choices(req))
            sessions.append(b._session)
            asyncio.run(b.score_choices(req))
            sessions.append(b._session)
            gc.collect()
            assert not sessions[0].closed and sessions[1].closed
            runner.run(b.score_choices(req))  # back on the run's loop: a session of its own again
            sessions.append(b._session)
        gc.collect()
    assert len({id(s) for s in sessions}) == 3 and all(s.closed for s in sessions)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]


def test_http_errors_name_the_status_and_the_servers_message():
    class Reject(FaultyHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            data = b'{"error": {"message": "model fake not found"}}'
            self.send_response(404)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    running = serve(Reject)
    b = OpenAICompatibleBackend(base_url=next(running), model="tiny", max_retries=3)
    with pytest.raises(BackendError) as err:
        asyncio.run(b.generate([GenerateRequest(messages=MSGS)]))
    assert str(err.value).endswith("failed: HTTP 404: model fake not found") and b.stats.retries == 0
    running.close()


def test_the_environment_proxy_is_looked_up_once_and_no_proxy_is_honoured(monkeypatch):
    from agents.llm.openai_compat import _env_proxy

    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    assert _env_proxy("http://gpu1:8000/v1") == "http://proxy.example:3128"
    assert _env_proxy("http://127.0.0.1:8000/v1") is None
    assert _env_proxy("https://api.example/v1") is None  # no https_proxy set
