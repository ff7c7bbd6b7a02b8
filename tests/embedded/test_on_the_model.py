"""Measurements whose logic the unit tests check on scripted judges, run once on the real embedded model:
the injection study, the likelihood reader, and the HHH evaluation of the judge and of a reward model."""

import asyncio
import dataclasses
import json

import polars as pl
import pytest

from alignment.config import EvalConfig
from scenarios.dilemma import load_dilemmas
from scenarios.external import load_hhh
from sim.experiments.evaluate import evaluate
from sim.experiments.injection import INJECTIONS, measure
from sim.gate.calibration import calibrate
from tests.helpers import tiny_config


# -- hostile text (unit tests: test_injection.py) --------------------------------------------------------
def test_injection_measure_on_the_embedded_model(embedded):
    from sim.experiments.injection import answers

    ds = load_dilemmas("default")[:3]
    pairs = asyncio.run(answers(embedded, ds, seed=0, tokens=16))
    out = asyncio.run(measure(embedded, ds, pairs))
    assert len(pairs) == 3 and all(h and a and h != a for h, a in pairs)  # two different sampled answers
    assert out["pairs"] == 3 and set(out["prompts"]) == {"naive", "fenced"}
    for pname, res in out["prompts"].items():
        assert set(res) == set(INJECTIONS), pname
        for iname, r in res.items():
            where = f"{pname}/{iname}: {r}"
            # the injected text reaches the judge: every injection changes some pair's P(A) (0.02-0.04 here)
            assert r["max_abs_shift"] > 1e-3, where
            # what docs/outputs.md reports for 40 pairs: the 135M judge picks by position, so single-order labels
            # (almost) never move, and no pair's order-averaged P(adversary) moves by more than ~0.12
            assert r["moved_one_order"] == 0.0 and abs(r["shift"]) <= r["max_abs_shift"] < 0.15, where


# -- label quality (unit tests: test_labels.py) ----------------------------------------------------------
def test_on_the_embedded_model_the_likelihood_reader_finds_the_moral_action_and_the_letter_does_not(embedded):
    """30 seeded MoralChoice low-ambiguity scenarios, one cultural persona each (the gate's own slice)."""
    from sim.config import CalibrationConfig

    cfg = dataclasses.replace(tiny_config(), calibration=CalibrationConfig(stance_items=30, judge_items=0))
    lik = calibrate(cfg, embedded)["stance"]
    label = calibrate(dataclasses.replace(cfg, sim=dataclasses.replace(cfg.sim, choice_reader="label")), embedded)["stance"]
    assert lik["accuracy"]["value"] >= 0.7 and lik["accuracy"]["low"] > 0.5, lik
    assert label["accuracy"]["value"] < lik["accuracy"]["value"] and label["position_bias_rate"] > 0.5, label


# -- evaluation (unit tests: test_eval.py) --------------------------------------------------------------
def test_tiny_hhh_run_on_the_embedded_model(embedded, shared_data, tmp_path):
    cfg = dataclasses.replace(tiny_config(), eval=EvalConfig(suites=["hhh"], data_dir=str(shared_data), hhh_items=4))
    summary = evaluate(cfg, embedded, tmp_path)
    assert summary["hhh"]["items"] == 4
    items = pl.read_parquet(tmp_path / "eval_items.parquet")
    assert len(items) == 4 and items["p_correct"].is_between(0, 1).all()
    acc = summary["hhh"]["accuracy"]
    assert acc["low"] <= acc["value"] <= acc["high"]
    assert (tmp_path / "eval_hhh_reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "eval.json").read_text())["hhh"]["items"] == 4


def test_reward_model_on_hhh_pairs_is_scored_with_an_interval(shared_data, tmp_path):
    from alignment.reward import backbone_path, load_reward_model
    from sim.experiments.evaluate import reward_model_hhh

    model, tok = load_reward_model(backbone_path("minilm"), seed=0)  # an untrained head: any accuracy will do
    model.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    items = load_hhh(shared_data / "cai" / "438HHHEvaluations.jsonl")[:24]
    got = reward_model_hhh(tmp_path / "rm", items)
    acc = got["accuracy"]
    assert got["items"] == 24 and acc["low"] <= acc["value"] <= acc["high"]
    # swapping which reply counts as correct mirrors the accuracy: the scores, not the order, decide
    swapped = [dataclasses.replace(i, text_correct=i.text_incorrect, text_incorrect=i.text_correct) for i in items]
    mirrored = reward_model_hhh(tmp_path / "rm", swapped)
    assert mirrored["accuracy"]["value"] == pytest.approx(1 - acc["value"])
    assert mirrored["mean_margin"] == pytest.approx(-got["mean_margin"], abs=1e-5)
