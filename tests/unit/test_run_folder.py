"""The run-folder policy (sim.run.checkpoint.claim): a run started without resume= into a folder that holds a run resumes
its own checkpoint (what a retried or requeued sweep point does), leaves its own finished outputs alone, and refuses
another run's outputs or checkpoint in one line naming both runs (the command line: tests/e2e/test_run_folder_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.llm.scripted import ScriptedBackend
from scenarios.errors import InputError
from sim.experiments import runner_for
from sim.run.checkpoint import CHECKPOINT, Checkpoint, RunComplete, claim
from sim.run.lifecycle import run_id_for
from tests.helpers import compose

TINY = ("experiment=tiny", "sim.steps=3", "population.size=8")


class Crash(Exception):
    """Stands in for a kill, raised right after the n-th checkpoint write."""


def _crash_after(monkeypatch, n: int) -> None:
    real, calls = Checkpoint.save, [0]

    def save(self, *args, **kwargs):
        real(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == n:
            raise Crash(n)

    monkeypatch.setattr(Checkpoint, "save", save)


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_claim_in_a_new_or_empty_folder_starts_afresh(tmp_path):
    assert claim(tmp_path / "new", "r-1", "society") is None
    assert claim(tmp_path, "r-1", "society") is None


def test_claim_refuses_another_finished_run_and_leaves_its_own_alone(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"run_id": "inv-s0-aaaa", "kind": "inverse_constitution"}))
    with pytest.raises(RunComplete, match="already holds this inverse_constitution run inv-s0-aaaa, finished: nothing to do"):
        claim(tmp_path, "inv-s0-aaaa", "inverse_constitution")
    with pytest.raises(RunComplete):
        claim(tmp_path, "inv-s0-aaaa", None)  # the command line knows the run id only
    with pytest.raises(InputError, match="holds a finished inverse_constitution run inv-s0-aaaa; this config gives "
                                         "overton run ov-s0-bbbb: choose another hydra.run.dir") as err:
        claim(tmp_path, "ov-s0-bbbb", "overton")
    assert not isinstance(err.value, RunComplete)
    (tmp_path / "summary.json").write_text("not json")  # a summary.json that names no run is still a finished folder
    with pytest.raises(InputError, match=r"holds a finished \? run \?"):
        claim(tmp_path, "ov-s0-bbbb", "overton")


def test_claim_names_the_gate_settings_a_finished_run_ran_with_when_they_differ(tmp_path):
    """calibration.* is not in the run id: rerunning a finished run with it changed does nothing, and says so."""
    ran = {"calibration": {"enabled": True, "judge_items": 20}, "seed": 0}
    (tmp_path / "summary.json").write_text(json.dumps({"run_id": "r-1", "kind": "society", "config": ran}))
    with pytest.raises(RunComplete) as err:
        claim(tmp_path, "r-1", "society", config={**ran, "calibration": {"enabled": True, "judge_items": 8}})
    assert "nothing to do; it ran with calibration.judge_items=20 where this config gives 8, and stays as it is" in str(
        err.value)
    with pytest.raises(RunComplete) as err:
        claim(tmp_path, "r-1", "society", config=ran)
    assert "it ran with" not in str(err.value)


def test_claim_resumes_only_its_own_checkpoint_and_never_drops_a_damaged_one(tmp_path, monkeypatch):
    cfg = compose(*TINY)
    run_id = run_id_for(cfg)
    _crash_after(monkeypatch, 2)
    with pytest.raises(Crash):
        runner_for(cfg)(cfg, tmp_path, ScriptedBackend())
    monkeypatch.undo()
    assert claim(tmp_path, run_id, "society")["run_id"] == run_id
    before = _snapshot(tmp_path)
    with pytest.raises(InputError, match=rf"holds the checkpoint of an unfinished society run {run_id}; this config gives "
                                         rf"society run tiny-s1-\w+: continue that run with agora resume={tmp_path}"):
        claim(tmp_path, run_id_for(compose(*TINY, "seed=1")), "society")
    with pytest.raises(InputError, match="this config gives generations run"):
        claim(tmp_path, run_id, "generations")  # the same id under another kind is not this run
    ckpt = tmp_path / CHECKPOINT
    ckpt.write_bytes(ckpt.read_bytes()[:-20])
    damaged = _snapshot(tmp_path)
    with pytest.raises(InputError, match=rf"damaged checkpoint.*this config gives society run {run_id}; the checkpoint is "
                                         "kept"):
        claim(tmp_path, run_id, "society")
    with pytest.raises(InputError, match="damaged checkpoint"):
        runner_for(cfg)(cfg, tmp_path, ScriptedBackend())  # a new run does not write over it either
    assert _snapshot(tmp_path) == damaged and set(before) == set(damaged)


@pytest.mark.parametrize("preset", [TINY, ("experiment=pluralism", "study.pluralism.dilemmas=3", "population.size=8")])
def test_the_same_run_started_again_after_any_checkpoint_write_resumes_to_the_same_bytes(tmp_path, monkeypatch, preset):
    """What a sweep point retried by Ray or requeued by SLURM does: the same config into the same folder, no resume=."""
    cfg = compose(*preset)
    ref = tmp_path / "ref"
    runner_for(cfg)(cfg, ref, ScriptedBackend())
    outputs = lambda d: {p.name: p.read_bytes() for p in sorted(d.glob("*.parquet"))}  # noqa: E731
    n = 1
    while True:
        out = tmp_path / f"stop{n}"
        _crash_after(monkeypatch, n)
        try:
            runner_for(cfg)(cfg, out, ScriptedBackend())
        except Crash:
            pass
        else:
            break  # no n-th write: every stopping point was tried
        finally:
            monkeypatch.undo()
        summary = runner_for(cfg)(cfg, out, ScriptedBackend())  # cfg.resume is empty: the policy resumes it
        assert outputs(out) == outputs(ref), f"stopped after checkpoint write {n}"
        assert not (out / CHECKPOINT).exists() and summary["run_id"] == run_id_for(cfg)
        n += 1
    assert n > 2
