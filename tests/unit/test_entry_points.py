"""``agora-eval``, ``agora-sanity`` and ``agora-injection`` run through ``Run`` like every run: the folder's lock (a
second command into it is refused in one line), a run id in ``summary.json``, ``report.md``, atomic writes (a write
stopped half way leaves no half file), and checkpointed stages (the same command after a stop resumes)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

import sim.run.store
from agents.llm.scripted import ScriptedBackend
from sim.config import EvalConfig
from sim.run.checkpoint import CHECKPOINT, RunComplete
from sim.run.ids import run_id_for
from sim.run.lock import LOCK, FolderLock
from tests.helpers import AGORA_EVAL, AGORA_INJECTION, AGORA_SANITY, agora, tiny_config

PROGS = {AGORA_EVAL: "agora-eval", AGORA_SANITY: "agora-sanity", AGORA_INJECTION: "agora-injection"}


def _args(code: str, out: Path) -> tuple[str, ...]:
    return {AGORA_EVAL: ("llm=scripted", "eval.scenarios=2", "population.size=4", f"hydra.run.dir={out}"),
            AGORA_SANITY: ("--out", str(out), "--train", "2", "--eval", "2"),
            AGORA_INJECTION: ("--out", str(out / "i.json"), "--dilemmas", "1")}[code]


@pytest.mark.parametrize("code", [AGORA_EVAL, AGORA_SANITY, AGORA_INJECTION])
def test_a_second_command_into_a_held_folder_is_refused_in_one_line(tmp_path, code):
    out = tmp_path / "run"
    out.mkdir()
    lock = FolderLock(out)  # a run holding the folder (a flock, as another process's)
    try:
        res = agora(*_args(code, out), code=code, timeout=300)
    finally:
        lock.release()
    err = res.stderr.strip()
    assert res.returncode == 2 and "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"{PROGS[code]}: error: {out}: in use by another run (pid {os.getpid()}"), err
    assert {p.name for p in out.iterdir()} <= {".hydra", "cli.log"}  # nothing of the refused run written


def test_eval_takes_the_lock_itself(tmp_path):
    """The command checks the folder before Hydra writes there; the run's own lock is what keeps two runs apart."""
    import sim.experiments.evaluate as ev
    from scenarios.errors import InputError
    from sim.experiments.entry_points import run_eval

    cfg, out = _eval_cfg(), tmp_path / "run"
    out.mkdir()
    lock = FolderLock(out)
    try:
        with pytest.raises(InputError, match="in use by another run"):
            run_eval(cfg, out, ev.eval_inputs(cfg))
    finally:
        lock.release()
    assert not list(out.iterdir())


# -- agora-sanity: the training stubbed (the real one is tests/embedded/test_alignment_training.py) --------------
@pytest.fixture
def trainers(monkeypatch):
    """Fake trainers with the figures' shape; ``calls`` counts each training, ``stop`` makes DPO stop once."""
    state = {"calls": [], "stop": False}

    def reward(train, held, cfg, out_dir, *a, **k):
        state["calls"].append("reward_model")
        return {"eval": {"accuracy": 0.75, "ece": 0.1}, "pairs_per_s": 12.0, "path": Path(out_dir)}

    def dpo(train, held, cfg, out_dir, *a, **k):
        state["calls"].append("dpo")
        if state["stop"]:
            state["stop"] = False
            raise KeyboardInterrupt
        return {"eval_margin_before": 0.0, "eval_margin_after": 0.5, "eval_margin_accuracy": 0.8, "pairs_per_s": 3.0}

    monkeypatch.setattr("alignment.reward.train_reward_model", reward)
    monkeypatch.setattr("alignment.dpo.train_dpo", dpo)
    return state


