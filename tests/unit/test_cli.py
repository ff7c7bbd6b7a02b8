"""What the commands show a person: each entry point's own help, where agora-report writes, the per-step
log line, and the step progress bar's ETA (scripted backend, no model)."""

from __future__ import annotations

import dataclasses
import io
import logging
import math

import pytest

from alignment.config import EvalConfig
from sim.commands.tools import default_report_dir
from sim.society.model import step_line
from sim.society.progress import StepBar
from tests.helpers import AGORA_EVAL, agora, tiny_config


def test_agora_eval_help_is_its_own_page_with_every_key_and_its_default():
    res = agora("--help", code=AGORA_EVAL, timeout=120)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert text.startswith("agora-eval: ") and "Usage: agora-eval" in text
    assert "Usage: agora [" not in text and "suites: []" not in text  # not agora's page and config dump
    for f in dataclasses.fields(EvalConfig):
        assert f"  eval.{f.name}=" in text, f.name
    assert "eval.scenarios=40 " in text and "eval.suites=[] " in text and "runs moralchoice and steerability" in text
    assert "Examples:" in text and "agora-eval eval.suites=[hhh]" in text
    # the suite whose data cannot ship: out of the defaults, and how to add it
    assert "eval.suites=[hhh,moralchoice,steerability] eval.hhh_path=" in text and "has no licence" in text


def test_agora_report_writes_where_its_help_says(tmp_path):
    run, sweep = tmp_path / "run", tmp_path / "sweep"
    run.mkdir()
    (run / "summary.json").write_text("{}")
    sweep.mkdir()
    assert default_report_dir([run]) == run / "agora_report"  # beside, not over, the run's own report.md
    assert default_report_dir([sweep]) == sweep
    assert default_report_dir([run, sweep]) == default_report_dir([sweep, run]) != run


def test_the_step_line_is_a_few_labelled_figures():
    m = {"share_a_initial": 0.5, "share_a_post_debate": 0.625, "share_a_revised": math.nan, "consensus_initial": 0.5,
         "abstain_initial": 0.0, "unparsed_initial": 0.25, "preferences": 9, "position_flip_rate": math.nan,
         "label_informativeness": 0.1234, "cluster_spread": 0.5, "share_a_initial[confucian]": 1.0}
    line = step_line(m)
    assert line == ("9 preferences, chose A 50% at first -> 62% after debate, clusters differ by 50%, "
                    "label strength |P(A)-0.5| 0.12, unparseable replies 25%")
    assert step_line({}) == ""


def test_a_run_logs_the_short_step_line_at_info_and_every_metric_at_debug(tmp_path, caplog):
    from agents.llm.scripted import ScriptedBackend
    from sim.experiments import run_experiment as run

    caplog.set_level(logging.DEBUG, logger="sim.run.checkpoint")
    run(tiny_config(), tmp_path / "run", ScriptedBackend())
    info = [r.getMessage() for r in caplog.records if r.name == "sim.run.checkpoint" and r.levelno == logging.INFO]
    debug = [r.getMessage() for r in caplog.records if r.name == "sim.run.checkpoint" and r.levelno == logging.DEBUG]
    (step,) = [m for m in info if "step 1/1 done" in m]
    assert "preferences, chose A" in step and "{" not in step and len(step) < 200, step
    assert any("'share_a_initial':" in m and "'label_informativeness':" in m for m in debug), debug


class _Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def _bar(expected):
    clock = _Clock()
    bar = StepBar(total=0, unit="call", file=io.StringIO(), mininterval=0, expected=expected)
    bar._time, bar.start_t, bar.last_print_t = clock, 0.0, 0.0
    return bar, clock


def test_a_first_step_shows_no_eta_until_a_whole_burst_is_answered():
    bar, clock = _bar(None)
    bar.send(52)
    clock.t = 31.0
    bar.update(1)  # the first reply of a batched burst: its rate would say 26 minutes
    assert "1/52 [00:31<?, ?call/s]" in str(bar)
    clock.t = 31.5
    bar.update(51)
    assert "52/52 [00:31<00:00" in str(bar)
    bar.send(48)
    clock.t = 40.0
    bar.update(10)  # a rate from whole bursts now: 62 calls in 40 s
    assert "62/100 [00:40<00:24," in str(bar)


