"""``sim.run.aio.run``: no asyncio shutdown traceback after a run's one-line error.

The probe that found it: a server answering just past ``llm.timeout_s``; 1 run in 7 printed
``unhandled exception during asyncio.run() shutdown`` and ~100 lines of tracebacks. The cause: when one
request of a gather fails, its siblings keep running; ``asyncio.run`` cancels them at shutdown, and a
request cancelled as its read deadline passes ends in a timeout (the HTTP client's deadline wins: httpx
and aiohttp alike), which the retry loop turns into ``BackendError`` — an error, not a cancellation,
so asyncio logs it.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from agents.llm.base import BackendError, ChatMessage, ScoreRequest
from agents.llm.openai_compat import OpenAICompatibleBackend
from sim.run import aio
from tests.helpers import ROOT


@pytest.fixture()
def asyncio_errors():
    """Records asyncio's logged errors (the shutdown traceback, 'Task exception was never retrieved')."""
    records: list[str] = []

    class Catch(logging.Handler):
        def emit(self, r):
            records.append(r.getMessage())

    handler = Catch(level=logging.ERROR)
    logging.getLogger("asyncio").addHandler(handler)
    yield records
    logging.getLogger("asyncio").removeHandler(handler)


async def _a_gather_whose_sibling_turns_its_cancellation_into_an_error():
    async def fails():
        await asyncio.sleep(0)
        raise BackendError("model server x failed after 4 attempts: APITimeoutError: Request timed out.")

    async def swallows():  # as the HTTP client does when the cancellation meets an expired read deadline
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise TimeoutError("Request timed out.") from None

    await asyncio.gather(fails(), swallows())


def test_plain_asyncio_run_logs_the_siblings_error_at_shutdown(asyncio_errors):
    """The mechanism, deterministic: what agora's runs printed before ``sim.run.aio.run``."""
    with pytest.raises(BackendError):
        asyncio.run(_a_gather_whose_sibling_turns_its_cancellation_into_an_error())
    assert any("unhandled exception during asyncio.run() shutdown" in r for r in asyncio_errors)


def test_aio_run_raises_the_first_error_and_logs_nothing(asyncio_errors):
    with pytest.raises(BackendError, match="after 4 attempts"):
        aio.run(_a_gather_whose_sibling_turns_its_cancellation_into_an_error())
    assert asyncio_errors == []


def test_a_task_that_keeps_swallowing_is_cancelled_again_and_the_result_kept(asyncio_errors):
    async def stubborn():
        for _ in range(3):
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue  # a retry loop treating each cancellation as a timeout
        raise RuntimeError("gave up")

    async def main():
        asyncio.get_running_loop().create_task(stubborn())
        await asyncio.sleep(0)
        return 42

    t0 = time.perf_counter()
    assert aio.run(main()) == 42
    assert asyncio_errors == [] and time.perf_counter() - t0 < 2


def test_no_library_code_calls_asyncio_run_directly():
    """Every run of async work in agents/alignment/sim/scenarios goes through ``sim.run.aio.run``."""
    bad = [f"{p.relative_to(ROOT)}:{n}" for pkg in ("agents", "alignment", "scenarios", "sim")
           for p in sorted((ROOT / pkg).rglob("*.py")) if p != ROOT / "sim" / "run" / "aio.py"
           for n, line in enumerate(p.read_text().splitlines(), 1) if "asyncio.run(" in line and "``" not in line]
    assert not bad, bad


def test_the_client_is_closed_on_its_own_loop(asyncio_errors):
    """A society runs each step in its own loop: the backend's HTTP session from a finished loop is closed
    there (``sim.run.aio.run`` still lets ``asyncio.run`` finalise it), never on the next loop."""
    import gc

    from tests.servers import VLLMLike, serve

    running = serve(VLLMLike)
    url = next(running)
    b = OpenAICompatibleBackend(base_url=url, model="tiny", max_retries=0)
    req = ScoreRequest(messages=(ChatMessage(role="user", content="A or B?"),), choices=("A", "B"))
    sessions = []
    for _ in range(3):
        aio.run(b.score_choices([req]))  # a keep-alive connection is left in the pool each time
        sessions.append(b._session)
    gc.collect()
    running.close()
    assert len({id(c) for c in sessions}) == 3 and all(c.closed for c in sessions)
    assert asyncio_errors == []


@pytest.mark.slow
def test_a_server_answering_just_past_the_timeout_prints_no_shutdown_traceback(asyncio_errors):
    """The probe's case on the real backend and the gate's own reading loop: 64 label readings (128
    requests in flight) against a server answering 5 ms past ``timeout_s``, 40 times (~30 s). Before
    ``sim.run.aio.run`` (plain ``asyncio.run`` on the same gather) 1 to 4 runs in 20 logged the shutdown
    traceback here."""
    from agents.scoring import read_pair
    from sim.gate.probes import read_all
    from tests.servers import VLLMLike, serve

    class Slow(VLLMLike):
        def answer(self, path, body):
            time.sleep(0.205)
            return super().answer(path, body)

    running = serve(Slow)
    url = next(running)
    b = OpenAICompatibleBackend(base_url=url, model="tiny", max_retries=1, timeout_s=0.2, backoff_s=0.01, concurrency=256)
    readings = [lambda score, i=i: read_pair(score, lambda s: ScoreRequest(
        messages=(ChatMessage(role="user", content=f"A or B? {i}"),), choices=("A", "B"))) for i in range(64)]
    failed = 0
    try:
        t0 = time.perf_counter()
        for _ in range(40):
            if time.perf_counter() - t0 > 120:
                break
            with pytest.raises(BackendError, match="no reply within the timeout"):
                read_all(b, readings, "gate", progress=False)
            failed += 1
    finally:
        running.close()
    assert failed >= 20 and asyncio_errors == []
