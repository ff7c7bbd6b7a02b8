"""Agreement of per-country profiles with people's: pure functions over arrays (tested in
tests/unit/test_human_distributions.py).

A profile is a ``countries × dimensions`` array (MFQ foundations, Moral Machine attributes). Two
figures compare a model's profile with people's:

- **distance**: per country, the root mean square difference over the dimensions; its mean over countries;
- **between-country correlation**: both profiles centred on their own all-country mean per dimension,
  then Pearson over countries × dimensions. It asks whether the model tells countries apart the way
  people differ, whatever its overall level; it is undefined (None) when either side puts every country
  on the same profile.

Intervals are *basic* (reverse-percentile) bootstraps, ``[2θ̂ − q_hi, 2θ̂ − q_lo]`` (Davison & Hinkley 1997,
§5.2.1), clipped to the statistic's range (distance >= 0, correlation in [−1, 1]). Replicates resample
agents within each country (the model side) and respondents within each country (the human side;
:func:`resample_means`), or draw each human estimate from its sampling distribution where only estimates
and standard errors are public (:func:`normal_draws`). Basic, not percentile: resampling noise only ever
pushes a distance up (and a correlation towards 0), so a percentile range sits above the estimate and can
miss both it and the truth (a model that answers exactly as people do got distance 0 with a percentile
range [0.019, 0.042]); the basic interval reflects that shift back around the estimate. With one agent
per country the agent resample is a no-op: the interval then covers people's sampling only.

The shuffled-country baseline's permutation p is exact (every ordering, the identity included) when
``n! <= n_perm``, else (1 + k) / (1 + N) over N seeded random non-identity orderings (Phipson & Smyth 2010).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from alignment.metrics import NA, Interval, finite, why


def distances(model: np.ndarray, human: np.ndarray) -> np.ndarray:
    """Per-country RMS difference over the last axis (works on ``(..., C, K)`` stacks)."""
    return np.sqrt(np.mean((np.asarray(model, float) - np.asarray(human, float)) ** 2, axis=-1))


def between_country_correlation(model: np.ndarray, human: np.ndarray) -> float:
    """Pearson over countries × dimensions of the two profiles, each centred per dimension on its
    all-country mean; n/a when either centred profile is all zeros (no difference between countries)."""
    m = np.asarray(model, float) - np.mean(model, axis=0)
    h = np.asarray(human, float) - np.mean(human, axis=0)
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(h))):
        return NA("a NaN or infinite value in a profile")
    nm, nh = np.linalg.norm(m), np.linalg.norm(h)
    if nm < 1e-12 or nh < 1e-12:
        return NA(f"{'the model gives' if nm < 1e-12 else 'people give'} every country the same profile: "
                  "no between-country difference")
    return float(np.sum(m * h) / (nm * nh))


def resample_means(rows: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` bootstrap means of ``rows`` (``n × K``; resampled with replacement): ``(n_boot, K)``.
    Multinomial counts, so memory is ``n_boot × n`` integers, not ``n_boot × n × K`` values."""
    rows = np.asarray(rows, float)
    n = len(rows)
    counts = rng.multinomial(n, np.full(n, 1 / n), size=n_boot)
    return counts @ rows / n


