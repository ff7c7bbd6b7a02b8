"""One way to run the library's async work: :func:`run`, ``asyncio.run`` leaving no task behind."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from typing import Any, TypeVar

from sim.run.signals import Held

T = TypeVar("T")

_ROUNDS, _WAIT_S = 100, 0.1  # at most ~10 s of winding down; a cancelled request ends within one round


def run_on(runner: asyncio.Runner, main: Coroutine[Any, Any, T]) -> T:
    """``main`` run on ``runner``'s loop (:func:`supervised`), with stop signals held while it runs
    (:class:`sim.run.signals.Held`): one cancels ``main``'s task, and its handler runs once the loop has stopped.
    A handler raising mid-loop can lose a task's wake-up, and closing the loop would then wait for ever."""
    loop, task = runner.get_loop(), []

    def cancel() -> None:
        if task:
            loop.call_soon_threadsafe(task[0].cancel)

    async def guarded() -> T:
        task.append(asyncio.current_task())
        if held.signum is not None:  # it came before there was a task to cancel
            main.close()
            raise asyncio.CancelledError
        return await supervised(main)

    with Held(cancel) as held:
        try:
            return runner.run(guarded())
        except BaseException:
            # A stop raised in a task's own code (Held lets those through at once) leaves the main task to end with it
            # while the loop closes, and asyncio then logs its exception as "never retrieved". It is this one: the
            # main task is cancelled and let end now (bounded), and its exception taken.
            if task:
                _settle(loop, task[0])
            raise


def _settle(loop: asyncio.AbstractEventLoop, t: asyncio.Task[Any]) -> None:
    if not t.done():
        t.cancel()
        try:
            loop.run_until_complete(asyncio.wait({t}, timeout=_ROUNDS * _WAIT_S))
        except BaseException:  # noqa: S110 (the stop this run is ending with, raised again as it ends)
            pass
    if t.done() and not t.cancelled():
        t.exception()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, then every task ``main`` left running is cancelled and awaited before the
    loop closes, and their errors are taken as consequences of ``main``'s outcome.

    Why not plain ``asyncio.run``: when one request of an ``asyncio.gather`` fails, its siblings keep
    running; ``asyncio.run`` cancels them at shutdown and logs, with a traceback, any that end in an
    error rather than cancelled. A request cancelled just as its read timeout expires does: the HTTP
    client turns the cancellation into its timeout (seen with httpx under the openai SDK and with
    aiohttp), the retry loop retries it and it ends in ``BackendError`` — 1 run in 7 printed ~100
    lines of tracebacks after its one-line error. Here a task that swallowed a cancellation is
    cancelled again at its next await, and nothing is left for
    ``asyncio.run`` to log."""
    return asyncio.run(supervised(main))


async def supervised(main: Coroutine[Any, Any, T]) -> T:
    """``main``, then every task it left running cancelled and awaited (:func:`run`; a run's stages on the run's
    one loop, ``sim.run.lifecycle.Run.run_async``)."""
    try:
        result = await main
    except Exception:
        await _wind_down()
        raise
    # not on an interrupt (KeyboardInterrupt, cancellation): those stop the loop, which asyncio.run then
    # winds down itself, and a wind-down pending in a ``finally`` would outlive the loop
    await _wind_down()
    return result


async def _wind_down() -> None:
    me = asyncio.current_task()
    for _ in range(_ROUNDS):
        left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not left:
            return
        for t in left:
            if not _unstarted(t):  # one cancelled before its first step leaves anyio's inner coroutine never awaited
                t.cancel()
        done, _ = await asyncio.wait(left, timeout=_WAIT_S)
        for t in done:
            if not t.cancelled():
                t.exception()  # retrieved: it failed because main's outcome ended the run


def _unstarted(task: asyncio.Task) -> bool:
    coro = task.get_coro()
    return inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED
