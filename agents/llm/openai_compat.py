"""Any OpenAI-compatible chat server (vLLM, llama.cpp server, Ollama) through autogen-ext's client."""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
from collections.abc import Sequence

from agents.llm.base import BackendError, BackendStats, ChatMessage, GenerateRequest, ScoreRequest

UNSEEN_LOGPROB = -30.0  # a choice absent from the server's top_logprobs gets this (~1e-13)


def to_autogen(messages: Sequence[ChatMessage]) -> list:
    from autogen_core.models import AssistantMessage, SystemMessage, UserMessage

    out: list = []
    for m in messages:
        if m.role == "system":
            out.append(SystemMessage(content=m.content))
        elif m.role == "assistant":
            out.append(AssistantMessage(content=m.content, source="assistant"))
        else:
            out.append(UserMessage(content=m.content, source="user"))
    return out


def retry_cause(exc: BaseException) -> tuple[str | None, float]:
    """``(cause, seconds to wait at least)`` for a failure worth retrying, ``(None, 0)`` otherwise."""
    import json

    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timeout", 0.0
    if isinstance(exc, openai.APIConnectionError):
        return "connection", 0.0
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        if code == 429:
            try:
                after = float(exc.response.headers.get("retry-after", 0))
            except ValueError:
                after = 0.0
            return "rate_limit", min(after, 300.0)
        if code >= 500 or code in (408, 409):
            return f"http_{code}", 0.0
        return None, 0.0
    if isinstance(exc, (openai.APIResponseValidationError, json.JSONDecodeError, ValueError)):
        return "bad_response", 0.0  # a truncated or malformed body
    return None, 0.0


class OpenAICompatibleBackend:
    """Chat completions over HTTP.

    ``score_choices`` asks for ``logprobs``/``top_logprobs`` of one token at temperature 0 and reads
    the candidates from them. Servers that return no logprobs get a recorded fallback: the reply's
    leading letter is parsed and given probability 1 (``stats.fallbacks`` counts these). The
    ``assistant_prefix`` of a score request cannot be prefilled over the chat API and is ignored.
    Multi-token candidates are scored by their first token.

    Failures that may pass (refused or dropped connections, timeouts, 5xx, 429, a body that is not
    valid JSON) are retried up to ``max_retries`` times with exponential backoff and jitter
    (``backoff_s`` × 2^attempt × U[0.5, 1.5], at most ``max_backoff_s``; a 429's ``Retry-After`` is
    waited at least). Retries are ours, not the SDK's, so each is counted: ``stats.retries`` and
    ``stats.extra["retry:<cause>"]``. Other 4xx fail at once. At most ``concurrency`` requests are in
    flight.
    """

    def __init__(self, *, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 60.0,
                 max_retries: int = 3, concurrency: int = 8, top_logprobs: int = 10, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0) -> None:
        self.name = model
        self.base_url = base_url
        self.stats = BackendStats()
        self._top = top_logprobs
        self.concurrency, self.timeout_s = concurrency, timeout_s
        self._api_key = os.environ.get(api_key_env) or "unused"
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
        self._jitter = random.Random(0)  # timing only; never touches what the run computes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bind()

    def _bind(self) -> None:
        """Clients and the concurrency limit for the running event loop. A society runs each step in
        its own ``asyncio.run``; a semaphore or an HTTP connection pool from an earlier, closed loop
        fails in the next one, so they are made anew whenever the loop changes."""
        import openai
        from autogen_ext.models.openai import OpenAIChatCompletionClient

        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._sem = asyncio.Semaphore(self.concurrency)
        self.raw = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key, timeout=self.timeout_s, max_retries=0)
        self.client = OpenAIChatCompletionClient(
            model=self.name, base_url=self.base_url, api_key=self._api_key,
            timeout=self.timeout_s, max_retries=0, include_name_in_message=False,
            model_info={"vision": False, "function_calling": False, "json_output": False,
                        "family": "unknown", "structured_output": False},
        )

    def _for_this_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._loop is not None:
                self._bind()
            self._loop = loop

    async def _create(self, messages: Sequence[ChatMessage], args: dict):
        chat = to_autogen(messages)
        return await self._retrying(lambda: self.client.create(chat, extra_create_args=args))

    async def _retrying(self, call):
        """``await call()`` under the concurrency limit, retrying transient failures (counted)."""
        self._for_this_loop()
        async with self._sem:
            for attempt in range(self.max_retries + 1):
                try:
                    return await call()
                except Exception as exc:
                    cause, wait_at_least = retry_cause(exc)
                    msg = str(exc).splitlines()[0] if str(exc) else ""
                    if cause is None or attempt == self.max_retries:
                        tried = f" after {attempt + 1} attempts" if attempt else ""
                        raise BackendError(f"model server {self.base_url} failed{tried}: {type(exc).__name__}: {msg}") from exc
                    self.stats.retries += 1
                    self.stats.extra[f"retry:{cause}"] = self.stats.extra.get(f"retry:{cause}", 0) + 1
                    delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * self._jitter.uniform(0.5, 1.5)
                    await asyncio.sleep(min(max(delay, wait_at_least), max(self.max_backoff_s, wait_at_least)))
        raise AssertionError("unreachable")

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        async def one(r: GenerateRequest) -> str:
            res = await self._create(r.messages, {"max_tokens": r.max_new_tokens, "temperature": r.temperature,
                                                  "top_p": r.top_p, "seed": r.seed})
            self.stats.generate_calls += 1
            self.stats.prompt_tokens += res.usage.prompt_tokens
            self.stats.generated_tokens += res.usage.completion_tokens
            return res.content if isinstance(res.content, str) else ""

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def score_choices(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        # The openai SDK directly, not autogen's client: autogen keeps a top-logprob's token only as
        # bytes, and servers such as llama.cpp's send ``bytes: null``, which would lose every alternative.
        async def one(r: ScoreRequest) -> list[float]:
            msgs = [{"role": m.role, "content": m.content} for m in r.messages]
            res = await self._retrying(lambda: self.raw.chat.completions.create(
                model=self.name, messages=msgs, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=self._top))
            self.stats.score_calls += 1
            if res.usage:
                self.stats.prompt_tokens += res.usage.prompt_tokens
            choice = res.choices[0]
            text = choice.message.content or ""
            if choice.logprobs and choice.logprobs.content:
                first = choice.logprobs.content[0]
                table = {first.token.strip(): first.logprob}
                for t in first.top_logprobs or []:
                    table.setdefault(t.token.strip(), t.logprob)
                raw = [table.get(c.strip(), UNSEEN_LOGPROB) for c in r.choices]
            else:
                self.stats.fallbacks += 1
                m = re.match(r"\s*\(?([A-Za-z0-9]+)", text)
                raw = [0.0 if m and m.group(1).strip() == c.strip() else UNSEEN_LOGPROB for c in r.choices]
            z = math.log(sum(math.exp(x) for x in raw))
            return [x - z for x in raw]

        return list(await asyncio.gather(*(one(r) for r in requests)))
