"""Evaluation metrics: pure functions over arrays (hand-checked in tests/unit/test_alignment_math.py, test_studies.py).

A statistic that cannot be computed from its input (no values, one value where a spread is needed, every
value equal where variation is needed, a NaN among the values) is never an exception and never a bare NaN:
it is :class:`NA`, a NaN that carries its reason. It behaves as NaN in arithmetic and in arrays. An estimate
with its interval is an :class:`Interval` record, whose ``reason`` is the first NA's reason (one concept: NA is
a scalar that cannot be computed, ``Interval.reason`` the same reason carried by the record); in
``summary.json`` it is ``None`` plus an ``"na"`` reason (:meth:`Interval.to_json`, :func:`figures`), and
``sim.report.blocks.fmt_interval`` prints ``n/a (reason)`` in reports and on the console.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np


class NA(float):
    """A statistic that cannot be computed: NaN carrying ``reason`` (a short phrase, e.g. "one value: no interval")."""

    reason: str

    def __new__(cls, reason: str) -> NA:
        obj = super().__new__(cls, "nan")
        obj.reason = reason
        return obj

    def __repr__(self) -> str:
        return f"NA({self.reason!r})"

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return NA, (self.reason,)


def why(*values: Any) -> str | None:
    """The reason of the first :class:`NA` among ``values`` (None when every one is computable)."""
    return next((v.reason for v in values if isinstance(v, NA)), None)


def _bad_values(x: np.ndarray, what: str = "values") -> str | None:
    """Why ``x`` cannot enter a statistic: empty, or a NaN or infinity among its values; None when fine."""
    if len(x) == 0:
        return f"no {what}"
    if not np.all(np.isfinite(x)):
        return f"a NaN or infinite value among the {what}"
    return None


def pairwise_accuracy(p_hat: Sequence[float], p_label: Sequence[float]) -> float:
    """Share of pairs where the predicted preference (p̂ > 0.5) matches the label (p > 0.5); label ties skipped."""
    p_hat, p_label = np.asarray(p_hat, float), np.asarray(p_label, float)
    bad = _bad_values(p_hat, "predictions") or _bad_values(p_label, "labels")
    if bad:
        return NA(bad)
    keep = p_label != 0.5
    if not keep.any():
        return NA("every label is a tie (p = 0.5)")
    return float(np.mean((p_hat[keep] > 0.5) == (p_label[keep] > 0.5)))


def log_loss(p_hat: Sequence[float], p_label: Sequence[float], eps: float = 1e-7) -> float:
    """Cross-entropy of predicted p̂ against soft labels p (nats per pair)."""
    q, p = np.asarray(p_hat, float), np.asarray(p_label, float)
    bad = _bad_values(q, "predictions") or _bad_values(p, "labels")
    if bad:
        return NA(bad)
    q = np.clip(q, eps, 1 - eps)
    return float(np.mean(-(p * np.log(q) + (1 - p) * np.log(1 - q))))


def expected_calibration_error(p_hat: Sequence[float], outcome: Sequence[float], bins: int = 10) -> float:
    """ECE over equal-width bins of confidence: Σ_b (n_b/N)·|mean(p̂_b) − mean(outcome_b)|.

    ``outcome`` is 1 where A was truly preferred (hard) or the soft label p.
    """
    p_hat, outcome = np.asarray(p_hat, float), np.asarray(outcome, float)
    bad = _bad_values(p_hat, "predictions") or _bad_values(outcome, "outcomes")
    if bad:
        return NA(bad)
    if np.any((p_hat < 0) | (p_hat > 1)):
        return NA("a prediction outside [0, 1]")
    idx = np.minimum((p_hat * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(p_hat[m].mean() - outcome[m].mean())
    return float(ece)


def normalised_entropy(counts: Sequence[float]) -> float:
    """Shannon entropy of a distribution divided by log(K) (WorldView-Bench's PDS entropy): 0 = one
    perspective only, 1 = all K perspectives equally represented. Undefined (n/a) for K < 2 (log 1 = 0)
    and for counts that sum to 0 (no distribution)."""
    c = np.asarray(counts, float)
    if len(c) < 2:
        return NA(f"{len(c)} perspective(s): entropy normalised by log K needs K >= 2")
    bad = _bad_values(c, "counts")
    if bad:
        return NA(bad)
    if np.any(c < 0):
        return NA("a negative count")
    if c.sum() <= 0:
        return NA("every count is 0: no distribution")
    p = c / c.sum()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(len(c)))


def js_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen–Shannon distance (base 2, in [0, 1]) between two distributions.

    Written out rather than ``scipy.spatial.distance.jensenshannon``, which returns NaN for equal
    distributions (the square root of a rounding-negative divergence).
    """
    from scipy.special import rel_entr

    p, q = np.asarray(p, float), np.asarray(q, float)
    bad = _bad_values(p, "probabilities") or _bad_values(q, "probabilities")
    if bad:
        return NA(bad)
    if np.any(p < 0) or np.any(q < 0) or p.sum() <= 0 or q.sum() <= 0:
        return NA("a distribution with a negative mass or no mass")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    js = (rel_entr(p, m).sum() + rel_entr(q, m).sum()) / (2 * np.log(2))
    return float(np.sqrt(max(js, 0.0)))


def krippendorff_alpha(ratings: np.ndarray, level: str = "interval") -> float:
    """Krippendorff's α for a coders × items matrix (NaN = missing), via the ``krippendorff`` package;
    n/a without two coders on one item, or when every rating is the same value (no variation to agree on)."""
    import krippendorff

    r = np.atleast_2d(np.asarray(ratings, float))
    if r.shape[0] < 2 or not np.any(np.isfinite(r).sum(axis=0) >= 2):
        return NA("no item rated by two or more coders")
    if np.any(np.isinf(r)):
        return NA("an infinite rating")
    if np.nanmax(r) == np.nanmin(r):
        return NA("every rating is the same value: no variation to agree on")
    return float(krippendorff.alpha(reliability_data=r, level_of_measurement=level))


def proportion_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """A share with its Wilson score interval (good at small n and near 0 or 1): (share, low, high)."""
    from scipy.stats import binomtest

    if n == 0:
        return NA("no observations"), NA("no observations"), NA("no observations")
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return successes / n, float(ci.low), float(ci.high)


def bootstrap_interval(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float, float]:
    """Mean with a percentile bootstrap interval (``scipy.stats.bootstrap``): (mean, low, high).

    Resample the unit that is independent (scenarios, not agents within one scenario). One value has a
    mean but no interval (n/a); equal values have the zero-width interval every resample gives.
    """
    from scipy.stats import bootstrap

    x = np.asarray(values, float)
    bad = _bad_values(x)
    if bad:
        return NA(bad), NA(bad), NA(bad)
    if len(x) == 1:
        return float(x[0]), NA("one value: no interval"), NA("one value: no interval")
    if np.all(x == x[0]):  # no spread: scipy's bootstrap would warn and give NaN
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
    bad = _bad_values(a, "items read in both orders") or _bad_values(b, "items read in both orders")
    if bad:
        return NA(bad)
    return float(np.mean((a > 0.5) == (b > 0.5)))


def binary_entropy(q: Sequence[float] | float) -> np.ndarray:
    """Entropy in bits of a two-way choice with share ``q`` for one side (1 = an even split, 0 = unanimity);
    NaN where ``q`` is NaN (never 0: a missing share is not unanimity)."""
    q = np.clip(np.asarray(q, float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
    return np.where((q == 0) | (q == 1), 0.0, h)


def paired_permutation_test(differences: Sequence[float], n_resamples: int = 9999, seed: int = 0) -> float:
    """Two-sided p-value that the mean paired difference is zero (sign-flip permutation test,
    ``scipy.stats.permutation_test`` with one sample; exact when 2^n ≤ ``n_resamples``); n/a for fewer
    than two pairs (one pair's two signs tie: p would be 1 whatever the difference)."""
    from scipy.stats import permutation_test

    d = np.asarray(differences, float)
    bad = _bad_values(d, "paired differences")
    if bad:
        return NA(bad)
    if len(d) < 2:
        return NA("one pair: a sign-flip test needs two or more")
    if np.all(d == 0):
        return 1.0
    res = permutation_test((d,), np.mean, permutation_type="samples", n_resamples=n_resamples,
                           rng=np.random.default_rng(seed))
    return float(res.pvalue)


def reliability_bins(p_hat: Sequence[float], outcome: Sequence[float], bins: int = 10) -> list[dict[str, float]]:
    """Per equal-width bin of p̂: count, mean p̂ and observed frequency (the reliability diagram's points);
    none where :func:`expected_calibration_error` is n/a (that figure carries the reason)."""
    p_hat, outcome = np.asarray(p_hat, float), np.asarray(outcome, float)
    if _bad_values(p_hat) or _bad_values(outcome) or np.any((p_hat < 0) | (p_hat > 1)):
        return []
    idx = np.minimum((p_hat * bins).astype(int), bins - 1)
    return [{"bin": b, "n": int((idx == b).sum()), "mean_p": float(p_hat[idx == b].mean()),
             "observed": float(outcome[idx == b].mean())} for b in range(bins) if (idx == b).any()]


def finite(x: float | None, digits: int = 6) -> float | None:
    """JSON-ready: NaN/None -> None, else rounded."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), digits)


def plain(x: float | None) -> float | None:
    """``x`` as computed (not rounded), None where it is NaN or n/a."""
    return None if x is None or x != x else x


def _reasons(named: dict[str, Any]) -> dict[str, str]:
    return {f"{k}_na": v.reason for k, v in named.items() if isinstance(v, NA)}


def figures(**named: Any) -> dict[str, Any]:
    """Named scalar figures for ``summary.json``: each as :func:`plain`, and ``<name>_na``: the reason of each n/a one."""
    return {k: plain(v) for k, v in named.items()} | _reasons(named)


def finite_figures(**named: Any) -> dict[str, Any]:
    """:func:`figures` rounded as :func:`finite` rounds."""
    return {k: finite(v) for k, v in named.items()} | _reasons(named)


def summary_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row of figures for ``summary.json``: NaN as null, and ``"na"``: ``{figure: reason}`` for the n/a ones
    (a table's parquet keeps the NaN; JSON has no NaN)."""
    reasons = {k: v.reason if isinstance(v, NA) else "not computed" for k, v in row.items()
               if isinstance(v, float) and math.isnan(v)}
    return {k: None if k in reasons else v for k, v in row.items()} | ({"na": reasons} if reasons else {})


OMIT_IF_NONE = "omit_if_none"  # a field's metadata key: its JSON key is written only when it holds a value


def optional() -> Any:
    """A record field defaulting to None whose key is left out of the record's JSON while it is None (a figure's
    n/a reason, a block only some runs have): published ``summary.json`` files have such keys only sometimes."""
    return field(default=None, metadata={OMIT_IF_NONE: True})


def omitted(f: Any, value: Any) -> bool:
    """Whether field ``f`` holding ``value`` is left out of its record's JSON (see :func:`optional`)."""
    return value is None and f.metadata.get(OMIT_IF_NONE, False)


@dataclass(frozen=True, kw_only=True)
class Interval:
    """An estimate with its interval: the one record every experiment's figures, headlines and reports use.

    Attributes:
        value: the estimate (None: not computable).
        low, high: the interval's bounds (None: no interval).
        n: the independent units it is over, when the figure records them.
        reason: why something is n/a (the :class:`NA` reason), None when every part is computable.
    """

    value: float | None
    low: float | None = None
    high: float | None = None
    n: int | None = None
    reason: str | None = None

    @classmethod
    def of(cls, estimate: tuple[float, float, float], *, n: int | None = None, digits: int | None = 6,
           **extra: Any) -> Any:
        """``(value, low, high)`` as computed (e.g. :func:`bootstrap_interval`): each NaN or :class:`NA` as None,
        the first NA's reason kept; rounded to ``digits`` (None: as computed). ``extra``: a subclass's own fields."""
        keep = (lambda x: finite(x, digits)) if digits is not None else plain
        m, lo, hi = estimate
        return cls(value=keep(m), low=keep(lo), high=keep(hi), n=n, reason=why(m, lo, hi), **extra)

    @classmethod
    def na(cls, reason: str, n: int | None = None) -> Interval:
        """A figure that cannot be computed, and why."""
        return cls(value=None, n=n, reason=reason)

    @property
    def bounded(self) -> bool:
        """Whether it has both bounds."""
        return self.low is not None and self.high is not None

    def to_json(self) -> dict[str, Any]:
        """``{"value", "low", "high"}``, ``"na"`` with the reason when any is not computable, ``"n"`` when recorded,
        and a subclass's own (scalar) fields by name."""
        extra = {f.name: v for f in fields(self) if f.name not in _INTERVAL and not omitted(f, v := getattr(self, f.name))}
        return ({"value": self.value, "low": self.low, "high": self.high} | ({"na": self.reason} if self.reason else {})
                | ({"n": self.n} if self.n is not None else {}) | extra)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | float | None) -> Interval:
        """The record of :meth:`to_json`'s form (keys it does not know are left); a bare number is a value with no
        interval."""
        if not isinstance(data, Mapping):
            return cls(value=data)
        extra = {f.name: data[f.name] for f in fields(cls) if f.name not in _INTERVAL and f.name in data}
        return cls(value=data.get("value"), low=data.get("low"), high=data.get("high"), n=data.get("n"),
                   reason=data.get("na"), **extra)


_INTERVAL = {"value", "low", "high", "n", "reason"}
