"""The pluralism experiment's typed summary, and the statistics that fill it from the classified answers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from alignment.metrics import Interval, bootstrap_interval, finite, normalised_entropy, optional, proportion_interval
from sim.results import PairedDifference, Summary

CONDITIONS = ("single", "contextual", "panel")


@dataclass(frozen=True, kw_only=True)
class ConditionEntropy:
    """One condition's perspective diversity, over dilemmas (the independent unit).

    Attributes:
        entropy: mean PDS entropy of its answers, with its 95% bootstrap interval over dilemmas.
        pooled_entropy: the entropy of its answers' mean distribution (None: no answers).
        mean_distribution: each cluster's mean share of the judged perspective (empty: no answers).
        top_perspective_counts: answers whose most likely perspective is each cluster.
        answers: the condition's answers.
    """

    entropy: Interval
    pooled_entropy: float | None
    mean_distribution: dict[str, float | None]
    top_perspective_counts: dict[str, int]
    answers: int


@dataclass(frozen=True, kw_only=True)
class MemberAccuracy(Interval):
    """The share of ``n`` panel members' answers the judge gave to the member's own cluster, with its Wilson interval.

    Attributes:
        chance: the share a judge guessing uniformly would reach (1 / clusters).
    """

    chance: float | None = None


@dataclass(frozen=True, kw_only=True)
class PluralismSummary(Summary):
    """``summary.json`` of a pluralism run (the run's own fields: :class:`~sim.results.Summary`).

    Attributes:
        dilemmas: dilemmas answered.
        clusters: the population's clusters, in order of first appearance.
        panel_size: panel members used (``study.pluralism.panel_size``, at most ``population.size``).
        conditions: each condition's perspective diversity (``single``, ``contextual``, ``panel``).
        differences: ``<c>_minus_single``: the paired per-dilemma entropy difference (no ``n`` recorded).
        classifier_member_accuracy: the judge's validity check (None, and no key in ``summary.json``: no members).
        plots: the plot files written.
    """

    dilemmas: int
    clusters: list[str]
    panel_size: int
    conditions: dict[str, ConditionEntropy]
    differences: dict[str, PairedDifference]
    classifier_member_accuracy: MemberAccuracy | None = optional()
    plots: list[str]


def pluralism_metrics(answers: pl.DataFrame, names: list[str], seed: int, n_boot: int = 2000
                      ) -> tuple[dict[str, ConditionEntropy], dict[str, PairedDifference], MemberAccuracy | None]:
    """Per condition: mean PDS entropy with a bootstrap interval over dilemmas, and the entropy of the pooled
    distribution; paired differences vs ``single`` (interval + sign-flip permutation p); and the classifier's
    accuracy at naming panel members' own clusters (None: no members)."""
    conditions: dict[str, ConditionEntropy] = {}
    per = {c: answers.filter(pl.col("condition") == c).sort("dilemma_id") for c in CONDITIONS}
    for c, df in per.items():
        dist = np.asarray(df.select([f"p[{n}]" for n in names]).to_numpy(), float)
        conditions[c] = ConditionEntropy(
            entropy=Interval.of(bootstrap_interval(df["entropy"].to_list(), n_resamples=n_boot, seed=seed)),
            pooled_entropy=finite(normalised_entropy(dist.mean(axis=0))) if len(dist) else None,
            mean_distribution={n: finite(v) for n, v in zip(names, dist.mean(axis=0), strict=True)} if len(dist) else {},
            top_perspective_counts={n: int((df["top"] == n).sum()) for n in names},
            answers=len(df))
    differences = {f"{c}_minus_single": PairedDifference.of_differences(
        (per[c]["entropy"] - per["single"]["entropy"]).to_list(), seed=seed, n_resamples=n_boot, with_n=False)
        for c in ("contextual", "panel")}
    members = answers.filter(pl.col("condition") == "member")
    accuracy = None
    if len(members):
        hits = int((members["top"] == members["cluster"]).sum())
        accuracy = MemberAccuracy.of(proportion_interval(hits, len(members)), n=len(members), chance=finite(1 / len(names)))
    return conditions, differences, accuracy
