"""Ctrl-C (and SIGTERM) as one line wherever it lands: while a command is still loading, and inside the garbage
collector's callback that a society step installs (where an exception would be printed and dropped)."""

from __future__ import annotations

import gc
import logging
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from tests.helpers import ROOT, child_env

STARTS = {"agora": "main", "agora-eval": "eval_main", "agora-report": "report_main"}


def _catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (Linux: the SigCgt mask in /proc)."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    except OSError:
        return False
    return bool(int(fields["SigCgt"].strip(), 16) >> (sig - 1) & 1)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the signal mask from Linux's /proc")
@pytest.mark.parametrize("prog", list(STARTS))
def test_a_ctrl_c_while_the_command_loads_is_one_line(tmp_path, prog):
    """Loading sim.cli takes seconds (Hydra, polars, every experiment): a Ctrl-C then once printed a traceback."""
    args = ["llm=scripted", "experiment=tiny", f"hydra.run.dir={tmp_path / 'run'}"] if prog != "agora-report" \
        else [str(tmp_path)]
    child = subprocess.Popen([sys.executable, "-c", f"from sim.launch import {STARTS[prog]}; {STARTS[prog]}()", *args],
                             cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not _catches(child.pid, signal.SIGTERM) and time.monotonic() < deadline:  # sim.launch's handler is set
        time.sleep(0.005)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 130, err[-2000:]
    assert err.strip() == f"{prog}: interrupted", err[-2000:]
    assert not (tmp_path / "run").exists()


def test_a_ctrl_c_inside_a_gc_callback_still_stops_the_run(monkeypatch):
    """A step's StepCollector runs Python code as a gc callback; an interrupt landing there (or in a weakref
    callback the collection runs) was dropped (CPython prints 'Exception ignored in ...') and the run went on."""
    from sim.commands.errors import _interrupted, _resend_dropped

    monkeypatch.setattr(sys, "unraisablehook", _resend_dropped(sys.unraisablehook))  # as interruptible sets it

    levels = {n: logging.getLogger(n).level for n in ("asyncio", "autogen_core", "autogen_agentchat")}
    fired: list[int] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if not fired:
            fired.append(1)
            signal.raise_signal(signal.SIGINT)  # its Python handler runs here, inside the callback

    old = signal.signal(signal.SIGINT, _interrupted)
    gc.callbacks.append(callback)
    try:
        with warnings.catch_warnings(), pytest.raises(KeyboardInterrupt):
            gc.collect()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # the interrupt, sent again from outside the callback, lands here
                time.sleep(0.01)
    finally:
        if callback in gc.callbacks:
            gc.callbacks.remove(callback)
        signal.signal(signal.SIGINT, old)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    assert fired


def test_a_stop_before_the_first_checkpoint_says_the_command_starts_it_again(tmp_path):
    """Stopped in the label-quality gate (no checkpoint yet), there is nothing for resume= to continue: the line says
    what to do instead of naming nothing."""
    code = ("import sys, sim.experiments as e\n"
            "def stopped(cfg, out, backend=None):\n"
            "    out.mkdir(parents=True, exist_ok=True)\n"
            "    raise KeyboardInterrupt\n"
            "e.run_experiment = stopped\n"
            "sys.argv = ['agora', *sys.argv[1:]]\n"
            "import sim.cli\nsim.cli.main()\n")
    res = subprocess.run([sys.executable, "-c", code, "llm=scripted", "experiment=tiny", f"hydra.run.dir={tmp_path / 'run'}"],
                         cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 130, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1] == ("agora: interrupted (before its first checkpoint: nothing to resume, "
                                                   "the same command starts it again)")