@pytest.mark.parametrize("done,at,eta", [(1, 31.0, "01:19"), (52, 31.0, "00:26"), (100, 60.0, "00:00")])
def test_a_later_step_starts_from_the_last_steps_pace(done, at, eta):
    bar, clock = _bar((100, 50.0))  # the previous step: 100 calls in 50 s
    assert bar.total == 100 and "0/100 [00:00<00:50," in str(bar)  # before any reply: the previous pace
    bar.send(52)
    clock.t = at
    bar.update(done)
    assert f"{done}/100 [{int(at) // 60:02d}:{int(at) % 60:02d}<{eta}," in str(bar), str(bar)


def test_the_bar_total_grows_past_the_expected_count_when_a_step_sends_more():
    bar, _ = _bar((10, 5.0))
    bar.send(8)
    assert bar.total == 10
    bar.send(8)
    assert bar.total == 16


def test_a_bar_measures_its_own_pace_and_a_disabled_one_none():
    bar, clock = _bar(None)
    bar.send(10)
    clock.t = 5.0
    bar.update(10)
    assert bar.measured() == (10, 5.0)
    assert StepBar(total=0, disable=True).measured() is None


def test_every_step_of_a_society_makes_the_same_calls_so_the_last_seeds_the_next(capsys):
    from agents.llm.scripted import ScriptedBackend
    from scenarios.constitution import load_constitution
    from scenarios.dilemma import load_dilemmas
    from sim.society.model import Society

    cfg = tiny_config(steps=3, progress=True)
    soc = Society(cfg, load_dilemmas("default"), load_constitution(cfg.constitution.name), ScriptedBackend(), run_id="t")
    assert soc.pace is None
    paces = []
    for _ in range(3):
        soc.step()
        paces.append(soc.pace)
    calls = {p[0] for p in paces}
    assert len(calls) == 1 and calls.pop() > 0 and all(p[1] > 0 for p in paces), paces
    capsys.readouterr()  # the bars went to stderr


# -- agora-report on folders that are not finished runs, and outputs it cannot write --------------------
@pytest.mark.parametrize("text,needle", [
    ("[]", "not an agora run's summary"),
    ("{}", "not an agora run's summary"),
    ("{bad", "not valid JSON"),
    ('{"run_id": "x"}', "not an agora run's summary"),
])
def test_agora_report_refuses_a_summary_that_is_not_a_run_in_one_line(tmp_path, capsys, text, needle):
    from sim.cli import report_main

    (tmp_path / "summary.json").write_text(text)
    with pytest.raises(SystemExit) as stop:
        report_main([str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err.count("\n") == 0
    assert err.startswith(f"agora-report: error: {tmp_path / 'summary.json'}: ") and needle in err


def test_agora_report_names_an_output_it_cannot_write(tmp_path, capsys):
    from sim.cli import report_main

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text('{"run_id": "r", "kind": "society", "headline": {"x": 1.0}}')
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as stop:
        report_main([str(tmp_path / "run"), "-o", str(tmp_path / "a_file")])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err == f"agora-report: error: cannot write the report: {tmp_path / 'a_file'}: File exists"


@pytest.mark.parametrize(("override", "owner"), [("study.overton.dilemmas=2", "overton"),
                                                  ("study.norms.generations=2", "evolving_norms"),
                                                  ("+study.overton.dilemmas=2", "overton")])
def test_an_experiments_settings_on_another_run_name_the_experiment(tmp_path, override, owner):
    """``study.<key>.*`` without its ``experiment=``: the line says which experiment the settings belong to."""
    res = agora("llm=scripted", override, f"hydra.run.dir={tmp_path / 'run'}", timeout=300)
    err = res.stderr.strip()
    assert res.returncode == 2 and "\n" not in err and err.endswith(f"add experiment={owner})"), err
    assert not (tmp_path / "run").exists()


def test_an_experiments_settings_node_alone_is_refused(tmp_path):
    """``study=overton`` without ``experiment=overton`` would run overton under the society's name and folder."""
    res = agora("llm=scripted", "study=overton", f"hydra.run.dir={tmp_path / 'run'}", timeout=300)
    err = res.stderr.strip()
    assert res.returncode == 2 and "\n" not in err, err
    assert err == "agora: error: study=overton is the settings of experiment=overton: run agora experiment=overton"
    assert not (tmp_path / "run").exists()


def test_an_unknown_study_key_in_the_right_experiment_gets_no_such_hint():
    from sim.commands.errors import _whose_settings

    assert _whose_settings("Could not override 'study.nosuch': Key 'nosuch' not in 'OvertonStudy'") == ""
    assert _whose_settings("Could not override 'study.overton.x': Key 'overton' not in 'SocietyStudy'").endswith(
        "add experiment=overton)")
