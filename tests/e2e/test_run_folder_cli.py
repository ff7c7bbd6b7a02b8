"""The run-folder policy through the ``agora`` command: applied before Hydra rewrites a folder's ``.hydra/`` and
``cli.log``, so another run's folder is refused without a byte changed, and a killed run started again resumes."""

from __future__ import annotations

import json
from pathlib import Path

from sim.run.checkpoint import CHECKPOINT
from tests.helpers import agora

TINY = ("experiment=tiny", "sim.steps=3", "population.size=8")


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# Runs `agora ARGS...` in a child that dies (os._exit, as a kill would) right after its first step's checkpoint.
_DIE_AFTER_FIRST_CHECKPOINT = """
import os, sys
from sim.run.checkpoint import Checkpoint
from sim.cli import main
real = Checkpoint.save
def save(self, *a, **k):
    real(self, *a, **k)
    if k.get("society"):
        os._exit(9)
Checkpoint.save = save
sys.argv[1:] = {args!r}
main()
"""


def test_the_command_line_refuses_another_runs_folder_untouched_and_resumes_its_own(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    base = ("llm=scripted", "sim.progress=false", *TINY)
    assert agora(*base, f"hydra.run.dir={ref}").returncode == 0
    finished = _snapshot(ref)
    # another experiment into a finished run's folder: one line naming both runs, not a byte changed (.hydra/, cli.log)
    res = agora("llm=scripted", "sim.progress=false", "experiment=overton", f"hydra.run.dir={ref}")
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "holds a finished society run tiny-s0-" in res.stderr and "this config gives run overton-s0-" in res.stderr
    assert _snapshot(ref) == finished
    # the same command again: nothing to do, exit 0, nothing rewritten
    res = agora(*base, f"hydra.run.dir={ref}")
    assert res.returncode == 0 and "already holds this run tiny-s0-" in res.stdout and "nothing to do" in res.stdout, res
    assert _snapshot(ref) == finished

    # a killed run: another config into its folder is refused untouched, the same command resumes it
    died = agora(code=_DIE_AFTER_FIRST_CHECKPOINT.format(args=[*base, f"hydra.run.dir={run}"]))
    assert died.returncode == 9 and (run / CHECKPOINT).exists(), died.stderr[-2000:]
    killed = _snapshot(run)
    res = agora(*base, "seed=7", f"hydra.run.dir={run}")
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "holds the checkpoint of an unfinished society run tiny-s0-" in res.stderr and "tiny-s7-" in res.stderr
    assert f"agora resume={run}" in res.stderr and _snapshot(run) == killed
    res = agora(*base, f"hydra.run.dir={run}")
    assert res.returncode == 0, res.stderr[-2000:]
    log = (run / "cli.log").read_text()
    assert log.count("holds a checkpoint of this society run tiny-s0-") == 1 and "resuming it" in log
    assert json.loads((run / "summary.json").read_text())["resumed_after_step"] == 1
    assert (run / "preferences.parquet").read_bytes() == (ref / "preferences.parquet").read_bytes()
