"""Checkpoint and resume: a run killed with SIGKILL at a random point continues to the same bytes."""

import json
import random
import subprocess
import sys
import time

import pytest

from scenarios.dilemma import InputError
from sim.run import CHECKPOINT, read_checkpoint

ARGS = ["llm=scripted", "population.size=120", "sim.steps=6", "sim.progress=false", "seed=3", "name=resume"]


def agora(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim.cli", *args], capture_output=True, text=True, timeout=300)


def _steps_done(path) -> int:
    try:
        return json.loads(path.read_text())["society"]["steps"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_kill_9_at_a_random_point_then_resume_gives_identical_outputs(tmp_path):
    ref = tmp_path / "ref"
    assert agora(*ARGS, f"hydra.run.dir={ref}").returncode == 0
    assert not (ref / CHECKPOINT).exists()  # removed once summary.json marks the run complete

    rng = random.Random()  # a different kill point on every run; reported on failure
    after_step, delay = rng.randint(1, 3), rng.uniform(0.0, 0.2)
    victim = tmp_path / "victim"
    proc = subprocess.Popen([sys.executable, "-m", "sim.cli", *ARGS, f"hydra.run.dir={victim}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while _steps_done(victim / CHECKPOINT) < after_step and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    where = f"killed {delay:.3f} s after step {after_step}'s checkpoint"
    assert not (victim / "summary.json").exists(), where
    done = _steps_done(victim / CHECKPOINT)
    assert after_step <= done < 6, where

    res = agora(f"resume={victim}", f"hydra.run.dir={tmp_path / 'resume_log'}")
    assert res.returncode == 0, where + res.stderr[-2000:]
    for name in ("preferences.parquet", "stances.parquet", "transcripts.parquet", "metrics.parquet"):
        assert (victim / name).read_bytes() == (ref / name).read_bytes(), f"{name} differs; {where}"
    summary = json.loads((victim / "summary.json").read_text())
    assert summary["resumed_after_step"] == done and summary["counts"]["steps"] == 6
    assert not (victim / CHECKPOINT).exists()


def test_resume_refuses_clearly_when_there_is_nothing_to_resume(tmp_path):
    with pytest.raises(InputError, match="no checkpoint.json"):
        read_checkpoint(tmp_path)
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(InputError, match="already complete"):
        read_checkpoint(tmp_path)
    res = agora(f"resume={tmp_path}", f"hydra.run.dir={tmp_path / 'log'}")
    assert res.returncode == 2 and "already complete" in res.stderr and "Traceback" not in res.stderr
