"""JSON over HTTP to a model server: an aiohttp session bound to the running event loop.

A plain aiohttp session posting JSON and reading the body as JSON, not the openai SDK: the SDK's per-request
work (type-walking every message, building its response objects) held one process to ~570 requests/s, falling
to ~270 at 512 in flight; this one issues 1,400-2,000 at every concurrency (``benches/test_client_throughput.py``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agents.llm.openai_compat.replies import ServerStatus, error_detail
from agents.llm.server_logprobs import MalformedResponse


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTP(S)_PROXY``, not for a ``NO_PROXY`` host), looked up
    once: aiohttp's ``trust_env`` looks it up, and reads ``~/.netrc``, in a worker thread on every request
    (two thread hops a request; and a netrc entry for the host would clash with the API key's header)."""
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class Transport:
    """POSTs JSON to ``base_url`` and reads the reply as JSON, at most ``concurrency`` requests in flight (over as
    many keep-alive connections), each within ``timeout_s``.

    Bound to the running event loop: a session, semaphore or lock made on one loop fails on another, so
    :meth:`bind` makes them once per loop (a run's stages share one loop, ``sim.run.lifecycle.Run.run_async``; each
    ``sim.run.aio.run`` is a loop of its own) and the session is closed on that loop as it ends (``asyncio.run`` and
    ``asyncio.Runner`` finalise async generators before closing their loop: :meth:`_close_at_shutdown`). A loop
    left open while another runs (a run's loop, between its stages) keeps its session until it closes.

    Attributes:
        limit: the running loop's concurrency limit (a semaphore; set by :meth:`bind`).
        lock: a lock of the running loop, for work done once whatever the concurrency (the backend's probe).
        session: the running loop's aiohttp session.
    """

    def __init__(self, base_url: str, headers: dict[str, str], *, concurrency: int, timeout_s: float) -> None:
        self.base_url, self.headers, self.concurrency, self.timeout_s = base_url, headers, concurrency, timeout_s
        self.proxy = env_proxy(base_url)
        self.limit: asyncio.Semaphore = None  # type: ignore[assignment]  # made by bind()
        self.lock: asyncio.Lock = None  # type: ignore[assignment]
        self.session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # each open loop's closer, held: a loop holds its async generators weakly, and one dropped before its loop
        # closes would be finalised by a task that loop may never run
        self._closers: list[tuple[asyncio.AbstractEventLoop, Any]] = []

    async def bind(self) -> Any:
        """The running loop's HTTP session (with :attr:`limit` and :attr:`lock`), made at its first use."""
        import aiohttp

        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self.limit = asyncio.Semaphore(self.concurrency)
            self.lock = asyncio.Lock()
            # keep-alive shorter than servers' own idle timeouts (uvicorn's, under vLLM: 5 s), so a request
            # is not sent on a connection the server is closing; a pool as large as the concurrency limit
            connector = aiohttp.TCPConnector(limit=self.concurrency, keepalive_timeout=4.0)
            self.session = aiohttp.ClientSession(connector=connector, headers=self.headers, proxy=self.proxy,
                                                 timeout=aiohttp.ClientTimeout(total=self.timeout_s))
            closer = self._close_at_shutdown(self.session)
            self._closers = [(lp, c) for lp, c in self._closers if not lp.is_closed()] + [(loop, closer)]
            await anext(closer)
        return self.session

    @staticmethod
    async def _close_at_shutdown(session: Any) -> Any:
        try:
            yield
        finally:
            await session.close()

    async def post(self, path: str, payload: dict, what: str = "chat completion") -> dict:
        """POST ``payload`` as JSON to ``base_url/path``; the response body as parsed JSON (a dict), or
        :class:`ServerStatus` for an error status, :class:`MalformedResponse` for a body that is not one."""
        session = await self.bind()
        async with session.post(f"{self.base_url.rstrip('/')}/{path}", data=json.dumps(payload).encode()) as res:
            data = await res.read()
            if res.status >= 400:
                try:
                    after = float(res.headers.get("Retry-After", "")) if res.status == 429 else None
                except ValueError:
                    after = None
                raise ServerStatus(res.status, error_detail(data), after)
        try:
            body = json.loads(data)
        except ValueError:
            raise MalformedResponse(f"a body that is not JSON ({data[:60]!r})") from None
        if not isinstance(body, dict):
            raise MalformedResponse(f"a body that is not a {what} ({data[:60]!r})")
        return body
