"""Checkpoint and resume in-process: every kind of run stopped right after any checkpoint write resumes to
the same bytes (the command line's resume is in test_resume_cli.py)."""

import dataclasses
from pathlib import Path

import pytest

from agents.llm.scripted import ScriptedBackend
from sim.config import AgoraConfig
from sim.experiments import runner_for  # what `agora` runs for a config
from sim.run.checkpoint import CHECKPOINT, CHECKPOINT_DIR, Checkpoint, read_checkpoint
from tests.helpers import compose


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
    "overton": ("experiment=overton", "study.overton.dilemmas=3", "population.size=8"),
    "human_distributions": ("experiment=human_distributions", "study.human.countries=[US,UK,Japan]"),
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
    # the label-quality gate's stage; gen 0: steps, society stage, overton coverage, reward, dpo; then gen 1's first step
    after_dpo_first_step = 1 + steps + 4 + 1
    assert writes[0] == 1 + 2 * (steps + 3) + 1
    summary = _stop_and_resume(monkeypatch, cfg, ref, tmp_path / "ref", tmp_path / "stopped", after_dpo_first_step)
    assert summary["generations"][1]["policy_model"] == "policy-g1" == ref["generations"][1]["policy_model"]
    for key in ("rm_eval_accuracy", "dpo_eval_margin_after"):
        assert summary["generations"][0][key] == ref["generations"][0][key]
