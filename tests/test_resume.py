"""Checkpoint and resume: a run killed with SIGKILL at a seeded point continues to the same bytes."""

import dataclasses
import json
import os
import random
import time
from pathlib import Path

import pytest

from agents.llm.scripted import ScriptedBackend
from scenarios.dilemma import InputError
from sim.checkpoint import CHECKPOINT, CHECKPOINT_DIR, Checkpoint, read_checkpoint
from sim.config import AgoraConfig
from sim.studies import runner_for  # what `agora` runs for a config
from tests.helpers import agora, compose, start_agora

ARGS = ["llm=scripted", "population.size=120", "sim.steps=6", "sim.progress=false", "seed=3", "name=resume"]


def _steps_done(path) -> int:
    try:
        return json.loads(path.read_text())["extra"]["society"]["state"]["steps"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_kill_9_at_a_random_point_then_resume_gives_identical_outputs(tmp_path):
    ref = tmp_path / "ref"
    assert agora(*ARGS, f"hydra.run.dir={ref}").returncode == 0
    assert not (ref / CHECKPOINT).exists()  # removed once summary.json marks the run complete

    # the kill point comes from a seed (AGORA_KILL_SEED=N tries another; every message names it); the kill
    # itself lands `delay` after the checkpoint wherever the child then is, so it varies a little with load
    seed = int(os.environ.get("AGORA_KILL_SEED", "19"))
    rng = random.Random(seed)
    after_step, delay = rng.randint(1, 3), rng.uniform(0.0, 0.2)
    victim = tmp_path / "victim"
    proc = start_agora(*ARGS, f"hydra.run.dir={victim}")
    deadline = time.monotonic() + 240
    while _steps_done(victim / CHECKPOINT) < after_step and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    done = _steps_done(victim / CHECKPOINT)
    where = (f"AGORA_KILL_SEED={seed}: killed {delay:.3f} s after step {after_step}'s checkpoint, "
             f"with {done} steps checkpointed; ")
    assert not (victim / "summary.json").exists(), where
    assert after_step <= done < 6, where

    res = agora(f"resume={victim}")  # Hydra's log goes to victim/cli.log
    assert res.returncode == 0, where + res.stderr[-2000:]
    for name in ("preferences.parquet", "stances.parquet", "transcripts.parquet", "metrics.parquet"):
        assert (victim / name).read_bytes() == (ref / name).read_bytes(), f"{name} differs; {where}"
    summary = json.loads((victim / "summary.json").read_text())
    assert summary["resumed_after_step"] == done and summary["counts"]["steps"] == 6, where
    assert not (victim / CHECKPOINT).exists(), where


def test_resume_refuses_clearly_when_there_is_nothing_to_resume(tmp_path):
    with pytest.raises(InputError, match="no checkpoint.json"):
        read_checkpoint(tmp_path)
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(InputError, match="already complete"):
        read_checkpoint(tmp_path)
    res = agora(f"resume={tmp_path}")
    assert res.returncode == 2 and "already complete" in res.stderr and "Traceback" not in res.stderr
    res = agora(f"resume={tmp_path / 'typo'}")
    assert res.returncode == 2 and "no such run folder" in res.stderr and not (tmp_path / "typo").exists()


# -- every kind of run: stop right after each checkpoint write, resume, compare ----------------------------
class Crash(Exception):
    """Stands in for a kill: raised right after the n-th checkpoint write (before any later work)."""


def _with_crash(monkeypatch, n: int | None, method: str = "save") -> list[int]:
    """Patch ``Checkpoint.<method>`` to raise right after its ``n``-th call (never for None); returns the call counter."""
    real, calls = getattr(Checkpoint, method), [0]

    def patched(self, *args, **kwargs):
        real(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == n:
            raise Crash(n)

    monkeypatch.setattr(Checkpoint, method, patched)
    return calls


def _outputs(d: Path) -> dict[str, bytes]:
    # every parquet file, metrics_generations included (training pairs/s is in summary.json, not there)
    return {p.name: p.read_bytes() for p in sorted(d.glob("*.parquet"))}


def _stop_and_resume(monkeypatch, cfg: AgoraConfig, ref: dict, ref_dir: Path, out: Path, n: int,
                     method: str = "save") -> dict:
    with pytest.raises(Crash):
        _with_crash(monkeypatch, n, method)
        runner_for(cfg)(cfg, out, ScriptedBackend())
    assert (out / CHECKPOINT).exists() and not (out / "summary.json").exists()
    monkeypatch.undo()
    resumed = dataclasses.replace(cfg, resume=str(out))
    summary = runner_for(cfg)(resumed, out, ScriptedBackend())
    where = f"stopped after checkpoint write {n}"
    assert _outputs(out) == _outputs(ref_dir), where
    assert summary.get("backend", {}).get("generate_calls") == ref.get("backend", {}).get("generate_calls"), where
    untimed = lambda h: {k: v for k, v in h.items() if not k.endswith("_per_s")}  # noqa: E731
    assert untimed(summary["headline"]) == untimed(ref["headline"]), where
    assert not (out / CHECKPOINT).exists() and not (out / CHECKPOINT_DIR).exists()
    return summary


STUDIES = {
    "pluralism": ("experiment=pluralism", "study.pluralism.dilemmas=3", "population.size=8"),
    "evolving_norms": ("experiment=evolving_norms", "study.norms.generations=4", "study.norms.dilemmas=2",
                       "study.norms.train_policy=false", "population.size=8"),
    "constitution_ablation": ("experiment=constitution_ablation", "study.ablation.train_reward=false",
                              "population.size=8", "sim.steps=2"),
    "society": ("experiment=tiny", "population.size=8", "sim.steps=3"),
}


@pytest.mark.parametrize("kind", list(STUDIES))
def test_stopping_after_any_checkpoint_then_resuming_gives_identical_outputs(kind, tmp_path, monkeypatch):
    cfg = compose(*STUDIES[kind])
    writes = _with_crash(monkeypatch, None)
    ref = runner_for(cfg)(cfg, tmp_path / "ref", ScriptedBackend())
    total = writes[0]
    monkeypatch.undo()
    assert total >= 2 and not (tmp_path / "ref" / CHECKPOINT).exists()
    assert _outputs(tmp_path / "ref")
    for n in range(1, total + 1):  # every unit boundary, the last one included
        _stop_and_resume(monkeypatch, cfg, ref, tmp_path / "ref", tmp_path / f"stop{n}", n)


def test_rows_logged_after_the_last_checkpoint_are_dropped_on_resume(tmp_path, monkeypatch):
    """A kill between a step's row append and its checkpoint write leaves a tail the checkpoint does not
    record: the resumed run cuts it and redoes that step (no row twice, none lost)."""
    cfg = compose(*STUDIES["society"])
    ref = runner_for(cfg)(cfg, tmp_path / "ref", ScriptedBackend())
    out = tmp_path / "torn"
    with pytest.raises(Crash):
        _with_crash(monkeypatch, 2, "append_rows")
        runner_for(cfg)(cfg, out, ScriptedBackend())
    monkeypatch.undo()
    state = read_checkpoint(out)
    assert state["extra"]["society"]["state"]["steps"] == 1
    assert (out / CHECKPOINT_DIR / "rows.jsonl").stat().st_size > state["rows"]["bytes"]  # step 2's rows, uncommitted
    summary = runner_for(cfg)(dataclasses.replace(cfg, resume=str(out)), out, ScriptedBackend())
    assert _outputs(out) == _outputs(tmp_path / "ref") and summary["counts"] == ref["counts"]


@pytest.mark.slow  # ~2 min: each attempt trains reward models and a DPO policy; `make test-slow` (and CI) run it
def test_generations_run_resumes_mid_generation_with_the_tuned_policy_from_disk(tmp_path, monkeypatch):
    """Stop in generation 1's first step (after generation 0's DPO): the resumed run must load the tuned
    policy from its folder, the stored society state, and end with the same feedback as a run that never stopped."""
    cfg = compose("experiment=tiny_evolve")
    writes = _with_crash(monkeypatch, None)
    ref = runner_for(cfg)(cfg, tmp_path / "ref", ScriptedBackend())
    monkeypatch.undo()
    steps = cfg.sim.steps
    # the label-quality gate's stage; gen 0: steps, society stage, reward, dpo; then gen 1's first step
    after_dpo_first_step = 1 + steps + 3 + 1
    assert writes[0] == 1 + 2 * (steps + 2) + 1
    summary = _stop_and_resume(monkeypatch, cfg, ref, tmp_path / "ref", tmp_path / "stopped", after_dpo_first_step)
    assert summary["generations"][1]["policy_model"] == "policy-g1" == ref["generations"][1]["policy_model"]
    for key in ("rm_eval_accuracy", "dpo_eval_margin_after"):
        assert summary["generations"][0][key] == ref["generations"][0][key]


# -- the command line: where a resumed run writes ----------------------------------------------------------
TINY = ["llm=scripted", "experiment=tiny", "sim.steps=2", "sim.progress=false"]
# Runs `agora ARGS...` in a child that dies (os._exit, as a kill would) right after its first step's checkpoint.
_DIE_AFTER_FIRST_CHECKPOINT = """
import os, sys
from sim.checkpoint import Checkpoint
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


def test_resume_from_another_folder_writes_only_into_the_run_folder(tmp_path):
    ref, run, elsewhere = tmp_path / "ref", tmp_path / "run", tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert agora(*TINY, f"hydra.run.dir={ref}").returncode == 0
    code = _DIE_AFTER_FIRST_CHECKPOINT.format(args=[*TINY, f"hydra.run.dir={run}"])
    died = agora(code=code)
    assert died.returncode == 9 and _steps_done(run / CHECKPOINT) == 1, died.stderr[-2000:]
    log, started = (run / "cli.log").read_text(), (run / ".hydra" / "overrides.yaml").read_text()

    res = agora(f"resume={run}", cwd=elsewhere)
    assert res.returncode == 0, res.stderr[-2000:]
    assert list(elsewhere.iterdir()) == []  # no outputs/<name>/<timestamp>/ where it was started
    assert (run / "cli.log").read_text().startswith(log) and len((run / "cli.log").read_text()) > len(log)
    assert (run / ".hydra" / "overrides.yaml").read_text() == started  # how the run was started, kept
    names = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*"))  # noqa: E731
    assert names(run) == names(ref)  # a resumed run's folder holds what an uninterrupted one does
    assert (run / "preferences.parquet").read_bytes() == (ref / "preferences.parquet").read_bytes()


@pytest.mark.parametrize("empty", ["resume=", "resume=''", '++resume=""'])
def test_an_empty_resume_is_an_error_not_a_new_run(tmp_path, empty):
    res = agora(*TINY, empty, cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "resume= needs the folder" in res.stderr, res.stderr
    assert list(tmp_path.iterdir()) == []


def test_resume_argv_sends_hydra_output_into_the_run_folder():
    from sim.cli import resume_argv

    assert resume_argv(["llm=scripted", "seed=3"]) == ["llm=scripted", "seed=3"]  # not a resume: untouched
    assert resume_argv(["resume=.", "hydra.run.dir=elsewhere", "llm.base_url=http://h:1/v1"]) == [
        "resume=.", "llm.base_url=http://h:1/v1", "hydra.run.dir=${resume}", "hydra.output_subdir=null"]


def test_an_empty_resume_that_reaches_hydra_is_still_an_error(tmp_path):
    """The entry point below `main` checks Hydra's overrides too (an explicit `resume=` with an empty value)."""
    code = "import sys; from sim.cli import _main, run_hydra; run_hydra(_main)"
    res = agora(*TINY, "resume=", f"hydra.run.dir={tmp_path / 'r'}", code=code)
    assert res.returncode == 2 and "resume= needs the folder" in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "r" / "summary.json").exists()
