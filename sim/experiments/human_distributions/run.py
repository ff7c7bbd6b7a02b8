"""``experiment=human_distributions``: distributional pluralism against people, not against the simulation.

Agents with each country's persona answer two instruments whose per-country human answers are public:

- **MFQ-30** (Graham et al. 2011; 11,969 respondents in 19 countries, Atari et al. 2020): 30 items,
  each read as a distribution over its six answers (``agents/scoring.py``), its expected value the
  item's answer, a foundation's score the mean of its six items (the MFQ key);
- **Moral Machine** (Awad et al. 2018): one-attribute trolley choices per attribute, read as
  P(sparing the attribute's positive level), so ``2P − 1`` is comparable with people's AMCE.

Per instrument, the society's country profiles are compared with people's (distance and between-country
correlation, :mod:`alignment.agreement`) with bootstrap intervals, beside two baselines: the same model
with no persona (every country gets one profile: correlation undefined) and the model's own profiles
given to shuffled countries.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from agents.culture import MFQ_AXES, load_mfq_by_country
from agents.llm.base import LLMBackend
from agents.persona import condition_all
from agents.scoring import scorer
from agents.survey import country_worldview, read_mfq_item, read_mm_choice
from agents.worldview import Worldview
from alignment.agreement import agreement, normal_draws, resample_means, shuffled_baseline
from alignment.metrics import proportion_interval
from scenarios import mfq30
from scenarios import moral_machine as mm
from sim.config import AgoraConfig
from sim.experiments.human_distributions.config import SECTIONS, HumanConfig
from sim.experiments.human_distributions.report import human_report, plot_human
from sim.experiments.human_distributions.summary import CatchPass, HumanSummary, InstrumentResult, headline_of
from sim.experiments.registry import experiment
from sim.run.lifecycle import Run
from sim.run.progress import bar as progress_bar
from sim.run.seeding import child_rng, child_seed

log = logging.getLogger(__name__)
INSTRUMENTS = {"mfq": MFQ_AXES, "moral_machine": tuple(mm.ATTRIBUTES)}
NO_PERSONA = -1  # agent id of the no-persona baseline
RESPONDENT_MFQ_CAVEAT = ("persona=respondent with the mfq instrument: each agent's prompt carries its respondent's own "
                         "MFQ-30 foundation ranking, then its MFQ answers are compared with the same people's country "
                         "means, so the comparison is partly handed the answer; use persona=country for an MFQ test")


def panel(cfg: AgoraConfig) -> list[dict[str, Any]]:
    """The agents: per country, one with the country persona, or ``agents_per_country`` different real
    respondents drawn (seeded, without replacement; the config refuses more than a country has) from its."""
    h = cfg.study.human
    people = load_mfq_by_country()
    out: list[dict[str, Any]] = []
    for country in h.countries:
        if h.persona == "country":
            picks: list[int | None] = [None]
        else:
            rows = people[country]
            k = h.agents_per_country
            picks = [int(i) for i in child_rng(cfg.seed, "human", "respondents", country).choice(
                len(rows), size=k, replace=False)]
        for r in picks:
            w = country_worldview(country, None if r is None else people[country][r])
            out.append({"agent_id": len(out), "country": country, "respondent": r, "worldview": w})
    # persona.* as everywhere else (agents.persona): the default leaves each country persona as written
    for a, w in zip(out, condition_all([a["worldview"] for a in out], cfg.persona), strict=True):
        a["worldview"] = w
    return out


async def _read_all(cfg: AgoraConfig, backend: LLMBackend, agents: list[dict[str, Any]], instrument: str,
                    on_done: Callable[[], None]) -> list[dict[str, Any]]:
    """Every agent's (and the no-persona baseline's) answer to every item of ``instrument``."""
    reader = cfg.study.human.reader
    score = scorer(backend)
    who: list[tuple[int, str | None, int | None, Worldview | None]] = [
        (a["agent_id"], a["country"], a["respondent"], a["worldview"]) for a in agents]
    who.append((NO_PERSONA, None, None, None))

    async def one(agent_id: int, country: str | None, respondent: int | None, w: Worldview | None, item) -> dict:
        base = {"condition": "persona" if w else "no_persona", "agent_id": agent_id, "country": country,
                "respondent": respondent, "instrument": instrument, "item_id": item.id}
        if instrument == "mfq":
            dist = await read_mfq_item(score, reader, item, w)
            row = base | {"dimension": item.foundation, **{f"p{k}": float(p) for k, p in enumerate(dist)},
                          "p_preferred": None, "value": float(np.dot(np.arange(len(dist)), dist))}
        else:
            p = await read_mm_choice(score, reader, item, w)
            row = base | {"dimension": item.attribute, **{f"p{k}": None for k in range(6)}, "p_preferred": p,
                          "value": 2 * p - 1}
        on_done()
        return row

    items = mfq30.ITEMS if instrument == "mfq" else mm.choices()
    return list(await asyncio.gather(*(one(*x, item) for x in who for item in items)))


def agent_profiles(answers: pl.DataFrame, instrument: str) -> dict[int, np.ndarray]:
    """Each agent's profile on the instrument's dimensions: MFQ foundation scores (mean of six items'
    expected answers), or Moral Machine ``2·P − 1`` averaged over an attribute's variants."""
    dims = INSTRUMENTS[instrument]
    out: dict[int, np.ndarray] = {}
    for (agent_id,), df in answers.filter(pl.col("instrument") == instrument).group_by("agent_id", maintain_order=True):
        if instrument == "mfq":
            scores = mfq30.foundation_scores(dict(zip(df["item_id"], df["value"], strict=True)))
            out[int(agent_id)] = np.array([scores[f] for f in dims])
        else:
            means = df.group_by("dimension").agg(pl.col("value").mean())
            lookup = dict(zip(means["dimension"], means["value"], strict=True))
            out[int(agent_id)] = np.array([lookup[d] for d in dims])
    return out


