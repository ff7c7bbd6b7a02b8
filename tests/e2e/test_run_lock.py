"""One run per folder (an flock held for the run's life), and counters kept across failed attempts."""

import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest

from agents.llm.base import BackendError
from agents.llm.scripted import ScriptedBackend
from scenarios.errors import InputError
from sim.experiments import run_experiment as run
from sim.run.checkpoint import CHECKPOINT, Checkpoint, read_checkpoint
from sim.run.lock import LOCK
from tests.helpers import agora, compose, start_agora

TINY = ["llm=scripted", "experiment=tiny", "population.size=8", "sim.steps=3", "sim.progress=false"]
# `agora ARGS...` in a child that, right after its first step's checkpoint, touches READY and waits (lock held)
_HOLD_AFTER_FIRST_CHECKPOINT = """
import sys, time
from pathlib import Path
from sim.run.checkpoint import Checkpoint
from sim.cli import main
real = Checkpoint.save
def save(self, *a, **k):
    real(self, *a, **k)
    if k.get("society"):
        Path({ready!r}).touch()
        time.sleep(600)
Checkpoint.save = save
sys.argv[1:] = {args!r}
main()
"""


def _snapshot(d: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(d)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.rglob("*")) if p.is_file()}


def test_a_second_run_into_a_running_runs_folder_fails_and_a_killed_holder_does_not_block_resume(tmp_path):
    ref, run_dir, ready = tmp_path / "ref", tmp_path / "run", tmp_path / "ready"
    assert agora(*TINY, f"hydra.run.dir={ref}").returncode == 0
    assert not (ref / LOCK).exists()  # a finished folder holds only its outputs
    code = _HOLD_AFTER_FIRST_CHECKPOINT.format(ready=str(ready), args=[*TINY, f"hydra.run.dir={run_dir}"])
    holder = start_agora(code=code)
    try:
        deadline = time.monotonic() + 240
        while not ready.exists() and holder.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the holder never reached its first checkpoint"
        before = _snapshot(run_dir)
        for args in ([*TINY, f"hydra.run.dir={run_dir}"], [f"resume={run_dir}"]):
            res = agora(*args)
            assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr[-2000:]
            assert f"in use by another run (pid {holder.pid}, started " in res.stderr, res.stderr
            assert _snapshot(run_dir) == before  # not one byte of the running run's folder touched
    finally:
        holder.send_signal(signal.SIGKILL)  # no handler runs: the lock file stays, the kernel drops the flock
        holder.wait()
    assert (run_dir / LOCK).exists() and not (run_dir / "summary.json").exists()

    res = agora(f"resume={run_dir}")
    assert res.returncode == 0, res.stderr[-2000:]
    names = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*"))  # noqa: E731
    assert names(run_dir) == names(ref)  # the stale lock file is gone with the run's end
    assert (run_dir / "preferences.parquet").read_bytes() == (ref / "preferences.parquet").read_bytes()


def test_the_lock_is_per_folder_and_released_on_error_and_at_finish(tmp_path):
    cfg = compose(*TINY[1:])
    first = Checkpoint(tmp_path, "r", "society", cfg, None)
    with pytest.raises(InputError, match=rf"in use by another run \(pid {os.getpid()}, started "):
        Checkpoint(tmp_path, "r", "society", cfg, None)
    Checkpoint(tmp_path / "other", "r", "society", cfg, None).release()  # another folder is free
    first.release()
    assert not (tmp_path / LOCK).exists()
    Checkpoint(tmp_path, "r", "society", cfg, None).finish()
    assert not (tmp_path / LOCK).exists()
    with pytest.raises(InputError, match="no checkpoint.json"):  # a refused resume leaves the folder free
        Checkpoint(tmp_path, "r", "society", cfg, None, resume=True)
    assert not (tmp_path / LOCK).exists()
    Checkpoint(tmp_path, "r", "society", cfg, None).release()


class FailingAfterRetries(ScriptedBackend):
    """Retries 3 times then gives up, once ``armed``; counts as a real backend would."""

    armed = False

    async def generate(self, requests):
        if self.armed:
            self.stats.retries += 3
            self.stats.fallbacks += 1
            self.stats.extra["retry:timeout"] = self.stats.extra.get("retry:timeout", 0) + 3
            raise BackendError("server unreachable after 3 retries")
        return await super().generate(requests)


def test_counters_of_a_failed_attempt_reach_the_final_summary(tmp_path, monkeypatch):
    cfg = compose(*TINY[1:])
    ref = run(cfg, tmp_path / "ref", ScriptedBackend())
    out, flaky = tmp_path / "out", FailingAfterRetries()
    real = Checkpoint.save

    def save(self, *args, **kwargs):
        real(self, *args, **kwargs)
        if kwargs.get("society", {}).get("state", {}).get("steps") == 1:
            flaky.armed = True  # step 2 fails

    monkeypatch.setattr(Checkpoint, "save", save)
    with pytest.raises(BackendError):
        run(cfg, out, flaky)
    monkeypatch.undo()
    n = flaky.stats.retries  # 3 for each of step 2's concurrent calls that gave up
    assert n >= 3 and n % 3 == 0
    state = read_checkpoint(out)
    assert state["extra"]["society"]["state"]["steps"] == 1  # no unit marked done by the failure
    assert state["backend_stats"]["retries"] == n and state["backend_stats"]["extra"] == {"retry:timeout": n}
    assert not (out / LOCK).exists()  # released on the error

    summary = run(dataclasses.replace(cfg, resume=str(out)), out, ScriptedBackend())
    b, r = summary["backend"], ref["backend"]
    assert (b["retries"], b["fallbacks"], b["extra"]) == (n, n // 3, {"retry:timeout": n})
    assert b["generate_calls"] >= r["generate_calls"] and summary["counts"] == ref["counts"]
    assert not (out / CHECKPOINT).exists()
