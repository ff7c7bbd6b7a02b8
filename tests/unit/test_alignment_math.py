"""Losses and metrics against hand-computed values."""

import math

import numpy as np
import polars as pl
import pytest
import torch

from alignment.losses import LOSSES, bradley_terry, dpo_soft
from alignment.metrics import (
    expected_calibration_error,
    js_distance,
    krippendorff_alpha,
    log_loss,
    normalised_entropy,
    pairwise_accuracy,
)
from alignment.preferences import balance_by_cluster, filter_confident, split_by_dilemma

SIG1 = math.log(1 + math.exp(-1))  # −logσ(1) = 0.313262
SIGM1 = math.log(1 + math.exp(1))  # −logσ(−1) = 1.313262


def t(*x):
    return torch.tensor(x, dtype=torch.float64)


def test_bradley_terry_worked_example():
    # r_a − r_b = 1: hard label → −logσ(1); soft 0.5 → mean of both directions
    assert bradley_terry(t(1.0), t(0.0), t(1.0)).item() == pytest.approx(SIG1)
    assert bradley_terry(t(1.0), t(0.0), t(0.5)).item() == pytest.approx(0.5 * (SIG1 + SIGM1))
    assert bradley_terry(t(1.0), t(0.0), t(0.0)).item() == pytest.approx(SIGM1)
    # per pair, not reduced: the trainers weight and average the rows themselves
    loss = LOSSES["bradley_terry"](t(1.0, 0.0, 2.0), t(0.0, 1.0, 2.0), t(1.0, 1.0, 0.5))
    assert loss.tolist() == pytest.approx([SIG1, SIGM1, math.log(2)])
    # swapping the two answers and the label gives the same loss
    assert bradley_terry(t(0.0), t(1.0), t(0.25)).item() == pytest.approx(bradley_terry(t(1.0), t(0.0), t(0.75)).item())


def test_bradley_terry_gradient_pulls_the_margin_toward_the_label():
    # d loss / d r_a = σ(r_a − r_b) − p: at a margin of 1 and p = 0.75, σ(1) − 0.75 = 0.731059 − 0.75 = −0.018941
    r_a = torch.ones(1, requires_grad=True, dtype=torch.float64)
    bradley_terry(r_a, t(0.0), t(0.75)).sum().backward()
    assert r_a.grad.item() == pytest.approx(1 / (1 + math.exp(-1)) - 0.75)


def test_dpo_soft_worked_example():
    # z = β((π_a − ref_a) − (π_b − ref_b)) = 0.5·((−10+11) − (−12+11)) = 1
    args = (t(-10.0), t(-12.0), t(-11.0), t(-11.0))
    assert LOSSES["dpo_soft"](*args, t(1.0), beta=0.5).item() == pytest.approx(SIG1)
    assert dpo_soft(*args, t(0.0), beta=0.5).item() == pytest.approx(SIGM1)
    assert dpo_soft(*args, t(0.75), beta=0.5).item() == pytest.approx(0.75 * SIG1 + 0.25 * SIGM1)
    # a tie (p = 0.5) is minimised where the policy equals the reference: gradient zero at z = 0
    z = torch.zeros(1, requires_grad=True, dtype=torch.float64)
    dpo_soft(z, t(0.0), t(0.0), t(0.0), t(0.5), beta=1.0).sum().backward()
    assert z.grad.item() == pytest.approx(0.0)


def test_metrics_worked_examples():
    assert pairwise_accuracy([0.7, 0.4, 0.6], [0.9, 0.2, 0.5]) == 1.0  # the tie is skipped
    assert pairwise_accuracy([0.3], [0.9]) == 0.0
    assert log_loss([0.5, 0.5], [1.0, 0.3]) == pytest.approx(math.log(2))
    assert expected_calibration_error([0.9, 0.8, 0.3], [1, 0, 0]) == pytest.approx((0.1 + 0.8 + 0.3) / 3)
    assert normalised_entropy([1, 1, 1, 1]) == pytest.approx(1.0)
    assert normalised_entropy([4, 0, 0, 0]) == 0.0
    assert normalised_entropy([1, 1, 0, 0]) == pytest.approx(0.5)
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert js_distance([0.3, 0.7], [0.3, 0.7]) == pytest.approx(0.0)
    perfect = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    assert krippendorff_alpha(perfect) == pytest.approx(1.0)
    assert krippendorff_alpha(np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]])) < 0


def _prefs(n_dilemmas=10, per=4):
    rows = []
    for d in range(n_dilemmas):
        for k in range(per):
            rows.append({"pref_id": f"{d}-{k}", "dilemma_id": f"d{d}", "p_a": [0.5, 0.55, 0.8, 0.1][k],
                         "cluster_a": ["x", "x", "x", "y"][k]})
    return pl.DataFrame(rows)


def test_split_never_leaks_a_dilemma_and_is_seeded():
    tr, ev = split_by_dilemma(_prefs(), 0.3, seed=1)
    assert set(tr["dilemma_id"]) & set(ev["dilemma_id"]) == set()
    assert len(tr) + len(ev) == 40 and ev["dilemma_id"].n_unique() == 3
    assert split_by_dilemma(_prefs(), 0.3, seed=1)[1].equals(ev)


def test_confidence_filter_and_cluster_balance():
    assert filter_confident(_prefs(), 0.2)["p_a"].to_list() == [0.8, 0.1] * 10
    bal = balance_by_cluster(_prefs(), seed=0)
    assert dict(bal.group_by("cluster_a").len().iter_rows()) == {"x": 10, "y": 10}
