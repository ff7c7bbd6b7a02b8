"""The Overton experiment's typed summary, and the statistics that fill it from the coverage tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from alignment.metrics import Interval, bootstrap_interval, finite, proportion_interval
from sim.experiments.shared.coverage import per_dilemma
from sim.results import PairedDifference, Summary


@dataclass(frozen=True, kw_only=True)
class ConditionCoverage:
    """One condition's coverage, over dilemmas (the independent unit).

    Attributes:
        coverage: mean share of positions covered, with its 95% bootstrap interval over dilemmas.
        soft_coverage: mean P(covers a position), likewise.
        answers: the condition's answers.
        dilemmas: dilemmas with a coverage.
    """

    coverage: Interval
    soft_coverage: Interval
    answers: int
    dilemmas: int


@dataclass(frozen=True, kw_only=True)
class Share(Interval):
    """A share of ``n`` readings covered, with its Wilson interval, and their mean P(yes).

    Attributes:
        mean_p: the readings' mean P(yes) (None: no readings).
    """

    mean_p: float | None = None


@dataclass(frozen=True, kw_only=True)
class Validity:
    """The judge's validity check (:func:`own_position_check`).

    Attributes:
        own_position: members' answers covering their own cluster's position.
        other_positions: members' answers covering another cluster's position.
        self_readings_excluded: readings of a position by the very voice it quotes, left out.
    """

    own_position: Share
    other_positions: Share
    self_readings_excluded: int


@dataclass(frozen=True, kw_only=True)
class Spread:
    """Positions per dilemma."""

    mean: float
    min: int
    max: int


@dataclass(frozen=True, kw_only=True)
class OvertonSummary(Summary):
    """``summary.json`` of an Overton run (the run's own fields: :class:`~sim.results.Summary`).

    Attributes:
        dilemmas: dilemmas answered.
        clusters: the population's clusters, in order of first appearance.
        panel_size: panel members used (``study.overton.panel_size``, at most ``population.size``).
        positions_per_dilemma: positions per dilemma.
        conditions: each condition's coverage (``single``, ``contextual``, ``panel``, and the panels' ``member``s).
        differences: ``coverage_<c>_minus_single`` and ``soft_coverage_<c>_minus_single``, paired per dilemma.
        validity: the judge's validity check.
        plots: the plot files written.
    """

    dilemmas: int
    clusters: list[str]
    panel_size: int
    positions_per_dilemma: Spread
    conditions: dict[str, ConditionCoverage]
    differences: dict[str, PairedDifference]
    validity: Validity
    plots: list[str]


def coverage_metrics(answers: pl.DataFrame, conditions: Sequence[str], seed: int, n_boot: int = 2000,
                     reference: str = "single", compared: Sequence[str] | None = None
                     ) -> tuple[dict[str, ConditionCoverage], dict[str, PairedDifference]]:
    """Per condition: mean coverage and soft coverage with bootstrap intervals over dilemmas (the
    independent unit); per ``compared`` condition (default: every other one), the paired per-dilemma
    difference from ``reference`` (interval + sign-flip permutation p), keyed ``coverage_<c>_minus_<reference>``
    and ``soft_coverage_...``. ``answers`` needs ``dilemma_id, condition, coverage, soft_coverage``."""
    per: dict[str, ConditionCoverage] = {}
    for c in conditions:
        hard, soft = per_dilemma(answers, c), per_dilemma(answers, c, "soft_coverage")
        per[c] = ConditionCoverage(
            coverage=Interval.of(bootstrap_interval(list(hard.values()), n_resamples=n_boot, seed=seed)),
            soft_coverage=Interval.of(bootstrap_interval(list(soft.values()), n_resamples=n_boot, seed=seed)),
            answers=int((answers["condition"] == c).sum()), dilemmas=len(hard))
    differences: dict[str, PairedDifference] = {}
    if reference not in conditions:
        return per, differences
    for c in (compared if compared is not None else [c for c in conditions if c != reference]):
        for column in ("coverage", "soft_coverage"):
            ref, mine = per_dilemma(answers, reference, column), per_dilemma(answers, c, column)
            differences[f"{column}_{c}_minus_{reference}"] = PairedDifference.of_differences(
                [mine[k] - ref[k] for k in sorted(mine) if k in ref], seed=seed, n_resamples=n_boot)
    return per, differences


def own_position_check(pairs: pl.DataFrame) -> Validity:
    """The judge's validity check: answers written by a cluster's agents (panel members) should cover their
    own cluster's position more often than the others'. Shares covered with Wilson intervals, and the mean P.
    A reading of a position by the very voice it quotes is left out (counted): the member would be judged
    against its own words, which says nothing about the judge."""
    excluded = int(pairs["by_representative"].sum()) if len(pairs) else 0
    pairs = pairs.filter(~pl.col("by_representative")) if len(pairs) else pairs
    shares = {}
    for name, own in (("own_position", True), ("other_positions", False)):
        df = pairs.filter(pl.col("own") == own)
        shares[name] = Share.of(proportion_interval(int(df["covered"].sum()), len(df)), n=len(df),
                                mean_p=finite(df["p_yes"].mean() if len(df) else None))
    return Validity(**shares, self_readings_excluded=excluded)
