"""The hostile-input corpus, experiments' part: a statistic that cannot be computed is n/a with its reason
(never an exception after the model work, never a bare NaN); a run that cannot mean anything, or a setting
that cannot be honoured, is refused before any work in one line (exit 2, no folder left); a setting that
scales work has an upper bound; a value honoured only in part is recorded; every file a checkpoint
references is checked on resume.

Everything runs on the scripted backend; most checks are in-process (:func:`sim.experiments.preflight` is
what each runner calls first), a few through the CLI to show the exit code and the folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from agents.llm.scripted import ScriptedBackend
from alignment.metrics import (
    NA,
    Interval,
    bootstrap_interval,
    expected_calibration_error,
    finite_figures,
    js_distance,
    krippendorff_alpha,
    log_loss,
    normalised_entropy,
    paired_permutation_test,
    pairwise_accuracy,
    position_bias_rate,
    proportion_interval,
    reliability_bins,
    why,
)
from scenarios.errors import InputError
from sim.experiments import preflight, runner_for
from sim.report.render import fmt_interval
from sim.run.checkpoint import CHECKPOINT_DIR
from tests.helpers import agora, compose

OK = {"id": "d1", "situation": "You find a wallet.", "action_a": "Return it.", "action_b": "Keep it."}


def _one_dilemma(tmp_path: Path) -> str:
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(OK) + "\n")
    return str(path)


def _na(x: float, *needles: str) -> str:
    assert isinstance(x, NA) and math.isnan(x), x
    for n in needles:
        assert n in x.reason, (n, x.reason)
    return x.reason


# -- every statistic helper on degenerate input: n/a with a reason, never raised, never a bare NaN ------------
NAN = float("nan")
DEGENERATE = {
    "bootstrap, no values": (lambda: bootstrap_interval([])[0], "no values"),
    "bootstrap, a NaN": (lambda: bootstrap_interval([0.1, NAN])[1], "NaN"),
    "bootstrap, one value's interval": (lambda: bootstrap_interval([0.3])[1], "one value"),
    "permutation, no pairs": (lambda: paired_permutation_test([]), "no paired differences"),
    "permutation, one pair": (lambda: paired_permutation_test([0.4]), "one pair"),
    "permutation, a NaN": (lambda: paired_permutation_test([0.4, NAN]), "NaN"),
    "Wilson, n = 0": (lambda: proportion_interval(0, 0)[0], "no observations"),
    "accuracy, no pairs": (lambda: pairwise_accuracy([], []), "no predictions"),
    "accuracy, every label a tie": (lambda: pairwise_accuracy([0.7, 0.2], [0.5, 0.5]), "tie"),
    "accuracy, a NaN prediction": (lambda: pairwise_accuracy([NAN, 0.2], [0.9, 0.1]), "NaN"),
    "log loss, no pairs": (lambda: log_loss([], []), "no predictions"),
    "ECE, no pairs": (lambda: expected_calibration_error([], []), "no predictions"),
    "ECE, a NaN": (lambda: expected_calibration_error([NAN, 0.4], [1, 0]), "NaN"),
    "ECE, outside [0, 1]": (lambda: expected_calibration_error([1.5, 0.4], [1, 0]), "outside [0, 1]"),
    "entropy, one perspective": (lambda: normalised_entropy([3]), "K >= 2"),
    "entropy, no counts": (lambda: normalised_entropy([0, 0, 0]), "every count is 0"),
    "entropy, a NaN": (lambda: normalised_entropy([1, NAN]), "NaN"),
    "JS, no mass": (lambda: js_distance([0, 0], [0.5, 0.5]), "no mass"),
    "JS, a NaN": (lambda: js_distance([NAN, 1], [0.5, 0.5]), "NaN"),
    "alpha, one coder": (lambda: krippendorff_alpha(np.array([[1.0, 2.0, 3.0]])), "two or more coders"),
    "alpha, no item with two coders": (lambda: krippendorff_alpha(np.array([[1.0, NAN], [NAN, 2.0]])), "two or more coders"),
    "alpha, every rating equal": (lambda: krippendorff_alpha(np.ones((2, 4))), "same value"),
    "position bias, no items": (lambda: position_bias_rate([], []), "no items"),
}


@pytest.mark.parametrize("name", list(DEGENERATE))
def test_a_statistic_on_degenerate_input_is_na_with_its_reason(name):
    compute, needle = DEGENERATE[name]
    _na(compute(), needle)


def test_defined_edge_cases_keep_their_values():
    assert bootstrap_interval([0.3]) [0] == 0.3  # one value: its mean stands, only the interval is n/a
    assert bootstrap_interval([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)  # no spread: every resample gives 2
    assert paired_permutation_test([0.0, 0.0, 0.0]) == 1.0
    assert normalised_entropy([4, 0, 0, 0]) == 0.0
    assert reliability_bins([NAN], [1.0]) == []  # the ECE beside it carries the reason
    from alignment.metrics import binary_entropy

    h = binary_entropy([0.0, 1.0, NAN, 0.5])
    assert h[:2].tolist() == [0.0, 0.0] and math.isnan(h[2]) and h[3] == 1.0  # a missing share is not unanimity


def test_na_reaches_summary_report_and_console_as_a_reason():
    record = Interval.of(bootstrap_interval([0.25]))
    figure = record.to_json()
    assert figure == {"value": 0.25, "low": None, "high": None, "na": "one value: no interval"}
    assert record == Interval(value=0.25, reason="one value: no interval") == Interval.from_json(figure)
    assert Interval.of(bootstrap_interval([])).to_json() == {"value": None, "low": None, "high": None, "na": "no values"}
    assert fmt_interval(figure) == fmt_interval(record) == "0.250 (one value: no interval)"
    assert fmt_interval(Interval.of(proportion_interval(0, 0))) == "n/a (no observations)"
    assert finite_figures(p=paired_permutation_test([0.2])) == {"p": None, "p_na": "one pair: a sign-flip test needs two or more"}
    assert json.loads(json.dumps(figure)) == figure and why(1.0, NA("x")) == "x"


def test_between_country_correlation_says_which_side_has_no_spread():
    from alignment.agreement import basic_interval, between_country_correlation, shuffled_baseline

    people = np.arange(12, dtype=float).reshape(4, 3)
    _na(between_country_correlation(np.ones((4, 3)), people), "the model gives every country the same profile")
    _na(between_country_correlation(people, np.ones((4, 3))), "people give every country the same profile")
    same = between_country_correlation(np.ones((4, 3)), people)
    assert basic_interval(same, np.zeros(10), 0.95, -1, 1)["na"].startswith("the model gives")
    out = shuffled_baseline(np.ones((4, 3)), people, 100, seed=0)
    assert out["permutation_p"] is None and "the model's correlation is n/a" in out["permutation_p_na"]


# -- experiments' statistics over one dilemma: n/a, not a traceback -----------------------------------------
def test_overton_and_pluralism_statistics_over_one_dilemma_are_na_not_a_traceback():
    from sim.experiments.overton.summary import coverage_metrics
    from sim.experiments.pluralism.summary import pluralism_metrics

    cov = pl.DataFrame({"dilemma_id": ["d1"] * 3, "condition": ["single", "contextual", "panel"],
                        "coverage": [0.5, 1.0, 0.0], "soft_coverage": [0.4, 0.8, 0.2]})
    _, differences = coverage_metrics(cov, ("single", "contextual", "panel"), seed=0, n_boot=200)
    diff = differences["coverage_panel_minus_single"].to_json()
    assert diff["value"] == -0.5 and diff["low"] is None and diff["na"] == "one value: no interval"
    assert diff["permutation_p"] is None and diff["permutation_p_na"].startswith("one pair")
    rows = [{"dilemma_id": "d1", "condition": c, "p[a]": 0.5, "p[b]": 0.5, "entropy": 1.0, "top": "a",
             "cluster": None} for c in ("single", "contextual", "panel")]
    _, p_differences, _ = pluralism_metrics(pl.DataFrame(rows), ["a", "b"], seed=0, n_boot=200)
    assert p_differences["panel_minus_single"].to_json()["na"] == "one value: no interval"


# -- refused before any work: runs that cannot mean anything, values that cannot be honoured ----------------
REFUSED = {
    "overton, one dilemma": (("experiment=overton",), "needs at least 2"),
    "pluralism, one dilemma": (("experiment=pluralism",), "needs at least 2"),
    "overton, more dilemmas than the file": (("experiment=overton", "study.overton.dilemmas=1000",
                                               "scenario.dilemmas=default"), "fewer than study.overton.dilemmas=1000"),
    "pluralism, more dilemmas than the file": (("experiment=pluralism", "study.pluralism.dilemmas=65",
                                                "scenario.dilemmas=default"), "(set it to at most 64)"),
    "norms, more dilemmas than the file": (("experiment=evolving_norms", "study.norms.dilemmas=2"), "at most 1"),
    "overton, more voices than a cluster has": (("experiment=overton", "study.overton.voices=100", "scenario.dilemmas=default"),
                                                "more than the 2 agent(s) of cluster"),
    "pluralism, one cluster": (("experiment=pluralism", "population.clusters=[confucian]", "scenario.dilemmas=default"),
                               "at least 2 population.clusters"),
    "ablation, reward models over one dilemma": (("experiment=constitution_ablation", "sim.steps=1"), "2 or more dilemmas"),
    "inverse, split by dilemma over one": (("experiment=inverse_constitution", "study.inverse.split_by=dilemma",
                                           "study.inverse.ccai_path="), "two or more dilemmas"),
    "inverse, a bank larger than the bank": (("experiment=inverse_constitution", "study.inverse.bank_size=500",
                                              "study.inverse.ccai_path=", "scenario.dilemmas=default"),
                                             "is more than the"),
    "gate, a slice larger than MoralChoice": (("calibration.stance_items=600", "calibration.judge_items=600"),
                                              "must be at most 687"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_run_that_cannot_mean_anything_is_refused_before_any_work(tmp_path, name):
    overrides, needle = REFUSED[name]
    cfg = compose(f"scenario.dilemmas={_one_dilemma(tmp_path)}", *overrides)
    with pytest.raises(InputError) as err:
        preflight(cfg)
    msg = str(err.value)
    assert "\n" not in msg and needle in msg, msg
    out = tmp_path / "run"
    with pytest.raises(InputError):  # the runner makes the same check first: nothing written, no model called
        runner_for(cfg)(cfg, out, ScriptedBackend(reply=lambda r: pytest.fail("model work before the refusal")))
    assert not out.exists()


BOUNDED = {
    "respondents without replacement": ("experiment=human_distributions", "study.human.persona=respondent",
                                        "study.human.agents_per_country=250", "more than France's 206 MFQ-30 respondents"),
    "respondents, the hang": ("experiment=human_distributions", "study.human.persona=respondent",
                              "study.human.agents_per_country=100000", "France's 206"),
    "permutations, the hang": ("experiment=human_distributions", "study.human.permutations=100000000",
                               "study.human.permutations must be in [100, 100,000]"),
    "bootstrap": ("eval.bootstrap=1000000", "eval.bootstrap at most 10,000"),
    "permutation test resamples": ("eval.permutations=10000000", "eval.permutations must be at most 100,000"),
    "answer tokens": ("experiment=overton", "study.overton.answer_tokens=100000", "[1, 4096]"),
    "synthesis tokens": ("experiment=pluralism", "study.pluralism.synthesis_tokens=5000", "[1, 4096]"),
    "generations": ("experiment=evolving_norms", "study.norms.generations=100000", "at most 1,000"),
    "a norm that never holds": ("experiment=evolving_norms", "study.norms.generations=2", "would never hold"),
    "a norm of an unknown cluster": ("experiment=evolving_norms", "study.norms.schedule=[{generation:0,name:x,cluster:nosuch}]",
                                     "unknown cluster(s) ['nosuch']"),
    "proposals": ("experiment=inverse_constitution", "study.inverse.proposals=5000", "at most 1,000"),
    "an arm twice": ("experiment=constitution_ablation", "study.ablation.constitutions=[none,harmlessness,harmlessness]",
                     "more than once"),
}


@pytest.mark.parametrize("name", list(BOUNDED))
def test_settings_that_scale_work_or_cannot_be_honoured_are_refused_at_config_time(name):
    *overrides, needle = BOUNDED[name]
    with pytest.raises(Exception) as err:
        compose(*overrides)
    assert needle in str(err.value), str(err.value)


def test_refusals_on_the_command_line_are_one_line_exit_2_and_leave_no_folder(tmp_path):
    one = _one_dilemma(tmp_path)
    for args in (("experiment=overton", f"scenario.dilemmas={one}"),
                 ("experiment=human_distributions", "study.human.persona=respondent", "study.human.agents_per_country=250")):
        out = tmp_path / "run"
        res = agora("llm=scripted", *args, f"hydra.run.dir={out}")
        err = res.stderr.strip()
        assert res.returncode == 2 and err.startswith("agora: error: ") and "\n" not in err, res.stderr[-2000:]
        assert not out.exists(), list(out.iterdir())


def test_respondents_are_drawn_without_replacement_up_to_the_country_count():
    from sim.experiments.human_distributions.run import panel

    cfg = compose("experiment=human_distributions", "study.human.persona=respondent", "study.human.agents_per_country=206",
                  "study.human.countries=[France,US,Japan]")
    france = [a["respondent"] for a in panel(cfg) if a["country"] == "France"]
    assert len(france) == len(set(france)) == 206


def test_the_shuffled_baseline_reports_progress_over_every_ordering():
    from alignment.agreement import shuffled_baseline

    rng = np.random.default_rng(0)
    done: list[int] = []
    shuffled_baseline(rng.normal(size=(7, 3)), rng.normal(size=(7, 3)), 2500, seed=0, on_done=done.append)
    assert sum(done) == 2500 and done[:2] == [1000, 1000]
    done.clear()
    shuffled_baseline(rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), 2500, seed=0, on_done=done.append)
    assert sum(done) == 24  # exact: all 4! orderings


# -- inverse constitutions: nothing learned from nothing ------------------------------------------------------
def test_a_principle_is_learned_only_above_the_no_principle_baseline():
    from alignment.inverse import explain_scopes, greedy_select

    label = np.array([0.9, 0.9, 0.1, 0.1])
    worse = np.array([[0.4, 0.4, 0.6, 0.6]])  # every candidate disagrees with every pair: 0 hits
    assert greedy_select(worse, label, max_k=3) == []  # an empty list's baseline is 0 hits: nothing beats it
    one = np.array([[0.6, 0.6, 0.6, 0.6]])  # 2 of 4
    assert greedy_select(one, label, max_k=3, baseline=2) == []  # not strictly above no principle's 2
    assert [s["hits"] for s in greedy_select(one, label, max_k=3, baseline=1)] == [2]
    # held_out=0.99: one training pair per scope, every candidate scoring 0 there
    scores = np.vstack([np.full(6, 0.2), np.full(6, 0.3), np.full(6, 0.5)])  # two candidates, then no principle
    held = np.array([False] + [True] * 5)
    out = explain_scopes(scores, np.full(6, 0.9), ["c"] * 6, held, {"candidate": [0, 1], "given": [1], "none": [2]}, 3,
                         seed=0, n_boot=50)
    assert out["c"]["steps"] == [] and "fewer than 4" in out["c"]["na"]
    assert out["c"]["methods"]["learned"]["held_out"]["value"] is None


def test_fewer_proposals_than_asked_are_recorded(tmp_path):
    cfg = compose("experiment=inverse_constitution", "study.inverse.proposals=1000", "study.inverse.ccai_path=",
                  "calibration.enabled=false", "population.size=4", "sim.steps=1")
    summary = runner_for(cfg)(cfg, tmp_path, ScriptedBackend())
    p = summary["proposals"]
    assert p["requested"] == 1000 and p["asked"] < 1000
    assert f"study.inverse.proposals=1000: only {p['asked']} training pairs" in (tmp_path / "report.md").read_text()


def test_a_panel_larger_than_the_population_is_recorded(tmp_path):
    cfg = compose("experiment=pluralism", "study.pluralism.dilemmas=2", "study.pluralism.panel_size=9",
                  "population.size=4", "calibration.enabled=false")
    assert runner_for(cfg)(cfg, tmp_path, ScriptedBackend())["panel_size"] == 4


# -- the label-quality gate with tiny slices -----------------------------------------------------------------
def test_the_gate_with_one_item_each_and_with_nothing_to_read():
    from sim.gate.calibration import calibrate, lines, reader_quality

    cfg = compose("calibration.stance_items=1", "calibration.judge_items=1")
    block = calibrate(cfg, ScriptedBackend())
    assert block["stance"]["items"] == 1 and block["judge"]["items"] == 2 and len(lines(block)) == 2
    empty = reader_quality([], [], "label")
    assert empty["accuracy"] == {"value": None, "low": None, "high": None, "na": "no observations"}
    assert lines({"stance": empty}) == ["stances (label reader): accuracy n/a (no observations) on 0 readings; "
                                        "position bias n/a; mean |p - 0.5| n/a"]


# -- a checkpoint's every file is checked on resume, needed or not --------------------------------------------
@pytest.mark.parametrize("damage", ["rows.jsonl truncated", "a stage file missing"])
def test_every_file_a_checkpoint_references_is_checked_on_resume(tmp_path, monkeypatch, damage):
    from sim.run.checkpoint import Checkpoint

    cfg = compose("experiment=constitution_ablation", "study.ablation.train_reward=false", "population.size=4",
                  "sim.steps=2", "calibration.enabled=false")
    out = tmp_path / "run"
    real = Checkpoint.stage

    def stage(self, name, *args, **kwargs):  # stop once the society is stored, before re-judging
        if name.startswith("judge/"):
            raise KeyboardInterrupt
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(Checkpoint, "stage", stage)
    with pytest.raises(KeyboardInterrupt):
        runner_for(cfg)(cfg, out, ScriptedBackend())
    monkeypatch.undo()
    rows = out / CHECKPOINT_DIR / "rows.jsonl"
    assert rows.stat().st_size > 100  # the society's rows: no longer needed (its stage is stored) but referenced
    if damage == "rows.jsonl truncated":
        rows.write_bytes(rows.read_bytes()[:100])
        victim, needle = rows, "truncated"
    else:
        victim = sorted((out / CHECKPOINT_DIR).glob("stage*.json"))[0]
        victim.unlink()
        needle = "damaged checkpoint"
    with pytest.raises(InputError) as err:
        runner_for(cfg)(dataclasses.replace(cfg, resume=str(out)), out, ScriptedBackend())
    msg = str(err.value)
    assert "\n" not in msg and str(victim) in msg and needle in msg and "cannot resume" in msg, msg


# -- where n/a figures land: eval lines, the key-figures table, generation rows ---------------------------------
def test_eval_over_one_scenario_says_why_its_p_and_intervals_are_na():
    from sim.experiments.evaluate import steerability
    from sim.report.eval import report_lines

    rows = pl.DataFrame({"item_id": ["s1", "s1"], "cluster": ["a", "b"], "p_action1": [0.7, 0.4]})
    base = pl.DataFrame({"item_id": ["s1"], "p_action1": [0.5]})
    st = steerability(rows, base, n_perm=999, n_boot=200, seed=0)
    assert st["a"]["p_value"] is None and st["a"]["p_value_na"].startswith("one pair")
    line = report_lines({"model": "m", "steerability": st, "wall_seconds": {}})[2]
    assert "a +0.200 (interval n/a: one value: no interval) p=n/a (one pair" in line, line


def test_the_key_figures_table_gives_an_na_figures_reason():
    from sim.report.render import headline_table

    md = headline_table({"x": {"value": None, "na": "no values"}, "y": {"value": 0.5, "low": 0.4, "high": 0.6}}).md()
    assert "n/a: no values" in md and "[0.400, 0.600]" in md


def test_summary_rows_hold_null_and_the_reason_never_nan():
    from alignment.metrics import summary_row

    row = summary_row({"generation": 0, "a": NA("no previous generation"), "b": NAN, "c": 0.5})
    assert row == {"generation": 0, "a": None, "b": None, "c": 0.5,
                   "na": {"a": "no previous generation", "b": "not computed"}}
    assert "NaN" not in json.dumps(row)


def test_a_norms_run_without_a_policy_says_why_policy_fit_is_na(tmp_path):
    cfg = compose("experiment=evolving_norms", "study.norms.generations=1", "study.norms.dilemmas=1", "population.size=4",
                  "study.norms.schedule=[{generation:0,name:n,principle:Be kind.}]", "calibration.enabled=false")
    s = runner_for(cfg)(cfg, tmp_path, ScriptedBackend())
    g = s["generations"][0]
    assert g["policy_fit"] is None and g["na"]["policy_fit"] == "no policy (study.norms.train_policy=false)"
    assert "NaN" not in (tmp_path / "summary.json").read_text()
    assert math.isnan(pl.read_parquet(tmp_path / "norms_generations.parquet")["policy_fit"][0])  # the table keeps NaN
