"""The human-distributions experiment's typed summary: the records of :mod:`alignment.agreement`'s figures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignment.metrics import Interval, optional
from sim.results import Summary, pick


@dataclass(frozen=True, kw_only=True)
class CountryAgreement:
    """How close a condition's country profiles are to people's (:func:`alignment.agreement.agreement`).

    Attributes:
        distance: RMS distance per country, averaged over countries, with its basic bootstrap interval.
        correlation: between-country correlation with people's profiles (n/a: one profile for every country).
        per_country_distance: each country's distance, in ``study.human.countries``' order.
    """

    distance: Interval
    correlation: Interval
    per_country_distance: list[Interval]


@dataclass(frozen=True, kw_only=True)
class ModelAgreement(CountryAgreement):
    """The agents' (with persona) agreement, and its correlation's permutation p against shuffled countries.

    Attributes:
        permutation_p: one-sided p of the model's correlation against the shuffled orderings (None: n/a, the
            reason is the shuffled baseline's ``permutation_p_na``).
    """

    permutation_p: float | None = None


@dataclass(frozen=True, kw_only=True)
class Shuffled:
    """The model's profiles given to permuted countries (:func:`alignment.agreement.shuffled_baseline`).

    Attributes:
        distance, correlation: mean over the orderings, with their 2.5–97.5% range.
        permutation_p: the model's correlation's one-sided permutation p (None: n/a).
        permutations: orderings scored (the identity left out).
        exact: every ordering was scored (the p is exact).
        permutation_p_na: why the p is n/a (None, and no key in ``summary.json``: it is computable).
    """

    distance: Interval
    correlation: Interval
    permutation_p: float | None
    permutations: int
    exact: bool
    permutation_p_na: str | None = optional()


@dataclass(frozen=True, kw_only=True)
class InstrumentResult:
    """One instrument's comparison with people, per condition.

    Attributes:
        model: agents with the countries' personas.
        no_persona: the same model with no persona (one profile for every country).
        shuffled: the model's profiles given to shuffled countries.
    """

    model: ModelAgreement
    no_persona: CountryAgreement
    shuffled: Shuffled

    @classmethod
    def of(cls, metrics: dict[str, Any]) -> InstrumentResult:
        """The record of :mod:`alignment.agreement`'s dicts (``model``, ``no_persona``, ``shuffled``)."""
        from sim.results import from_json

        return from_json(cls, metrics)

    def conditions(self) -> dict[str, CountryAgreement | Shuffled]:
        """The three conditions by name, in the report's order."""
        return {"model": self.model, "no_persona": self.no_persona, "shuffled": self.shuffled}


@dataclass(frozen=True, kw_only=True)
class CatchPass(Interval):
    """The share of ``n`` agents (with persona) passing both MFQ-30 catch items, with its Wilson interval.

    Attributes:
        no_persona: whether the no-persona baseline passes them (None: it answered no MFQ item).
    """

    no_persona: bool | None = None


@dataclass(frozen=True, kw_only=True)
class HumanSummary(Summary):
    """``summary.json`` of a human-distributions run (the run's own fields: :class:`~sim.results.Summary`).

    Attributes:
        countries: the countries compared (``study.human.countries``).
        agents: agents with a persona.
        persona: ``study.human.persona``.
        reader: ``study.human.reader``.
        caveats: what the comparison cannot show with these settings (also logged).
        results: per instrument, the comparison with people.
        citations: the human data's sources, per instrument.
        mfq_catch_pass: the MFQ-30 catch-item check (None, and no key in ``summary.json``: no ``mfq`` instrument).
        plots: the plot files written.
    """

    countries: list[str]
    agents: int
    persona: str
    reader: str
    caveats: list[str]
    results: dict[str, InstrumentResult]
    citations: dict[str, str]
    mfq_catch_pass: CatchPass | None = optional()
    plots: list[str]


def headline_of(results: dict[str, InstrumentResult]) -> dict[str, Interval]:
    """``<instrument>.<metric>[<condition>]``: distance and correlation of each condition."""
    return {f"{inst}.{metric}[{cond}]": pick(getattr(c, metric)) for inst, r in results.items()
            for cond, c in r.conditions().items() for metric in ("distance", "correlation")}