def test_sanity_writes_a_run_id_a_report_and_resumes_after_a_stop(tmp_path, trainers):
    from sim.experiments.entry_points import SANITY, run_sanity_command, sanity_config

    out = tmp_path / "sanity"
    trainers["stop"] = True
    with pytest.raises(KeyboardInterrupt):
        run_sanity_command(out, 4, 2, 7)
    assert (out / CHECKPOINT).is_file() and not (out / "summary.json").exists() and not (out / LOCK).exists()
    result = run_sanity_command(out, 4, 2, 7)  # the same command again: the reward model is not trained twice
    assert trainers["calls"] == ["reward_model", "dpo", "dpo"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run_id"] == run_id_for(sanity_config(4, 2, 7), SANITY) and summary["kind"] == SANITY
    assert summary["run_id"].startswith("sanity-s7-") and summary["config"]["study"]["sanity"] == {"train": 4, "held_out": 2}
    assert set(summary["seconds"]) == {"reward_model", "dpo"} and summary["backend"]["name"] == "none"
    assert json.loads((out / "sanity.json").read_text()) == result and result["reward_model"]["path"] == str(out / "reward_model")
    report = (out / "report.md").read_text()
    assert summary["run_id"] in report and "held-out accuracy 0.750" in report
    assert not (out / CHECKPOINT).exists() and not (out / LOCK).exists()
    with pytest.raises(RunComplete):
        run_sanity_command(out, 4, 2, 7)
    other = run_id_for(sanity_config(6, 2, 7), SANITY)
    assert other != summary["run_id"]  # the options are what the run is


def _stop_at(monkeypatch, name: str) -> list[str]:
    """``os.replace`` onto ``name`` stops the process there (as a kill between the write and the rename would)."""
    real, seen = os.replace, []

    def replace(src, dst, *a, **k):
        if Path(dst).name == name and not seen:
            seen.append(name)
            raise KeyboardInterrupt
        return real(src, dst, *a, **k)

    monkeypatch.setattr(sim.run.store.os, "replace", replace)
    return seen


def test_a_stopped_write_leaves_no_half_file_and_the_run_resumes(tmp_path, trainers, monkeypatch):
    from sim.experiments.entry_points import run_sanity_command

    out = tmp_path / "sanity"
    seen = _stop_at(monkeypatch, "sanity.json")
    with pytest.raises(KeyboardInterrupt):
        run_sanity_command(out, 4, 2, 0)
    assert seen and not (out / "sanity.json").exists() and not list(out.glob(".sanity.json.*"))
    assert (out / CHECKPOINT).is_file() and not (out / LOCK).exists()
    run_sanity_command(out, 4, 2, 0)
    assert trainers["calls"] == ["reward_model", "dpo"]  # both trainings replayed from the checkpoint
    assert json.loads((out / "sanity.json").read_text())["dpo"]["eval_margin_after"] == 0.5


# -- agora-injection on a scripted judge -----------------------------------------------------------------------
def test_injection_writes_its_file_a_run_id_and_a_report_atomically(tmp_path, monkeypatch):
    from sim.experiments.entry_points import INJECTION, injection_config, run_injection_command

    out = tmp_path / "inj" / "figures.json"
    seen = _stop_at(monkeypatch, "figures.json")
    with pytest.raises(KeyboardInterrupt):
        run_injection_command(2, 3, out, ScriptedBackend())
    assert seen and not out.exists() and not list(out.parent.glob(".figures.json.*"))
    def never(request):
        raise AssertionError("both stages are replayed from the checkpoint")

    result = run_injection_command(2, 3, out, ScriptedBackend(reply=never, scores=never))
    assert json.loads(out.read_text()) == result and set(result["prompts"]) == {"naive", "fenced"}
    summary = json.loads((out.parent / "summary.json").read_text())
    assert summary["run_id"] == run_id_for(injection_config(2, 3), INJECTION) and summary["output"] == "figures.json"
    assert summary["run_id"] in (out.parent / "report.md").read_text() and set(summary["seconds"]) == {"answers", "labels"}
    assert not (out.parent / CHECKPOINT).exists() and not (out.parent / LOCK).exists()
    assert summary["backend"]["score_calls"] == 32  # the counts cover every attempt


# -- agora-eval ------------------------------------------------------------------------------------------------
def _eval_cfg():
    cfg = tiny_config()
    return dataclasses.replace(cfg, population=dataclasses.replace(cfg.population, size=4),
                               eval=EvalConfig(suites=["moralchoice", "steerability"], scenarios=2))


def test_eval_resumes_after_its_last_finished_suite_with_the_same_outputs(tmp_path, monkeypatch):
    import sim.experiments.evaluate as ev
    from sim.experiments.entry_points import EVAL, run_eval

    cfg = _eval_cfg()
    run_eval(cfg, tmp_path / "whole", ev.eval_inputs(cfg))
    real, calls = ev.score_judges, []

    def judges(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # stopped during the third suite's readings
        return real(*a, **k)

    monkeypatch.setattr(ev, "score_judges", judges)
    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg, out, ev.eval_inputs(cfg))
    assert (out / CHECKPOINT).is_file() and not (out / "eval.json").exists() and not (out / LOCK).exists()
    stances, real_stances = [], ev.score_stances
    monkeypatch.setattr(ev, "score_stances", lambda *a, **k: stances.append(1) or real_stances(*a, **k))
    run_eval(cfg, out, ev.eval_inputs(cfg))
    assert stances == [1]  # only the unconditioned stances (after the stop) are read; the rest replayed
    assert (out / "eval_items.parquet").read_bytes() == (tmp_path / "whole" / "eval_items.parquet").read_bytes()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run_id"] == run_id_for(cfg, EVAL) != run_id_for(cfg) and summary["kind"] == EVAL
    assert summary["run_id"] in (out / "report.md").read_text() and (out / "eval.md").is_file()
    other = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, scenarios=3))
    assert run_id_for(other, EVAL) != summary["run_id"] and run_id_for(other) == run_id_for(cfg)  # society ids as before