def human_reference(instrument: str, countries: list[str], n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """People's profile (``C × K``), its standard errors, and ``n_boot`` bootstrap replicates
    (MFQ: respondents resampled within country; Moral Machine: Normal(estimate, SE) draws)."""
    if instrument == "mfq":
        people = load_mfq_by_country()
        rows = [people[c] for c in countries]
        point = np.stack([r.mean(axis=0) for r in rows])
        se = np.stack([r.std(axis=0, ddof=1) / np.sqrt(len(r)) for r in rows])
        draws = np.stack([resample_means(r, n_boot, child_rng(seed, "human", "bootstrap", c)) for r, c in
                          zip(rows, countries, strict=True)], axis=1)
        return point, se, draws
    est = mm.load_estimates()
    point = np.array([[est[mm.ISO3[c]][a][0] for a in mm.ATTRIBUTES] for c in countries])
    se = np.array([[est[mm.ISO3[c]][a][1] for a in mm.ATTRIBUTES] for c in countries])
    return point, se, normal_draws(point, se, n_boot, child_rng(seed, "human", "bootstrap", "moral_machine"))


def compare(answers: pl.DataFrame, agents: list[dict[str, Any]], instrument: str, cfg: AgoraConfig
            ) -> tuple[InstrumentResult, list[dict[str, Any]]]:
    """The instrument's metrics (model, no persona, shuffled) and its per-country profile rows."""
    h, countries = cfg.study.human, cfg.study.human.countries
    dims = INSTRUMENTS[instrument]
    profiles = agent_profiles(answers, instrument)
    per_country = [np.stack([profiles[a["agent_id"]] for a in agents if a["country"] == c]) for c in countries]
    human, se, draws = human_reference(instrument, countries, cfg.eval.bootstrap, cfg.seed)
    model = np.stack([p.mean(axis=0) for p in per_country])
    base = profiles[NO_PERSONA]
    seed = child_seed(cfg.seed, "human", "metrics", instrument)
    orderings = min(h.permutations, math.factorial(len(countries)))
    with progress_bar(total=orderings, desc=f"human: {instrument} shuffled countries", unit="ordering",
                      disable=not cfg.sim.progress, leave=False) as bar:
        shuffled = shuffled_baseline(model, human, h.permutations, seed, on_done=bar.update)
    metrics = {"model": agreement(per_country, human, draws, seed),
               "no_persona": agreement([base[None, :]] * len(countries), human, draws, seed), "shuffled": shuffled}
    metrics["model"]["permutation_p"] = metrics["shuffled"]["permutation_p"]
    rows = [{"instrument": instrument, "country": c, "dimension": d, "model": float(model[i, k]),
             "model_no_persona": float(base[k]), "human": float(human[i, k]), "human_se": float(se[i, k]),
             "agents": len(per_country[i])}
            for i, c in enumerate(countries) for k, d in enumerate(dims)]
    return InstrumentResult.of(metrics), rows


def catch_check(answers: pl.DataFrame) -> CatchPass:
    """Share of agents (persona) passing both MFQ-30 catch items (validity check), and the no-persona verdict."""
    mfq = answers.filter(pl.col("instrument") == "mfq")
    verdicts = {int(a): mfq30.passes_catch(dict(zip(df["item_id"], df["value"], strict=True)))
                for (a,), df in mfq.group_by("agent_id", maintain_order=True)}
    agents = [v for a, v in verdicts.items() if a != NO_PERSONA]
    return CatchPass.of(proportion_interval(sum(agents), len(agents)), n=len(agents), no_persona=verdicts.get(NO_PERSONA))


def metric_rows(instrument: str, result: InstrumentResult, countries: list[str]) -> list[dict[str, Any]]:
    """``human_metrics.parquet``'s rows: one per instrument, condition, metric (and country)."""
    rows = []
    figure = lambda v: {"value": v.value, "low": v.low, "high": v.high}  # noqa: E731  (an n/a reason is in summary.json)
    for cond, m in result.conditions().items():
        for metric in ("distance", "correlation"):
            rows.append({"instrument": instrument, "condition": cond, "metric": metric, "country": None,
                         **figure(getattr(m, metric))})
        for c, v in zip(countries, getattr(m, "per_country_distance", []), strict=False):
            rows.append({"instrument": instrument, "condition": cond, "metric": "distance", "country": c, **figure(v)})
    return rows


@experiment("human_distributions", key="human", config=HumanConfig, summary=HumanSummary, report=human_report,
            sections=SECTIONS, published_id=True)
def run_human_distributions(run: Run) -> HumanSummary:
    cfg, h = run.cfg, run.cfg.study.human
    agents = panel(cfg)
    caveats = [RESPONDENT_MFQ_CAVEAT] if h.persona == "respondent" and "mfq" in h.instruments else []
    for c in caveats:
        log.warning("%s: %s", run.kind, c)
    rows: list[dict[str, Any]] = []
    for inst in h.instruments:
        n = (len(agents) + 1) * (len(mfq30.ITEMS) if inst == "mfq" else len(mm.choices()))
        rows += run.stage(f"answers:{inst}", _read_all(cfg, run.backend, agents, inst, run.progress.update), total=n,
                          unit="item", desc=inst)
    answers = pl.DataFrame(rows, infer_schema_length=None)
    results, profile_rows, table = {}, [], []
    for inst in h.instruments:
        results[inst], prof = compare(answers, agents, inst, cfg)
        profile_rows += prof
        table += metric_rows(inst, results[inst], h.countries)
    profiles, metrics = pl.DataFrame(profile_rows), pl.DataFrame(table, infer_schema_length=None)
    run.write_parquet("human_answers", answers)
    run.write_parquet("human_profiles", profiles)
    run.write_parquet("human_metrics", metrics)
    # as published: each instrument's answering seconds under the instrument's name
    seconds = {inst: round(run.ckpt.seconds(f"answers:{inst}"), 1) for inst in h.instruments}
    return HumanSummary(countries=h.countries, agents=len(agents), persona=h.persona, reader=h.reader, caveats=caveats,
                        results=results, citations={"mfq": mfq30.CITATION, "moral_machine": mm.CITATION},
                        mfq_catch_pass=catch_check(answers) if "mfq" in h.instruments else None,
                        headline=headline_of(results), seconds=seconds,
                        plots=plot_human(profiles, results, h.countries, run.out_dir))
