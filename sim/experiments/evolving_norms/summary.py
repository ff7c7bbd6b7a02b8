"""The evolving-norms experiment's typed summary, and the statistics that fill it from the generations' rows.

Lag (generations) after a shift at generation s: the first k >= 1 at which the mean fit under the new norm has
risen from its value at s by at least half the between-agent standard deviation of fit at s, before the next
shift; ``None`` if it never does within the run. The threshold scales with the noise of the rater, so a flat,
noisy trajectory does not count as tracking.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alignment.metrics import finite
from sim.experiments.evolving_norms.config import NormConfig
from sim.results import Summary, fields_from_json, fields_json


@dataclass(frozen=True, kw_only=True)
class ScheduledNorm(NormConfig):
    """A norm of the run's schedule (``study.norms.schedule``) with the principle the rater checked.

    Attributes:
        text: the principle as the rater read it (the given text, or the cluster's values for a dominance norm).
    """

    text: str = ""


@dataclass(frozen=True, kw_only=True)
class Shift:
    """How the population (and the policy) followed one norm change inside the run.

    Attributes:
        from_: the norm before the shift (``from`` in ``summary.json``).
        to: the norm after it.
        generation: the generation it starts at.
        population_lag: generations until the population's mean fit rose by ``threshold`` (None: not within the run).
        policy_lag: the same for the policy (None: no policy, or not within the run).
        fit_at_shift: the population's mean fit under the new norm at the shift.
        fit_before_next_shift: its mean fit in the last generation before the next shift (or the run's end).
        fit_change_by_next_shift: the fit gained between the two.
        threshold: half the between-agent SD of fit at the shift.
    """

    from_: str
    to: str
    generation: int
    population_lag: int | None
    policy_lag: int | None
    fit_at_shift: float | None
    fit_before_next_shift: float | None
    fit_change_by_next_shift: float | None
    threshold: float | None

    def to_json(self) -> dict[str, Any]:
        out = fields_json(self)
        return {"from": out.pop("from_"), **out}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Shift:
        return fields_from_json(cls, {"from_": data["from"], **data})


@dataclass(frozen=True, kw_only=True)
class PluralismChange:
    """Last generation minus the first: the diversity the selection cost.

    Attributes:
        lineage_entropy: cluster entropy of the agents' lineages.
        mfq_dispersion: mean SD of the MFQ value axes over agents.
        choice_entropy: mean binary entropy of the choices per dilemma (None: n/a in one of the two generations).
        founders_alive: founders with a descendant alive.
    """

    lineage_entropy: float | None
    mfq_dispersion: float | None
    choice_entropy: float | None
    founders_alive: int


@dataclass(frozen=True, kw_only=True)
class NormsSummary(Summary):
    """``summary.json`` of an evolving-norms run (the run's own fields: :class:`~sim.results.Summary`).

    Attributes:
        schedule: the norms and the generations they start at.
        generations: each generation's row of ``norms_generations.parquet`` (NaN as null, ``na``: why).
        shifts: each norm change inside the run.
        pluralism_change: what the run's selection cost in diversity.
        plots: the plot files written.
    """

    schedule: list[ScheduledNorm]
    generations: list[dict[str, Any]]
    shifts: list[Shift]
    pluralism_change: PluralismChange
    plots: list[str]


def tracking_lag(fit: list[float], spread_at_shift: float, shift: int, until: int) -> int | None:
    """Generations after ``shift`` until ``fit`` (mean fit under the new norm, per generation) has risen by
    half ``spread_at_shift``; searched in (shift, until); None if never."""
    if shift >= len(fit) or not math.isfinite(spread_at_shift):
        return None
    target = fit[shift] + 0.5 * spread_at_shift
    for g in range(shift + 1, min(until, len(fit))):
        if fit[g] >= target:
            return g - shift
    return None


def shifts(schedule: list[NormConfig], generations: int, gens: list[dict[str, Any]]) -> list[Shift]:
    """Per norm change inside the run: lag of the population (and policy) and the fit gained."""
    out = []
    for k, n in enumerate(schedule[1:], start=1):
        s = n.generation
        if s >= generations:
            continue
        until = schedule[k + 1].generation if k + 1 < len(schedule) else generations
        fit = [r["mean_fit"] for r in gens]
        pol = [r["policy_fit"] for r in gens]
        last = min(until, generations) - 1
        out.append(Shift(from_=schedule[k - 1].name, to=n.name, generation=s,
                         population_lag=tracking_lag(fit, gens[s]["sd_fit"], s, until),
                         policy_lag=tracking_lag(pol, gens[s]["sd_fit"], s, until) if not math.isnan(pol[s]) else None,
                         fit_at_shift=finite(fit[s]), fit_before_next_shift=finite(fit[last]),
                         fit_change_by_next_shift=finite(fit[last] - fit[s]),
                         threshold=finite(0.5 * gens[s]["sd_fit"])))
    return out


def pluralism_change(gens: list[dict[str, Any]]) -> PluralismChange:
    """The last generation's diversity minus the first's."""
    first, last = gens[0], gens[-1]
    return PluralismChange(**{k: finite(last[k] - first[k]) for k in ("lineage_entropy", "mfq_dispersion", "choice_entropy")},
                           founders_alive=last["founders_alive"] - first["founders_alive"])


def headline(found: list[Shift], change: PluralismChange, train_policy: bool) -> dict[str, Any]:
    """Each shift's lags and fit gained, then the diversity lost (plain numbers, None where n/a)."""
    out: dict[str, Any] = {}
    for s in found:
        out[f"population_lag[{s.to}]"] = s.population_lag
        if train_policy:
            out[f"policy_lag[{s.to}]"] = s.policy_lag
        out[f"fit_change[{s.to}]"] = s.fit_change_by_next_shift
    return out | {f"change[{k}]": v for k, v in dataclasses.asdict(change).items()}