def test_agora_eval_resume_goes_on_from_the_stored_config(tmp_path, monkeypatch):
    """``agora-eval resume=DIR``: the stored config (the resume rule of sim/run/ids.py: a changed population is
    ignored), the same folder, the run finished there under its own id."""
    import sim.experiments.evaluate as ev
    from sim.experiments.entry_points import EVAL, run_eval
    from tests.helpers import compose

    cfg, out = compose("name=eval", "eval.scenarios=2", "population.size=4"), tmp_path / "run"

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ev, "score_judges", stop)
    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg, out, ev.eval_inputs(cfg))
    res = agora(f"resume={out}", "population.size=9", code=AGORA_EVAL, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ignoring population.size=9" in res.stdout + res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run_id"] == run_id_for(cfg, EVAL) and summary["config"]["population"]["size"] == 4
    assert not (out / CHECKPOINT).exists() and (out / "report.md").is_file()


def test_eval_into_another_runs_finished_folder_is_refused_before_hydra_rewrites_its_config(tmp_path):
    """A refused agora-eval once replaced the finished run's .hydra/ (agora-report then named the run wrongly)."""
    out = tmp_path / "run"
    first = agora("llm=scripted", "experiment=tiny", "sim.progress=false", f"hydra.run.dir={out}", timeout=300)
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in (out / ".hydra").iterdir()}
    res = agora(*_args(AGORA_EVAL, out), code=AGORA_EVAL, timeout=300)
    err = res.stderr.strip()
    assert res.returncode == 2 and "\n" not in err and err.startswith("agora-eval: error: "), err
    assert {p.name: p.read_bytes() for p in (out / ".hydra").iterdir()} == before


@pytest.mark.parametrize("args", [("eval.suites=[bogus]",), ("nonsense.key=1",), ("resume=",)])
def test_agora_eval_names_itself_in_its_config_errors(tmp_path, args):
    """A refused agora-eval config once said ``agora: error:`` (another command's name)."""
    res = agora("llm=scripted", f"hydra.run.dir={tmp_path / 'run'}", *args, code=AGORA_EVAL, timeout=300)
    err = res.stderr.strip()
    assert res.returncode == 2 and "\n" not in err and err.startswith("agora-eval: error: "), err
    assert ("resume=" in err) if args == ("resume=",) else err.startswith("agora-eval: error: bad config: "), err
    assert not (tmp_path / "run").exists()


def test_an_interrupted_agora_eval_says_how_to_resume(tmp_path):
    """Like ``agora``'s: one line naming the command that goes on from the kept checkpoint."""
    out = tmp_path / "run"
    stop = ("import sim.experiments.evaluate as ev\n"
            "def stop(*a, **k):\n    raise KeyboardInterrupt\n"
            "ev.score_judges = stop\n" + AGORA_EVAL)
    res = agora(*_args(AGORA_EVAL, out), code=stop, timeout=300)
    assert res.returncode == 130, res.stderr[-2000:]
    last = res.stderr.strip().splitlines()[-1].split("\r")[-1]  # after the reading bars
    assert last == f"agora-eval: interrupted (the last checkpoint is kept: agora-eval resume={out})", res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert (out / CHECKPOINT).is_file()
    from sim.report.compare import why_unfinished  # agora-report's Did-not-finish line names the same command

    assert why_unfinished(out) == f"interrupted; agora-eval resume={out} continues it"
    (out / "cli.log").write_text("")  # a kill -9 leaves no line: the checkpoint's kind still names the command
    assert why_unfinished(out).endswith(f"agora-eval resume={out} continues it")
    res = agora(f"resume={out}", code=AGORA_EVAL, timeout=300)
    assert res.returncode == 0 and (out / "summary.json").is_file(), res.stderr[-2000:]
