"""Stop signals are taken where a run can stop (sim.run.signals.Held): in the event loop they cancel the main task and
the stop handler runs once the loop has stopped; in a held section they wait for its end; a second one is not kept
waiting; handlers that do not stop a run (Submitit's SIGTERM bypass) are left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from submitit.core.job_environment import SignalHandler

from sim.run.signals import Held, _stops
from tests.helpers import ROOT, child_env

# signals sent from another thread at random moments while the loop runs: each must stop the run by a KeyboardInterrupt
# raised in a task or after the loop has stopped, never in the loop's own code: there one in a few thousand loses a
# task's wake-up, and closing the loop then waits for ever.
STORM = textwrap.dedent("""
    import asyncio, os, random, signal, sys, threading, time, traceback
    from sim.run import aio

    rng, armed = random.Random(0), threading.Event()
    ASYNCIO = os.path.dirname(asyncio.__file__)

    async def work():  # runs until the signal has come (and it is cancelled)
        armed.set()
        async def one():
            while True:
                await asyncio.sleep(0)
        await asyncio.gather(*(one() for _ in range(40)))

    def shooter(delay):
        armed.wait()
        time.sleep(delay)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    stopped = 0
    for _ in range(int(sys.argv[1])):
        armed.clear()
        runner = asyncio.Runner()
        t = threading.Thread(target=shooter, args=(rng.uniform(0, 0.02),))
        t.start()
        try:
            try:
                aio.run_on(runner, work())
            finally:
                runner.close()
                t.join()
        except KeyboardInterrupt as exc:  # raised in a task or once the loop had stopped, never in the loop's own code
            stopped += not traceback.extract_tb(exc.__traceback__)[-1].filename.startswith(ASYNCIO)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    print("stopped", stopped)
""")


def test_signals_landing_anywhere_in_the_loop_stop_it_cleanly_every_time():
    n = 150
    res = subprocess.run([sys.executable, "-c", STORM, str(n)], cwd=ROOT, env=child_env(), capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["stopped", str(n)], res.stdout
    assert "Exception ignored" not in res.stderr and "Traceback" not in res.stderr, res.stderr[-3000:]


def _send(sig: int) -> None:
    os.kill(os.getpid(), sig)


def test_a_signal_in_a_held_section_waits_for_its_end_then_runs_the_handler_it_replaced():
    seen: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with Held() as held:
            _send(signal.SIGINT)
            seen.append(f"went on, holding {held.signum}")
    assert seen == [f"went on, holding {int(signal.SIGINT)}"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_signal_runs_the_handler_at_once():
    seen: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with Held():
            _send(signal.SIGINT)
            seen.append("first held")
            _send(signal.SIGINT)
            seen.append("not reached")
    assert seen == ["first held"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_section_without_a_signal_ends_as_it_would_and_leaves_the_handlers_as_they_were():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    with Held() as held:
        pass
    assert held.signum is None
    assert {s: signal.getsignal(s) for s in before} == before


def test_which_handlers_stop_a_run():
    submitit = SignalHandler.__new__(SignalHandler)
    assert _stops(signal.default_int_handler)
    assert _stops(submitit.checkpoint_and_try_requeue) and _stops(submitit.checkpoint_and_exit)
    assert not _stops(submitit.bypass)  # Submitit's SIGTERM: logged and ignored until SLURM's SIGKILL
    assert not _stops(signal.SIG_DFL) and not _stops(signal.SIG_IGN) and not _stops(None)
    assert not _stops(lambda signum, frame: None)


def test_a_submitit_requeue_handler_runs_after_the_section(monkeypatch):
    calls: list[int] = []

    def checkpoint_and_try_requeue(signum, frame):  # stands in for Submitit's, which exits the job
        calls.append(signum)
        raise SystemExit(0)

    checkpoint_and_try_requeue.__module__ = "submitit.core.job_environment"
    previous = signal.signal(signal.SIGUSR1, checkpoint_and_try_requeue)
    try:
        with pytest.raises(SystemExit):
            with Held():
                _send(signal.SIGUSR1)
                assert calls == []
        assert calls == [signal.SIGUSR1]
        assert signal.getsignal(signal.SIGUSR1) is checkpoint_and_try_requeue
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_signal_outside_the_loops_own_code_runs_its_handler_at_once():
    """A stop landing in a task (a model's forward pass) is not kept waiting for the next await."""
    seen: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with Held(lambda: seen.append("cancelled")):
            _send(signal.SIGINT)
            seen.append("went on")
    assert seen == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_while_a_finished_run_is_written_is_logged_not_acted_on(caplog):
    with Held(after_success=False):
        _send(signal.SIGINT)
    assert "a stop signal (SIGINT) came while the finished run was written" in caplog.text
    with pytest.raises(KeyboardInterrupt):  # a section that failed: the stop is still taken
        with Held(after_success=False):
            _send(signal.SIGINT)
            raise ValueError("the report failed")
