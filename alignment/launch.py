"""Training as N processes: the parent writes a job folder, starts ``torchrun`` (or ``accelerate launch`` with an
accelerate config) on this machine as a child, waits, and reads the report back; the child is this module.

    python -m torch.distributed.run --nproc-per-node 2 --master-addr 127.0.0.1 --master-port PORT \\
        -m alignment.launch JOB            # or: accelerate launch --config_file F --num_processes 2 -m alignment.launch JOB

A job folder (``<model folder>.job`` beside the model) holds ``job.json`` (what to train and with which
settings), ``train.parquet`` and ``eval.parquet``; rank 0 writes ``report.json`` there after saving the model,
a failing rank a one-line ``error-RANK.txt``, and the launcher's output goes to ``launch.log``. The folder is
removed once the report is read. A killed child leaves the training loop's own ``checkpoint.pt`` in the model
folder, which the next attempt resumes from.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl

from alignment.config import DPOConfig, RewardConfig, accelerate_config_path

log = logging.getLogger(__name__)
CHILD_MODULE = "alignment.launch"  # what every rank runs
KINDS = {"reward": RewardConfig, "dpo": DPOConfig}
NAMES = {"reward": "the reward model", "dpo": "the DPO policy"}
PARENT_ENV = "AGORA_TRAINING_PARENT"  # the pid whose end stops the ranks (a killed run must not leave them training)


class TrainingError(RuntimeError):
    """A training child failed; the message is one line."""


def train(kind: str, train_pairs: pl.DataFrame, eval_pairs: pl.DataFrame, cfg: RewardConfig | DPOConfig, out_dir: Path,
          base: str | Path | None = None, progress: bool = True, processes: int = 1, accelerate_config: str = "") -> dict:
    """Train a reward model (``kind="reward"``, ``base``: the policy backbone's folder) or DPO policy (``"dpo"``,
    ``base``: the policy to tune) into ``out_dir``, in this process or as ``processes`` processes; its report."""
    if processes == 1 and not accelerate_config:
        return _trainer(kind)(train_pairs, eval_pairs, cfg, out_dir, base, progress=progress)
    return train_in_processes(kind, train_pairs, eval_pairs, cfg, out_dir, base, progress, processes, accelerate_config)


def _trainer(kind: str):
    if kind == "reward":
        from alignment.reward import train_reward_model

        return train_reward_model
    from alignment.dpo import train_dpo

    return train_dpo


def job_dir(out_dir: Path) -> Path:
    return out_dir.with_name(out_dir.name + ".job")


def train_in_processes(kind: str, train_pairs: pl.DataFrame, eval_pairs: pl.DataFrame, cfg: RewardConfig | DPOConfig,
                       out_dir: Path, base: str | Path | None, progress: bool, processes: int,
                       accelerate_config: str = "") -> dict:
    """Write the job, run the child launcher to its end, return rank 0's report (see the module's docstring)."""
    job = job_dir(out_dir)
    job.mkdir(parents=True, exist_ok=True)
    for stale in [*job.glob("error-*.txt"), job / "report.json"]:
        stale.unlink(missing_ok=True)
    train_pairs.write_parquet(job / "train.parquet")
    eval_pairs.write_parquet(job / "eval.parquet")
    spec = {"kind": kind, "config": asdict(cfg), "out_dir": str(out_dir.resolve()),
            "base": str(base) if base else None, "progress": progress, "processes": processes}
    (job / "job.json").write_text(json.dumps(spec, indent=1))
    argv = launch_command(job, processes, accelerate_config)
    how = f"{'accelerate launch' if accelerate_config else 'torchrun'}, {processes} processes"
    log.info("training %s as %s (output in %s)", NAMES[kind], how, job / "launch.log")
    with open(job / "launch.log", "w") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=child_env(processes),
                                 start_new_session=True)  # its own group: stopped as a whole below
        try:
            rc = child.wait()
        finally:
            if child.poll() is None:  # interrupted or failed here: stop every rank, not only the launcher
                _stop(child)
    if rc != 0:
        raise TrainingError(f"training {NAMES[kind]} as {how} failed (exit {rc}): {_first_error(job)}; its output: "
                            f"{job / 'launch.log'}")
    report = json.loads((job / "report.json").read_text())
    for f in job.iterdir():
        f.unlink()
    job.rmdir()
    return report


def launch_command(job: Path, processes: int, accelerate_config: str = "") -> list[str]:
    """``torchrun`` (or ``accelerate launch --config_file``) of ``processes`` ranks of :data:`CHILD_MODULE` on this
    machine, its rendezvous on a free loopback port."""
    port = str(free_port())
    if accelerate_config:
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config_path(accelerate_config)),
                "--num_processes", str(processes), "--num_machines", "1", "--machine_rank", "0",
                "--main_process_ip", "127.0.0.1", "--main_process_port", port, "-m", CHILD_MODULE, str(job)]
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(processes),
            "--master-addr", "127.0.0.1", "--master-port", port, "-m", CHILD_MODULE, str(job)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(processes: int) -> dict[str, str]:
    """The child's environment: this checkout's code first (the ranks import what the parent runs), the
    parent's pid, loopback for gloo, and the CPU's threads shared out (torchrun would give each rank 1)."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, PARENT_ENV: str(os.getpid()),
           "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one machine: the ranks talk over loopback only
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    return env


