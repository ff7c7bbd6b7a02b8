"""Sweeps through the launchers a cluster uses, run on this machine: a Ray cluster started here (loopback only,
torn down after) with ``hydra/launcher=ray_cluster``, and Submitit's local executor in ``slurm.yaml``'s shape
(``hydra/launcher=slurm_local``). A point whose worker is killed mid-run (SIGKILL after a checkpoint, at a point
drawn from a seed) is retried by Ray, or requeued by Submitit on the preemption signal, and resumes from its
checkpoint to the bytes the basic launcher gives; a point that fails at run time leaves the others to finish."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.run.checkpoint import CHECKPOINT
from sim.run.lock import LOCK
from tests.helpers import ROOT, agora, child_env, start_agora

ARGS = ["population.size=60", "sim.steps=6", "sim.progress=false", "name=sweep"]
SEEDS = "seed=3,4"
PARQUETS = ("preferences.parquet", "stances.parquet", "transcripts.parquet", "metrics.parquet")
# Ray swaps 127.0.0.1 for the host's address (its "remotely reachable IP") unless told this is a one-machine cluster
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
RESUMING = "holds a checkpoint of this society run"
# what the kill point is drawn from (AGORA_KILL_SEED=N tries another; every message names it)
KILL_SEED = int(os.environ.get("AGORA_KILL_SEED", "32"))


def _steps_done(path: Path) -> int:
    try:
        return json.loads(path.read_text())["extra"]["society"]["state"]["steps"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def _holder(point: Path, deadline: float) -> int:
    """The pid of the process running the point: the one holding its folder's lock (a Ray worker, a Submitit task)."""
    while time.monotonic() < deadline:
        try:
            return int(json.loads((point / LOCK).read_text())["pid"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError):  # not written yet, or mid-write
            time.sleep(0.01)
    raise AssertionError(f"{point}: no run holds the folder")


def _signal_after_checkpoint(point: Path, sweep: subprocess.Popen, sig: int) -> tuple[int, str]:
    """Wait for the point's checkpoint after a step drawn from KILL_SEED, then send ``sig`` to the process running it.
    Returns the pid and a description of where it landed, for assertion messages."""
    rng = random.Random(KILL_SEED)
    after_step, delay = rng.randint(1, 3), rng.uniform(0.0, 0.2)
    deadline = time.monotonic() + 300
    try:
        while _steps_done(point / CHECKPOINT) < after_step and sweep.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sweep.poll() is None, f"the sweep ended before step {after_step} of {point}"
        time.sleep(delay)
        pid = _holder(point, deadline)
        assert pid not in (os.getpid(), sweep.pid)
    except BaseException:
        sweep.kill()
        sweep.wait()
        raise
    os.kill(pid, sig)
    where = (f"AGORA_KILL_SEED={KILL_SEED}: {signal.Signals(sig).name} {delay:.3f} s after step {after_step}'s checkpoint, "
             f"with {_steps_done(point / CHECKPOINT)} steps checkpointed; ")
    return pid, where


def _wait(proc: subprocess.Popen, stderr: Path, timeout: float = 400) -> str:
    """Wait for the sweep (killed if it outlives ``timeout``, with what its jobs logged); what it wrote to ``stderr``."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        logs = _submitit_log(stderr.parent / "slurm") if (stderr.parent / "slurm").is_dir() else ""
        raise AssertionError(f"the sweep did not end in {timeout:.0f} s; its jobs logged:\n{logs[-4000:]}") from None
    return stderr.read_text()


def _points(sweep: Path) -> dict[str, Path]:
    """A sweep's point folders by their overrides (``llm=scripted seed=3``), from each folder's ``.hydra/``."""
    out = {}
    for d in sweep.iterdir():
        if d.is_dir() and d.name.isdigit():
            given = (d / ".hydra" / "overrides.yaml").read_text().splitlines()
            out[" ".join(sorted(o.removeprefix("- ") for o in given if o.startswith(("- llm=", "- seed="))))] = d
    return out


def _same_bytes(a: Path, b: Path, where: str = "") -> None:
    for name in PARQUETS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{where}{a / name} differs from {b / name}"


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The reference: the sweep's scripted points through Hydra's basic launcher, in this process's order."""
    sweep = tmp_path_factory.mktemp("basic")
    res = agora("--multirun", *ARGS, "llm=scripted", SEEDS, f"hydra.sweep.dir={sweep}")
    assert res.returncode == 0, res.stderr[-3000:]
    return _points(sweep)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _need_ray() -> None:
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have agora[ray] installed (make setup installs it)")
        pytest.skip("ray is not installed: `make setup` installs agora[ray]")


@contextlib.contextmanager
def _ray_head(dashboard: bool = False) -> Iterator[tuple[str, str | None]]:
    """A one-node Ray cluster on 127.0.0.1 with 2 CPUs (`ray start --head --block` in its own process group, with the
    venv's commands on PATH as on a cluster node), killed on exit; its address, and its job server's when
    ``dashboard``."""
    _need_ray()
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    port, jobs = _free_port(), _free_port()
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
           f"--port={port}", f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
           "--num-cpus=2", "--object-store-memory=100000000", f"--include-dashboard={str(dashboard).lower()}",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={jobs}", "--disable-usage-stats", f"--temp-dir={temp}"]
    env = LOOPBACK | {"PATH": os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", "")))}
    log = temp / "start.log"
    with log.open("w") as fh:
        head = subprocess.Popen(cmd, env=child_env(env), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text() and head.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "Ray runtime started" in log.read_text(), log.read_text()[-3000:]
        assert "Local node IP: 127.0.0.1" in _plain(log.read_text()), "Ray is not on loopback"
        yield f"127.0.0.1:{port}", (f"http://127.0.0.1:{jobs}" if dashboard else None)
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops what it started; its workers share the group
        try:
            head.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """The address of a loopback Ray cluster shared by this module's tests."""
    with _ray_head() as (address, _):
        yield address


def _plain(text: str) -> str:
    """``text`` without terminal colour codes (Ray's start-up log has them)."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_a_ray_sweep_point_killed_mid_run_is_retried_and_resumes_and_a_failing_point_leaves_the_others(
        ray_head, basic_sweep, tmp_path):
    """Four points on the cluster: two scripted (one killed), two against a server nobody listens on."""
    sweep = tmp_path / "ray"
    closed = f"http://127.0.0.1:{_free_port()}/v1"
    args = ("--multirun", *ARGS, "llm=scripted,openai_compatible", SEEDS, f"llm.base_url={closed}", "llm.max_retries=0",
            "hydra/launcher=ray_cluster", f"hydra.sweep.dir={sweep}")
    with (tmp_path / "stderr").open("w") as fh:  # a file, not a pipe: Ray forwards every worker's log lines to it
        proc = start_agora(*args, stderr=fh, env=LOOPBACK | {"RAY_ADDRESS": ray_head})
    victim = sweep / "0"  # llm=scripted seed=3: Hydra numbers points with the first sweep override slowest
    _, where = _signal_after_checkpoint(victim, proc, signal.SIGKILL)
    err = _wait(proc, tmp_path / "stderr")
    points = _points(sweep)
    assert sorted(points) == ["llm=openai_compatible seed=3", "llm=openai_compatible seed=4", "llm=scripted seed=3",
                              "llm=scripted seed=4"], where
    assert points["llm=scripted seed=3"] == victim
    # the failing points failed on their own, each saying why in its folder; the sweep says which failed first
    assert proc.returncode == 2, where + err[-3000:]
    ends = [line for line in err.splitlines() if line.startswith("agora: error:")]  # Ray forwards workers' lines too
    assert len(ends) == 1 and ends[0].startswith("agora: error: sweep point #2 (") and "model server" in ends[0], ends
    assert "Traceback" not in err
    for seed in (3, 4):
        failed = points[f"llm=openai_compatible seed={seed}"]
        assert not (failed / "summary.json").exists()
        assert f"agora: error: model server {closed}" in (failed / "cli.log").read_text().splitlines()[-1]
    # the scripted points finished with the basic launcher's bytes; the killed one went on from its checkpoint
    for seed in (3, 4):
        _same_bytes(points[f"llm=scripted seed={seed}"], basic_sweep[f"llm=scripted seed={seed}"], where)
    summary = json.loads((victim / "summary.json").read_text())
    assert summary["resumed_after_step"] and summary["resumed_after_step"] >= 1, where
    assert RESUMING in (victim / "cli.log").read_text(), where
    assert RESUMING not in (points["llm=scripted seed=4"] / "cli.log").read_text()
    assert not (victim / CHECKPOINT).exists() and not (victim / LOCK).exists()


@pytest.mark.slow
def test_ray_job_submit_runs_the_sweeps_driver_on_the_cluster(tmp_path):
    """`ray job submit --working-dir . -- agora --multirun ... hydra/launcher=ray_cluster`: the working folder is uploaded,
    the driver runs on the cluster and its points as Ray tasks, writing to an absolute hydra.sweep.dir."""
    sweep = tmp_path / "sweep"
    with _ray_head(dashboard=True) as (_, jobs):
        cmd = [str(Path(sys.executable).parent / "ray"), "job", "submit", f"--address={jobs}", "--working-dir=.", "--",
               "agora", "--multirun", "llm=scripted", "experiment=tiny", "sim.progress=false", "seed=0,1",
               "hydra/launcher=ray_cluster", f"hydra.sweep.dir={sweep}"]
        res = subprocess.run(cmd, cwd=ROOT, env=child_env(LOOPBACK), capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert "succeeded" in _plain(res.stdout + res.stderr)
    assert [(sweep / str(n) / "summary.json").is_file() for n in (0, 1)] == [True, True]
    ref = tmp_path / "ref"
    assert agora("llm=scripted", "experiment=tiny", "sim.progress=false", f"hydra.run.dir={ref}").returncode == 0
    assert (sweep / "0" / "preferences.parquet").read_bytes() == (ref / "preferences.parquet").read_bytes()


# -- Submitit: slurm.yaml's shape on the local executor --------------------------------------------------------------
def _submitit_log(sweep: Path) -> str:
    return "".join(p.read_text() for p in sorted((sweep / ".submitit").rglob("*_log.*")))


@pytest.mark.slow
def test_a_submitit_point_sent_the_preemption_signal_is_requeued_and_resumes(basic_sweep, tmp_path):
    """SLURM sends the signal Submitit asked for (`--signal=USR2@120` by default; SUBMITIT_PREEMPT_SIGNAL=USR1 here)
    before a preemption or the time limit: Submitit calls the launcher's checkpoint(), requeues the same job, and the
    job's run finds its checkpoint in its folder and resumes."""
    sweep = tmp_path / "slurm"
    with (tmp_path / "stderr").open("w") as fh:
        proc = start_agora("--multirun", *ARGS, "llm=scripted", SEEDS, "hydra/launcher=slurm_local",
                           f"hydra.sweep.dir={sweep}", stderr=fh, env={"SUBMITIT_PREEMPT_SIGNAL": "USR1"})
    _, where = _signal_after_checkpoint(sweep / "0", proc, signal.SIGUSR1)
    err = _wait(proc, tmp_path / "stderr")
    assert proc.returncode == 0, where + err[-3000:]
    points = _points(sweep)
    for seed in (3, 4):
        _same_bytes(points[f"llm=scripted seed={seed}"], basic_sweep[f"llm=scripted seed={seed}"], where)
    victim = points["llm=scripted seed=3"]
    log = _submitit_log(sweep)
    assert "Caught signal SIGUSR1" in log and "Requeued job" in log, where + log[-3000:]
    assert RESUMING in (victim / "cli.log").read_text() and json.loads((victim / "summary.json").read_text())[
        "resumed_after_step"] >= 1, where


@pytest.mark.slow
def test_a_submitit_point_sent_sigterm_then_killed_resumes_when_the_same_sweep_runs_again(basic_sweep, tmp_path):
    """SLURM's SIGTERM (preemption, scancel) is logged and ignored by Submitit, so the point keeps working until the
    SIGKILL that follows; SLURM then requeues the same job, here by running the same command again: finished points
    are left as they are (exit 0, nothing rewritten) and the killed one resumes from its checkpoint."""
    sweep = tmp_path / "slurm"
    args = ("--multirun", *ARGS, "llm=scripted", SEEDS, "hydra/launcher=slurm_local", f"hydra.sweep.dir={sweep}")
    with (tmp_path / "stderr").open("w") as fh:
        proc = start_agora(*args, stderr=fh)
    pid, where = _signal_after_checkpoint(sweep / "0", proc, signal.SIGTERM)
    time.sleep(1.0)
    assert Path(f"/proc/{pid}").exists(), where + "SIGTERM stopped the job"
    os.kill(pid, signal.SIGKILL)  # what SLURM sends once KillWait has passed
    err = _wait(proc, tmp_path / "stderr")
    assert "Bypassing signal SIGTERM" in _submitit_log(sweep), where
    assert proc.returncode == 2 and err.strip().count("\n") == 0, where + err[-3000:]
    assert "the sweep's launcher stopped: UncompletedJobError" in err and f"hydra.sweep.dir={sweep}" in err, err

    again = agora(*args)
    assert again.returncode == 0, where + again.stderr[-3000:]
    points = _points(sweep)
    for seed in (3, 4):
        _same_bytes(points[f"llm=scripted seed={seed}"], basic_sweep[f"llm=scripted seed={seed}"], where)
    victim = points["llm=scripted seed=3"]
    assert RESUMING in (victim / "cli.log").read_text(), where
    assert json.loads((victim / "summary.json").read_text())["resumed_after_step"] >= 1, where


# -- the basic launcher: a point that fails leaves the others to finish ------------------------------------------------
def test_a_sweep_point_that_fails_at_run_time_leaves_the_others_to_finish(tmp_path):
    sweep = tmp_path / "sweep"
    closed = f"http://127.0.0.1:{_free_port()}/v1"
    res = agora("--multirun", "experiment=tiny", "sim.progress=false", "llm=scripted,openai_compatible,scripted",
                f"llm.base_url={closed}", "llm.max_retries=0", f"hydra.sweep.dir={sweep}")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("agora: error: sweep point #1 (") and f"model server {closed}" in last, last
    assert "the other points ran" in last and f"llm.base_url={closed} " in last  # as typed, not Hydra-escaped
    assert "Error executing job" not in res.stderr  # Hydra's own line for a failed point is dropped
    assert [(sweep / str(n) / "summary.json").is_file() for n in range(3)] == [True, False, True]
    logged = (sweep / "1" / "cli.log").read_text().splitlines()[-1]
    assert f"agora: error: model server {closed} failed: Connection failed" in logged, logged