def normal_draws(estimate: np.ndarray, se: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` draws of each estimate from Normal(estimate, se): ``(n_boot, *estimate.shape)``."""
    estimate, se = np.asarray(estimate, float), np.asarray(se, float)
    return estimate + se * rng.standard_normal((n_boot, *estimate.shape))


def _bounds(values: np.ndarray, confidence: float) -> tuple[float, float]:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return NA("no finite replicate"), NA("no finite replicate")
    a = (1 - confidence) / 2 * 100
    return float(np.percentile(v, a)), float(np.percentile(v, 100 - a))


def _figure(point: float, draws: np.ndarray, confidence: float) -> dict[str, float | None]:
    """A point with the percentile range of ``draws`` (a spread of values, not an interval for ``point``)."""
    lo, hi = _bounds(draws, confidence) if np.isfinite(point) else (point, point)
    return Interval.of((point, lo, hi)).to_json()


def basic_interval(point: float, draws: np.ndarray, confidence: float, lo_limit: float, hi_limit: float
                   ) -> dict[str, float | None]:
    """``point`` with its basic bootstrap interval ``[2·point − q_hi, 2·point − q_lo]``, clipped to
    ``[lo_limit, hi_limit]`` (see the module docstring for why basic, not percentile)."""
    q_lo, q_hi = _bounds(draws, confidence) if np.isfinite(point) else (point, point)
    if not (np.isfinite(q_lo) and np.isfinite(q_hi)):
        return Interval(value=finite(point), reason=why(point, q_lo)).to_json()
    lo, hi = (float(np.clip(2 * point - q, lo_limit, hi_limit)) for q in (q_hi, q_lo))
    return Interval.of((point, lo, hi)).to_json()


def agreement(model_agents: Sequence[np.ndarray], human: np.ndarray, human_draws: np.ndarray, seed: int,
              confidence: float = 0.95) -> dict[str, Any]:
    """Distance and between-country correlation of a model's country profiles with people's, with intervals.

    Args:
        model_agents: per country, its agents' profiles (``n_c × K``); the country's profile is their mean.
        human: people's profile (``C × K``).
        human_draws: bootstrap replicates of ``human`` (``B × C × K``); one agent resample is drawn per
            replicate (seeded by ``seed``).
        confidence: the intervals' coverage.

    Returns:
        ``distance`` (mean over countries), ``correlation``, ``per_country_distance`` (one per country),
        each ``{"value", "low", "high"}``.
    """
    rng = np.random.default_rng(seed)
    model = np.stack([np.mean(a, axis=0) for a in model_agents])
    n_boot = len(human_draws)
    boot = np.empty((n_boot, *model.shape))
    for c, a in enumerate(model_agents):
        a = np.asarray(a, float)
        idx = rng.integers(len(a), size=(n_boot, len(a)))
        boot[:, c] = a[idx].mean(axis=1)
    per_country = distances(model, human)
    boot_dist = distances(boot, human_draws)
    boot_corr = np.array([between_country_correlation(boot[b], human_draws[b]) for b in range(n_boot)])
    return {
        "distance": basic_interval(float(per_country.mean()), boot_dist.mean(axis=1), confidence, 0.0, np.inf),
        "correlation": basic_interval(between_country_correlation(model, human), boot_corr, confidence, -1.0, 1.0),
        "per_country_distance": [basic_interval(float(per_country[c]), boot_dist[:, c], confidence, 0.0, np.inf)
                                 for c in range(len(per_country))],
    }


def _orderings(n: int, n_perm: int, seed: int) -> tuple[bool, Iterator[np.ndarray]]:
    """Whether the orderings are exhaustive, and the orderings: all ``n!`` (the identity first) when
    ``n! <= n_perm``, else ``n_perm`` seeded random ones, the identity never drawn."""
    if math.factorial(n) <= n_perm:
        return True, (np.array(p) for p in itertools.permutations(range(n)))

    def draws() -> Iterator[np.ndarray]:
        rng, made = np.random.default_rng(seed), 0
        while made < n_perm:
            perm = rng.permutation(n)
            if not np.all(perm == np.arange(n)):
                made += 1
                yield perm
    return False, draws()


def shuffled_baseline(model: np.ndarray, human: np.ndarray, n_perm: int, seed: int,
                      confidence: float = 0.95, on_done: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The model's country profiles given to permuted countries: mean and percentile range of the
    distance and correlation over the non-identity orderings, and the one-sided permutation p of the
    model's own correlation (how often an ordering does as well). Exact over all ``n!`` orderings, the
    identity counted (p >= 1/n!), when ``n! <= n_perm``; else ``n_perm`` seeded non-identity orderings,
    p = (1 + k) / (1 + N) (Phipson & Smyth 2010; p >= 1/(N + 1)). ``on_done(k)``: k more orderings done (a progress bar)."""
    model, human = np.asarray(model, float), np.asarray(human, float)
    n = len(model)
    exact, orderings = _orderings(n, n_perm, seed)
    dist, corr, i = [], [], 0
    for i, perm in enumerate(orderings, start=1):
        if on_done is not None and i % 1000 == 0:
            on_done(1000)
        if np.all(perm == np.arange(n)):
            continue  # the identity: counted in the exact p below, never in the baseline
        dist.append(float(distances(model[perm], human).mean()))
        corr.append(between_country_correlation(model[perm], human))
    if on_done is not None:
        on_done(i % 1000)
    dist_a, corr_a = np.asarray(dist), np.asarray(corr)
    observed = between_country_correlation(model, human)
    ok = corr_a[np.isfinite(corr_a)]
    k = int(np.sum(ok >= observed - 1e-12))  # ties (e.g. two countries with one profile) count as doing as well
    p = ((1 + k) / (1 + len(ok)) if np.isfinite(observed) and len(ok) else
         NA(f"the model's correlation is n/a ({observed.reason})" if isinstance(observed, NA)
            else "no shuffled ordering has a correlation"))
    out = {
        "distance": _figure(float(dist_a.mean()) if len(dist_a) else NA("no shuffled ordering"), dist_a, confidence),
        "correlation": _figure(float(np.nanmean(corr_a)) if len(ok) else NA("no shuffled ordering has a correlation"),
                               corr_a, confidence),
        "permutation_p": finite(p),
        "permutations": len(dist_a),
        "exact": exact,
    }
    return out | ({"permutation_p_na": p.reason} if isinstance(p, NA) else {})