def _stop(child: subprocess.Popen) -> None:
    """SIGTERM the child's process group (launcher and ranks), SIGKILL what is left after 30 s."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _first_error(job: Path) -> str:
    """The first failing rank and why: torchrun's root cause (the first failure it observed: a rank killed by a
    signal leaves no error of its own, and the others then fail on the broken connection), that rank's own
    one-line error where it wrote one; else the lowest rank's error, else the launcher's last line."""
    text = (job / "launch.log").read_text(errors="replace") if (job / "launch.log").is_file() else ""
    errors = {int(p.stem.split("-")[1]): p.read_text().strip() for p in job.glob("error-*.txt")}
    root = re.search(r"Root Cause \(first observed failure\):.*?rank\s*: (\d+).*?exitcode\s*: (-?\d+)", text, re.S)
    if root:
        rank, code = int(root[1]), int(root[2])
        if rank in errors:
            return f"rank {rank}: {errors[rank]}"
        if code < 0:
            name = signal.Signals(-code).name if -code in {int(x) for x in signal.valid_signals()} else "?"
            return f"rank {rank} was killed by signal {-code} ({name})"
        return f"rank {rank} exited with code {code}"
    if errors:
        rank = min(errors)
        return f"rank {rank}: {errors[rank]}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


# -- the child: every rank runs this ---------------------------------------------------------------------------
def _watch_parent() -> None:
    """End this rank when the run that started it is gone (it was killed: the next attempt resumes from the
    training checkpoint, and must not find these ranks still writing)."""
    pid = int(os.environ.get(PARENT_ENV, "0"))
    if not pid:
        return

    def alive() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        stat = Path(f"/proc/{pid}/stat")
        return not (stat.is_file() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")  # a zombie has ended

    def watch() -> None:
        while alive():
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_job(job: Path) -> dict[str, Any]:
    """One rank's part of the job in ``job``; rank 0 returns the report (the others {})."""
    spec = json.loads((job / "job.json").read_text())
    cfg = KINDS[spec["kind"]](**spec["config"])
    train_pairs, eval_pairs = pl.read_parquet(job / "train.parquet"), pl.read_parquet(job / "eval.parquet")
    from alignment.ranks import launched_processes

    if launched_processes() != spec["processes"]:
        raise TrainingError(f"the job asks for {spec['processes']} processes, the launcher started {launched_processes()}")
    return _trainer(spec["kind"])(train_pairs, eval_pairs, cfg, Path(spec["out_dir"]), spec["base"], progress=spec["progress"])


def main(argv: list[str] | None = None) -> int:
    job = Path((argv if argv is not None else sys.argv[1:])[0])
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format=f"[rank {rank}] %(name)s: %(message)s")
    _watch_parent()
    try:
        report = run_job(job)
        if rank == 0:
            tmp = job / "report.json.tmp"
            tmp.write_text(json.dumps(report, allow_nan=True))
            os.replace(tmp, job / "report.json")
    except Exception as exc:
        (job / f"error-{rank}.txt").write_text(f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:2000] + "\n")
        raise
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
