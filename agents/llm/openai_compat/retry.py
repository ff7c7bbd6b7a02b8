"""Retrying a model server's transient failures, each retry counted: a wrapper around one call, not a subclass
(Concordia's ``retry_wrapper``)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from agents.llm.base import BackendError, BackendStats
from agents.llm.openai_compat.replies import ServerStatus
from agents.llm.server_logprobs import MalformedResponse

T = TypeVar("T")


def retry_cause(exc: BaseException) -> tuple[str | None, float]:
    """``(cause, seconds to wait at least)`` for a failure worth retrying, ``(None, 0)`` otherwise."""
    import aiohttp

    if isinstance(exc, TimeoutError):  # asyncio's total timeout and aiohttp's connect/read timeouts
        return "timeout", 0.0
    if isinstance(exc, aiohttp.InvalidURL):
        return None, 0.0
    if isinstance(exc, (aiohttp.ClientError, OSError)):  # refused, reset or dropped connections; a cut-off body
        return "connection", 0.0
    if isinstance(exc, ServerStatus):
        if exc.status == 429:
            return "rate_limit", min(exc.retry_after or 0.0, 300.0)
        if exc.status >= 500 or exc.status in (408, 409):
            return f"http_{exc.status}", 0.0
        return None, 0.0
    if isinstance(exc, ValueError):  # MalformedResponse: a truncated or malformed 200 body
        return "bad_response", 0.0
    return None, 0.0


class Retrying:
    """``await retrying(call)``: ``call()``'s result, a failure that may pass retried.

    Failures that may pass (:func:`retry_cause`: refused or dropped connections, timeouts, 5xx, 429, a malformed
    body) are retried up to ``max_retries`` times with exponential backoff and jitter (``backoff_s`` × 2^attempt
    × U[0.5, 1.5], at most ``max_backoff_s``; a 429's ``Retry-After`` is waited at least). Each retry is counted in
    ``stats``: ``stats.retries`` and ``stats.extra["retry:<cause>"]``. Any other failure, or the last one, is a
    one-line :class:`BackendError` naming ``server``.

    Args:
        server: what the error names (the server's URL).
        stats: the backend's counters.
        max_retries, backoff_s, max_backoff_s: the policy above.
    """

    def __init__(self, server: str, stats: BackendStats, *, max_retries: int, backoff_s: float, max_backoff_s: float) -> None:
        self.server, self.stats = server, stats
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
        self._jitter = random.Random(0)  # timing only; never touches what the run computes

    async def __call__(self, call: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                return await call()
            except Exception as exc:
                cause, wait_at_least = retry_cause(exc)
                if cause is None or attempt >= self.max_retries:
                    tried = f" after {attempt + 1} attempts" if attempt else ""
                    raise BackendError(f"model server {self.server} failed{tried}: {describe(exc)}") from exc
                self.stats.retries += 1
                self.stats.extra[f"retry:{cause}"] = self.stats.extra.get(f"retry:{cause}", 0) + 1
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * self._jitter.uniform(0.5, 1.5)
                await asyncio.sleep(min(max(delay, wait_at_least), max(self.max_backoff_s, wait_at_least)))
                attempt += 1


def describe(exc: BaseException) -> str:
    """A failure in one line, as an error message ends."""
    msg = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, (BackendError, ServerStatus)):
        return msg
    if isinstance(exc, MalformedResponse):
        return f"malformed response: {msg}"
    if isinstance(exc, TimeoutError):
        return f"no reply within the timeout ({type(exc).__name__}{': ' + msg if msg else ''})"
    if retry_cause(exc)[0] == "connection":
        return f"Connection failed ({type(exc).__name__}{': ' + msg if msg else ''})"
    return f"{type(exc).__name__}: {msg}"
