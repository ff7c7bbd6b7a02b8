import math

import polars as pl
import pytest

from alignment.metrics import js_distance
from sim.experiments.society.generations import generation_metrics, policy_group, training_figures


def _stances(p: dict[tuple[str, int], float]) -> pl.DataFrame:
    clusters = {0: "x", 1: "x", 2: "y", 3: "y"}
    return pl.DataFrame([{"dilemma_id": d, "agent_id": a, "cluster": clusters[a], "phase": "initial", "p_a": v,
                          "choice": "a" if v > 0.5 else "b"} for (d, a), v in p.items()])


def _prefs() -> pl.DataFrame:
    return pl.DataFrame({"p_a": [0.6, 0.4], "p_a_presented": [0.7, 0.3], "p_a_reversed": [0.5, 0.5],
                         "position_flip": [True, True]})


def test_generation_metrics_hand_computed():
    # policy group = agents 0 (cluster x) and 2 (cluster y)
    p = {("d1", 0): 0.8, ("d1", 1): 0.6, ("d1", 2): 0.4, ("d1", 3): 0.2,
         ("d2", 0): 0.9, ("d2", 1): 0.9, ("d2", 2): 0.1, ("d2", 3): 0.1}
    m, pol = generation_metrics(_stances(p), _prefs(), [0, 2], ["x", "x", "y", "y"], previous=None)
    assert pol == {"d1": pytest.approx(0.6), "d2": pytest.approx(0.5)}
    per = {r["dilemma_id"]: r["js_policy_population"] for r in m.pop("_per_dilemma")}
    assert per == {"d1": pytest.approx(js_distance([0.6, 0.4], [0.5, 0.5])), "d2": pytest.approx(0.0)}
    js1 = js_distance([0.6, 0.4], [0.5, 0.5])  # d1: policy 0.6 vs population mean 0.5
    js2 = js_distance([0.5, 0.5], [0.5, 0.5])
    assert m["js_policy_population"] == pytest.approx((js1 + js2) / 2)
    # cluster x means: d1 0.7, d2 0.9; cluster y: d1 0.3, d2 0.1
    ax = 1 - (js_distance([0.6, 0.4], [0.7, 0.3]) + js_distance([0.5, 0.5], [0.9, 0.1])) / 2
    assert m["agreement[x]"] == pytest.approx(ax)
    # sides: d1 policy a; x a (agree), y b. d2 policy b (0.5 is not > 0.5); x a, y b (agree) → counts x1 y1
    assert m["pds_entropy"] == pytest.approx(1.0)
    assert math.isnan(m["value_drift_js"])
    assert m["position_flip_rate"] == 1.0 and m["label_informativeness"] == pytest.approx(0.1)
    m2, _ = generation_metrics(_stances(p), _prefs(), [0, 2], ["x", "x", "y", "y"], previous={"d1": 0.6, "d2": 0.9})
    assert m2["value_drift_js"] == pytest.approx(js_distance([0.5, 0.5], [0.9, 0.1]) / 2)


def test_policy_group_is_stratified_and_seeded():
    clusters = ["a"] * 4 + ["b"] * 4
    g = policy_group(clusters, 0.5, seed=1)
    assert len([i for i in g if i < 4]) == 2 and len([i for i in g if i >= 4]) == 2
    assert g == policy_group(clusters, 0.5, seed=1)
    assert policy_group(clusters, 0.0, seed=1) == []


def test_training_figures_keep_wall_clock_rates_out_of_the_metrics_row():
    """metrics_generations.parquet must be the same bytes for two runs of one seed: pairs/s goes to summary.json."""
    rm = {"eval": {"accuracy": 0.75, "ece": 0.1, "log_loss": 0.5}, "pairs_per_s": 12.3}
    dpo = {"eval_margin_before": 0.0, "eval_margin_after": 0.2, "train_margin_after": 0.4, "pairs_per_s": 1.5}
    row, rates = training_figures(rm, dpo)
    assert row == {"rm_eval_accuracy": 0.75, "rm_eval_ece": 0.1, "rm_eval_log_loss": 0.5, "dpo_eval_margin_before": 0.0,
                   "dpo_eval_margin_after": 0.2, "dpo_train_margin_after": 0.4}
    assert rates == {"rm_pairs_per_s": 12.3, "dpo_pairs_per_s": 1.5}
    slower = training_figures({**rm, "pairs_per_s": 3.0}, {**dpo, "pairs_per_s": 0.1})
    assert slower[0] == row  # same training, different speed: same row
    last_row, last_rates = training_figures(rm, None)  # the last generation trains no policy
    assert not any(k.startswith("dpo_") for k in last_row) and last_rates == {"rm_pairs_per_s": 12.3}
    assert not any(k.endswith("_per_s") for k in row | last_row)
