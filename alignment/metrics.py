"""Evaluation metrics: pure functions over arrays (hand-checked in tests/unit/test_alignment_math.py, test_studies.py)."""

from __future__ import annotations

import math
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


def proportion_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """A share with its Wilson score interval (good at small n and near 0 or 1): (share, low, high)."""
    from scipy.stats import binomtest

    if n == 0:
        return float("nan"), float("nan"), float("nan")
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return successes / n, float(ci.low), float(ci.high)


def bootstrap_interval(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float, float]:
    """Mean with a percentile bootstrap interval (``scipy.stats.bootstrap``): (mean, low, high).

    Resample the unit that is independent (scenarios, not agents within one scenario).
    """
    from scipy.stats import bootstrap

    x = np.asarray(values, float)
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    if len(x) == 1 or np.all(x == x[0]):  # no spread: scipy's bootstrap would warn and give NaN
        return float(x.mean()), float(x.mean()), float(x.mean())
    res = bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                    rng=np.random.default_rng(seed))
    return float(x.mean()), float(res.confidence_interval.low), float(res.confidence_interval.high)


def position_bias_rate(p_first_seen: Sequence[float], p_first_reversed: Sequence[float]) -> float:
    """Share of items where the judge picks the same position in both presentation orders.

    The reversed presentation swaps the two options, so a judge that follows content picks the
    other position there; one that picks the same position both times follows position.
    """
    a, b = np.asarray(p_first_seen, float), np.asarray(p_first_reversed, float)
    if len(a) == 0:
        return float("nan")
    return float(np.mean((a > 0.5) == (b > 0.5)))


def binary_entropy(q: Sequence[float] | float) -> np.ndarray:
    """Entropy in bits of a two-way choice with share ``q`` for one side (1 = an even split, 0 = unanimity)."""
    q = np.clip(np.asarray(q, float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
    return np.nan_to_num(h, nan=0.0)


def paired_permutation_test(differences: Sequence[float], n_resamples: int = 9999, seed: int = 0) -> float:
    """Two-sided p-value that the mean paired difference is zero (sign-flip permutation test,
    ``scipy.stats.permutation_test`` with one sample; exact when 2^n ≤ ``n_resamples``)."""
    from scipy.stats import permutation_test

    d = np.asarray(differences, float)
    if len(d) == 0:
        return float("nan")
    if np.all(d == 0):
        return 1.0
    res = permutation_test((d,), np.mean, permutation_type="samples", n_resamples=n_resamples,
                           rng=np.random.default_rng(seed))
    return float(res.pvalue)


def reliability_bins(p_hat: Sequence[float], outcome: Sequence[float], bins: int = 10) -> list[dict[str, float]]:
    """Per equal-width bin of p̂: count, mean p̂ and observed frequency (the reliability diagram's points)."""
    p_hat, outcome = np.asarray(p_hat, float), np.asarray(outcome, float)
    idx = np.minimum((p_hat * bins).astype(int), bins - 1)
    return [{"bin": b, "n": int((idx == b).sum()), "mean_p": float(p_hat[idx == b].mean()),
             "observed": float(outcome[idx == b].mean())} for b in range(bins) if (idx == b).any()]


def finite(x: float | None, digits: int = 6) -> float | None:
    """JSON-ready: NaN/None -> None, else rounded."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), digits)


def interval(mean_low_high: tuple[float, float, float]) -> dict[str, float | None]:
    m, lo, hi = mean_low_high
    return {"value": finite(m), "low": finite(lo), "high": finite(hi)}
