"""Evaluation metrics: pure functions over arrays (hand-checked in tests/test_alignment_metrics.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import rel_entr


def pairwise_accuracy(p_hat: Sequence[float], p_label: Sequence[float]) -> float:
    """Share of pairs where the predicted preference (p̂ > 0.5) matches the label (p > 0.5); label ties skipped."""
    p_hat, p_label = np.asarray(p_hat, float), np.asarray(p_label, float)
    keep = p_label != 0.5
    if not keep.any():
        return float("nan")
    return float(np.mean((p_hat[keep] > 0.5) == (p_label[keep] > 0.5)))


def log_loss(p_hat: Sequence[float], p_label: Sequence[float], eps: float = 1e-7) -> float:
    """Cross-entropy of predicted p̂ against soft labels p (nats per pair)."""
    q = np.clip(np.asarray(p_hat, float), eps, 1 - eps)
    p = np.asarray(p_label, float)
    return float(np.mean(-(p * np.log(q) + (1 - p) * np.log(1 - q))))


def expected_calibration_error(p_hat: Sequence[float], outcome: Sequence[float], bins: int = 10) -> float:
    """ECE over equal-width bins of confidence: Σ_b (n_b/N)·|mean(p̂_b) − mean(outcome_b)|.

    ``outcome`` is 1 where A was truly preferred (hard) or the soft label p.
    """
    p_hat, outcome = np.asarray(p_hat, float), np.asarray(outcome, float)
    if len(p_hat) == 0:
        return float("nan")
    idx = np.minimum((p_hat * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(p_hat[m].mean() - outcome[m].mean())
    return float(ece)


def normalised_entropy(counts: Sequence[float]) -> float:
    """Shannon entropy of a distribution divided by log(K) (WorldView-Bench's PDS entropy): 0 = one
    perspective only, 1 = all K perspectives equally represented."""
    c = np.asarray(counts, float)
    if len(c) < 2 or c.sum() <= 0:
        return 0.0
    p = c / c.sum()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(len(c)))


def js_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen–Shannon distance (base 2, in [0, 1]) between two distributions.

    Written out rather than ``scipy.spatial.distance.jensenshannon``, which returns NaN for equal
    distributions (the square root of a rounding-negative divergence).
    """
    p, q = np.asarray(p, float), np.asarray(q, float)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    js = (rel_entr(p, m).sum() + rel_entr(q, m).sum()) / (2 * np.log(2))
    return float(np.sqrt(max(js, 0.0)))


def krippendorff_alpha(ratings: np.ndarray, level: str = "interval") -> float:
    """Krippendorff's α for a coders × items matrix (NaN = missing), via the ``krippendorff`` package."""
    import krippendorff

    r = np.asarray(ratings, float)
    if r.shape[0] < 2 or np.isfinite(r).sum() < 2 or np.nanvar(r) == 0:
        return float("nan")
    return float(krippendorff.alpha(reliability_data=r, level_of_measurement=level))
