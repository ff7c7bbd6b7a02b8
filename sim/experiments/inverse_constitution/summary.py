"""The inverse-constitution experiment's typed summary, made from :func:`alignment.inverse.explain_scopes`'s result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignment.metrics import Interval, optional
from sim.results import Summary, pick


@dataclass(frozen=True, kw_only=True)
class Agreement(Interval):
    """A predictor's agreement with the labels of ``n`` pairs with a decided label, with its Wilson interval (all
    None but ``n`` and ``label_ties`` for a learned list that is n/a, with the reason).

    Attributes:
        hits: pairs where the prediction's side is the label's.
        label_ties: pairs whose label is exactly ½ (left out of ``n``).
        undecided: pairs the predictor gives exactly ½ (counted as misses).
    """

    hits: int | None = None
    label_ties: int | None = None
    undecided: int | None = None


@dataclass(frozen=True, kw_only=True)
class LearnedPrinciple:
    """One principle of a learned list, in the order the greedy selection added it.

    Attributes:
        id: the principle's id (``gen:<k>`` for a generated one, ``<constitution>:<id>`` or a CCAI id for the bank's).
        text: the principle.
        train_agreement: the list's training agreement once it is added.
    """

    id: str
    text: str
    train_agreement: float | None


@dataclass(frozen=True, kw_only=True)
class Scope:
    """What explains the preferences of one scope (the whole society, or one judge cluster).

    Attributes:
        pairs: ``train`` and ``held_out`` pairs of the scope.
        learned_na: why it learned no list (None: it did).
        learned_list: the learned list.
        candidate_train_agreement: ``min`` and ``max`` training agreement over the candidates (None: none).
        held_out: each predictor's agreement on the held-out pairs (``learned``, ``given_constitution``,
            ``no_principle``).
        learned_minus: the learned list's paired difference in held-out agreement from ``given_constitution`` and
            ``no_principle`` (bootstrap interval over pairs).
    """

    pairs: dict[str, int]
    learned_na: str | None
    learned_list: list[LearnedPrinciple]
    candidate_train_agreement: dict[str, float | None]
    held_out: dict[str, Agreement]
    learned_minus: dict[str, Interval]


@dataclass(frozen=True, kw_only=True)
class Proposals:
    """The model's proposals of principles.

    Attributes:
        asked: proposals asked for (training pairs with a decided label, at most ``requested``).
        parsed, duplicate, unparsed: replies naming a new principle, one already a candidate, none (a fallback).
        requested: ``study.inverse.proposals``.
    """

    asked: int
    parsed: int
    duplicate: int
    unparsed: int
    requested: int


@dataclass(frozen=True, kw_only=True)
class Principles:
    """The principles every pair was judged under.

    Attributes:
        scored: every principle scored (candidates and the two baselines').
        candidates: principles a list may be selected from.
        by_source: candidates per source (``generated``, ``constitution:<name>``, ``ccai``).
    """

    scored: int
    candidates: int
    by_source: dict[str, int]


@dataclass(frozen=True, kw_only=True)
class Pairs:
    """The preference pairs analysed.

    Attributes:
        all: every pair.
        held_out: pairs held out to evaluate the lists.
        label_ties: pairs whose label is exactly ½.
    """

    all: int
    held_out: int
    label_ties: int


@dataclass(frozen=True, kw_only=True)
class InverseSummary(Summary):
    """``summary.json`` of an inverse-constitution run (the run's own fields: :class:`~sim.results.Summary`).

    Attributes:
        scopes: per scope (``society``, then each judge cluster), what explains its preferences.
        preferences: where the preferences came from (``this run's society`` or the file read).
        given_constitution: the constitution the society was given, and how it was found.
        bank: the bank of real principles (:func:`scenarios.principle_bank.principle_bank`'s record).
        proposals: the model's proposals.
        principles: the principles scored.
        pairs: the pairs analysed.
        trl_export: the society's TRL export (None, and no key in ``summary.json``: the preferences were read).
        plots: the plot files written.
    """

    scopes: dict[str, Scope]
    preferences: str
    given_constitution: str
    bank: dict[str, Any]
    proposals: Proposals
    principles: Principles
    pairs: Pairs
    trl_export: dict[str, Any] | None = optional()
    plots: list[str]


def _spread(values: list[float | None]) -> dict[str, float | None]:
    v = [x for x in values if x is not None]
    return {"min": min(v) if v else None, "max": max(v) if v else None}


def scopes_of(result: dict[str, Any], principles: list[dict[str, Any]]) -> dict[str, Scope]:
    """Each scope's record from :func:`~alignment.inverse.explain_scopes`'s ``result`` over ``principles``."""
    return {scope: Scope(
        pairs=r["pairs"], learned_na=r["na"],
        learned_list=[LearnedPrinciple(id=principles[s["row"]]["id"], text=principles[s["row"]]["text"],
                                       train_agreement=s["train_agreement"]) for s in r["steps"]],
        candidate_train_agreement=_spread([a["value"] for a in r["candidates"].values()]),
        held_out={m: Agreement.from_json(v["held_out"]) for m, v in r["methods"].items()},
        learned_minus={m: Interval.from_json(v) for m, v in r["learned_minus"].items()})
        for scope, r in result.items()}


def headline_of(scopes: dict[str, Scope]) -> dict[str, Interval]:
    """``<method>[<scope>]``: each predictor's held-out agreement per scope."""
    return {f"{m}[{scope}]": pick(v) for scope, s in scopes.items() for m, v in s.held_out.items()}


def counts(principles: list[dict[str, Any]], proposals: list[dict[str, Any]], requested: int) -> tuple[Proposals, Principles]:
    """The proposals by status, and the principles scored by role and source."""
    status = {s: sum(p["status"] == s for p in proposals) for s in ("parsed", "duplicate", "unparsed")}
    by_source = [p["source"] for p in principles if p["candidate"]]
    return (Proposals(asked=len(proposals), **status, requested=requested),
            Principles(scored=len(principles), candidates=len(by_source),
                       by_source={s: by_source.count(s) for s in sorted(set(by_source))}))
