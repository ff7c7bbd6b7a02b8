"""The typed summaries of a society run and of the generations loop (``summary.json``: the same keys as before)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sim.results import Summary


@dataclass(frozen=True, kw_only=True)
class SocietySummary(Summary):
    """``summary.json`` of a society run (the run's own fields: :class:`~sim.results.Summary`; ``headline`` holds
    plain numbers).

    Attributes:
        counts: agents, steps, stances, transcript messages, preferences, unparsed texts, abstentions.
        throughput: stances, preferences and debate messages per second, and each phase's seconds.
        judge: the judge's label figures (position flips, informativeness, ties, revision preference).
        stance_text_agreement: share of parsed first stances whose text names the scored choice (None: none parsed).
        steerability: how far the clusters' choices spread, overall and per cluster.
        network: the social graph's kind, edges and same-cluster edge share.
        environment: Python, machine, torch and device.
        resumed_after_step: the step a resume continued after (None: ran in one go).
        seed: the root seed.
        outputs: the files a society run writes.
        trl_export: the TRL preference files and their rows.
        cluster_sizes: agents per cultural cluster.
        reasons: how many first reasons still name the option their reading did not choose, with its interval and the
            ``sim.reason`` mode (None, and no key: a run made before it was counted).
        eval: the evaluation's block (None, and no key in ``summary.json``: ``eval.suites`` empty).
        graph: the society's social graph, for the report drawn in the same process (never in ``summary.json``;
            a report re-rendered from the folder reuses the PNG there).
    """

    counts: dict[str, int]
    throughput: dict[str, Any]
    judge: dict[str, Any]
    stance_text_agreement: float | None
    steerability: dict[str, Any]
    network: dict[str, Any]
    environment: dict[str, str]
    resumed_after_step: int | None = None
    seed: int
    outputs: list[str]
    trl_export: Any
    cluster_sizes: dict[str, int]
    reasons: dict[str, Any] | None = None
    eval: dict[str, Any] | None = None
    graph: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, figures: dict[str, Any], graph: Any = None) -> SocietySummary:
        """The record of the figures a society run computed (``summary.json``'s keys)."""
        return cls(**figures, graph=graph)

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        del out["graph"]
        for key in ("eval", "reasons", "seconds"):  # as published: no seconds block, the eval block only with eval.suites
            if not out[key]:
                del out[key]
        return out


@dataclass(frozen=True, kw_only=True)
class GenerationsSummary(Summary):
    """``summary.json`` of the generations loop (the run's own fields: :class:`~sim.results.Summary`).

    Attributes:
        headline: the last generation's figures, ``last_generation[<figure>]``: a number, or ``{"value": None,
            "na": why}``.
        generations: each generation's metrics row (NaN figures as ``{"value": None, "na": why}``).
        throughput: ``{"generations": [...]}``, each generation's training pairs per second.
        policy_group: the agents that speak with the tuned policy.
        plots: the plot files written.
        constitutions: the constitution each generation judged under (collective votes; empty without).
        trl_export: the TRL preference files and their rows.
        graph: the society's social graph, for the report drawn in the same process (never in ``summary.json``).
    """

    headline: dict[str, Any] = field(default_factory=dict)
    generations: list[dict[str, Any]]
    throughput: dict[str, Any]
    policy_group: list[int]
    plots: list[str]
    constitutions: list[dict[str, Any]]
    trl_export: Any
    graph: Any = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        del out["graph"], out["seconds"]  # as published: no seconds block
        return out
