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


@pytest.fixture()
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


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
