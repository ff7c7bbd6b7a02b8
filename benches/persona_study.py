"""Which persona conditioning moves the embedded model the way people differ? Chosen on a tuning half,
reported on a held-out half (issue 31, phase 1).

    python -m benches.persona_study --quick                 # a few minutes: the whole pipeline on a sliver
    /work/bin/heavy python -m benches.persona_study         # the study (the 2-core machine lock)

Every figure goes to one JSON (``--out``, default ``benches/persona_study.json``); stages are cached beside it
(``<out>.stages/``) so an interrupted study resumes. Design:

- **Split** (seeded): the 17 cluster countries into a tuning half (8) and a held-out half (9); within each
  foundation the six MFQ-30 items into 3 tuning and 3 held-out; MoralChoice low-ambiguity items and judge
  items into halves. Moral Machine's nine attributes are too few to split: its tuning figure uses the tuning
  countries, its held-out figure the held-out ones.
- **Personas** (what shaped each): ``culture`` = today's ``experiment=human_distributions`` country persona
  (the country named; its *cluster's* Inglehart–Welzel and Hofstede lines); ``profile`` = first-person
  statements of the country's *own* Inglehart–Welzel (latest IVS wave) and Hofstede scores, country not named
  (read at run time from ``shared/data``). Neither carries MFQ-30 or Moral Machine data, so both instruments
  are fair tests. Steering weights: the same country scores, standardised (``agents/persona.py``). In the
  society figures agents are sampled as a run samples them (their profile persona then states their
  respondent's MFQ ranking: those figures are not MFQ comparisons).
- **Grids**, tuned on tuning countries × tuning items, under MoralChoice tuning accuracy >= 78%: prompt
  (variant); contrast (variant × α × centred); steer (variant × layer × β). Objective: tuning MFQ-30
  between-country r.
- **Held-out report** for each method's choice, no persona and shuffled countries: ``human_distributions``'s
  own metrics (``sim.experiments.human_distributions.run.compare``: distance and r with basic bootstrap intervals, permutation p)
  on held-out countries × all items, and the stricter held-out countries × held-out items; MoralChoice
  low-ambiguity accuracy and the judge under principle / inverse principle (``sim.gate.calibration.reader_quality``,
  Wilson intervals) on held-out items; the society's cluster spread on MoralChoice high-ambiguity and
  DailyDilemmas (the default dilemma set) with bootstrap intervals beside the no-persona spread that sampling
  alone makes; a society run's choice changes after debate and critique and its step time; coherent reasons.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.culture import HOFSTEDE_AXES, IW_AXES, load_clusters, load_country_values
from agents.llm.base import LLMBackend, ScoreRequest
from agents.persona import PersonaConfig, condition
from agents.prompts import names_other, parse_choice, reason_messages, stance_messages
from agents.scoring import memo_scorer, read_judgment, read_stance, scorer
from agents.survey import country_worldview, read_mfq_item, read_mm_choice
from agents.worldview import PopulationSpec, Worldview, cluster_label, render_persona, sample_population
from alignment.agreement import between_country_correlation, distances
from alignment.metrics import proportion_interval
from scenarios import mfq30
from scenarios import moral_machine as mm
from scenarios.constitution import load_constitution
from scenarios.dilemma import BUNDLED_DIR, Dilemma, load_dilemmas
from scenarios.external import load_moralchoice
from sim.experiments.human_distributions.config import CLUSTER_COUNTRIES
from sim.gate.calibration import INVERSE_PRINCIPLE, reader_quality
from sim.run.seeding import child_rng, child_seed

ROOT = Path(__file__).resolve().parents[1]
# shared/data beside the checkout (a worktree sits one level deeper); AGORA_SHARED_DATA names it elsewhere
SHARED = next((p for p in (Path(os.environ.get("AGORA_SHARED_DATA", "/nonexistent")), ROOT.parent / "shared" / "data",
                           ROOT.parents[1] / "shared" / "data") if (p / "hofstede").is_dir()), ROOT.parent / "shared" / "data")
NO_PERSONA = -1
MC_LOW = BUNDLED_DIR / "moralchoice_low_ambiguity.csv"
ACCURACY_FLOOR = 0.78


# -- scale ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Plan:
    countries: tuple[str, ...]
    n_tune: int
    items_per_foundation_tune: int
    mc_items: int  # per half
    judge_items: int  # per half
    alphas: tuple[float, ...]
    layers: tuple[int, ...]
    betas: tuple[float, ...]
    steer_variants: tuple[str, ...]
    society_agents: int
    mc_high: int
    daily: int
    reason_dilemmas: int
    society_steps: int
    bootstrap: int


FULL = Plan(countries=tuple(CLUSTER_COUNTRIES), n_tune=8, items_per_foundation_tune=3, mc_items=60, judge_items=30,
            alphas=(0.0, 0.5, 1.0, 2.0, 4.0), layers=(4, 10, 16, 22), betas=(0.1, 0.3, 1.0),
            steer_variants=("none", "profile", "culture"), society_agents=24, mc_high=24, daily=16, reason_dilemmas=4,
            society_steps=2, bootstrap=2000)
QUICK = Plan(countries=("Sweden", "US", "Japan", "Iran", "Russia", "Spain"), n_tune=3, items_per_foundation_tune=1,
             mc_items=6, judge_items=4, alphas=(0.0, 1.0), layers=(8,), betas=(0.5,), steer_variants=("none",),
             society_agents=12, mc_high=4, daily=3, reason_dilemmas=1, society_steps=1, bootstrap=200)


# -- the backend, with every distinct scoring done once --------------------------------------------------
class MemoBackend:
    """A backend whose scorings are memoised (``agents.scoring.memo_scorer``): a contrast's no-persona and
    reference readings, shared by every agent and every α, are scored once."""

    def __init__(self, backend: LLMBackend) -> None:
        self.backend, self.name = backend, backend.name
        self._score = memo_scorer(self._one)

    async def _one(self, r: ScoreRequest) -> list[float]:
        (s,) = await self.backend.score_choices([r])
        return s

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def score_choices(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        return list(await asyncio.gather(*(self._score(r) for r in requests)))

    async def generate(self, requests):
        return await self.backend.generate(requests)


# -- splits and personas ------------------------------------------------------------------------------
def split(plan: Plan, seed: int) -> dict[str, Any]:
    rng = child_rng(seed, "persona_study", "split")
    countries = list(plan.countries)
    order = rng.permutation(len(countries))
    tune = sorted(countries[i] for i in order[:plan.n_tune])
    held = sorted(countries[i] for i in order[plan.n_tune:])
    tune_items, held_items = [], []
    for f in mfq30.FOUNDATIONS:
        items = [it for it in mfq30.ITEMS if it.foundation == f]
        pick = set(child_rng(seed, "persona_study", "items", f).permutation(len(items))[:plan.items_per_foundation_tune])
        tune_items += [it for k, it in enumerate(items) if k in pick]
        held_items += [it for k, it in enumerate(items) if k not in pick]
    pool = load_moralchoice(MC_LOW)
    idx = child_rng(seed, "persona_study", "moralchoice").permutation(len(pool))[:2 * (plan.mc_items + plan.judge_items)]
    drawn = [pool[int(i)] for i in idx]
    m, j = plan.mc_items, plan.judge_items
    return {"tune": tune, "held": held, "tune_items": tune_items, "held_items": held_items,
            "mc_tune": drawn[:m], "mc_held": drawn[m:2 * m], "judge_tune": drawn[2 * m:2 * m + j],
            "judge_held": drawn[2 * m + j:2 * m + 2 * j]}


def country_agents(countries: Sequence[str]) -> dict[str, Worldview]:
    """Per country: today's country persona text (``culture``), with the country's own Inglehart–Welzel and
    Hofstede scores as its values (they render the ``profile`` text and weight its steering vector)."""
    own = load_country_values(SHARED)
    return {c: dataclasses.replace(country_worldview(c), values=own[c]) for c in countries}


def country_reference() -> list[Worldview]:
    """The centring panel in the country personas' own form: each cluster centre as "a person from <cluster>"."""
    out = []
    for name, c in load_clusters().items():
        values = {a: round(float(c.centre[a]), 3) for a in IW_AXES + HOFSTEDE_AXES}
        w = Worldview(cluster=name, values=values, source_country=cluster_label(name))
        text = f"You are a person from {cluster_label(name)} and answer as yourself. {render_persona(w)}"
        out.append(dataclasses.replace(w, persona=text))
    return out


def society_population(plan: Plan, seed: int) -> list[Worldview]:
    names = tuple(load_clusters())
    return sample_population(PopulationSpec(size=plan.society_agents, clusters=names), child_rng(seed, "population"))


def label(cfg: PersonaConfig | None) -> str:
    if cfg is None:
        return "no_persona"
    if cfg.method == "prompt":
        return f"prompt/{cfg.variant}"
    if cfg.method == "contrast":
        return f"contrast/{cfg.variant}/a={cfg.alpha:g}{'/centred' if cfg.centre else ''}"
    return f"steer/{cfg.variant}/L={cfg.layer}/b={cfg.beta:g}"


# -- readings -----------------------------------------------------------------------------------------
def human_rows(backend: LLMBackend, people: dict[str, Worldview | None], items: Sequence[mfq30.Item],
               with_mm: bool = True) -> list[dict[str, Any]]:
    """``human_distributions``' answer rows (``sim.experiments.human_distributions.run._read_all``'s columns) for the given
    agents (None: the no-persona agent, id -1) on ``items`` and every Moral Machine choice."""
    score = scorer(backend)

    async def one(agent_id: int, country: str | None, w: Worldview | None, instrument: str, item: Any) -> dict:
        base = {"condition": "persona" if w else "no_persona", "agent_id": agent_id, "country": country,
                "respondent": None, "instrument": instrument, "item_id": item.id}
        if instrument == "mfq":
            dist = await read_mfq_item(score, "likelihood", item, w)
            return base | {"dimension": item.foundation, **{f"p{k}": float(p) for k, p in enumerate(dist)},
                           "p_preferred": None, "value": float(np.dot(np.arange(len(dist)), dist))}
        p = await read_mm_choice(score, "likelihood", item, w)
        return base | {"dimension": item.attribute, **{f"p{k}": None for k in range(6)}, "p_preferred": p,
                       "value": 2 * p - 1}

    who = [(NO_PERSONA if w is None else k, None if w is None else c, w) for k, (c, w) in enumerate(people.items())]
    jobs = [(a, c, w, "mfq", it) for a, c, w in who for it in items]
    if with_mm:
        jobs += [(a, c, w, "moral_machine", ch) for a, c, w in who for ch in mm.choices()]

    async def main():
        return await asyncio.gather(*(one(*j) for j in jobs))
    return list(asyncio.run(main()))


def profiles(rows: list[dict[str, Any]], instrument: str, items: Sequence[mfq30.Item] = mfq30.ITEMS) -> dict[Any, np.ndarray]:
    """Per country (and ``None`` for no persona): MFQ foundation scores over ``items``, or Moral Machine 2P−1
    per attribute (mean over its variants)."""
    by: dict[Any, dict[str, list[float]]] = {}
    for r in rows:
        if r["instrument"] == instrument:
            by.setdefault(r["country"], {}).setdefault(r["item_id"] if instrument == "mfq" else r["dimension"],
                                                      []).append(r["value"])
    out = {}
    for c, vals in by.items():
        if instrument == "mfq":
            s = mfq30.foundation_scores({k: v[0] for k, v in vals.items()}, items)
            out[c] = np.array([s[f] for f in mfq30.FOUNDATIONS])
        else:
            out[c] = np.array([np.mean(vals[a]) for a in mm.ATTRIBUTES])
    return out


def people(instrument: str, countries: Sequence[str], seed: int) -> np.ndarray:
    from sim.experiments.human_distributions.run import human_reference

    return human_reference(instrument, list(countries), 100, seed)[0]


def point_figures(rows: list[dict[str, Any]], countries: Sequence[str], items: Sequence[mfq30.Item], seed: int
                  ) -> dict[str, Any]:
    """Tuning figures (points): per instrument, r and distance of the countries' profiles, and the no-persona distance."""
    out = {}
    for inst in ("mfq", "moral_machine"):
        prof = profiles(rows, inst, items)
        model = np.stack([prof[c] for c in countries])
        human = people(inst, countries, seed)
        r = between_country_correlation(model, human)
        out[inst] = {"r": None if math.isnan(r) else r, "distance": float(distances(model, human).mean()),
                     "no_persona_distance": float(distances(np.stack([prof[None]] * len(countries)), human).mean())
                     if None in prof else None,
                     "mean_answer": float(model.mean())}
    return out


def held_out_figures(rows: list[dict[str, Any]], countries: Sequence[str], held_items: Sequence[mfq30.Item],
                     plan: Plan, seed: int) -> dict[str, Any]:
    """``human_distributions``' metrics on held-out countries (``sim.experiments.human_distributions.run.compare``: all items,
    basic bootstrap intervals, permutation p against shuffled countries), and the same metrics on the
    held-out items only (``alignment.agreement`` over ``mfq30.foundation_scores(items=...)``)."""
    import polars as pl

    from alignment.agreement import agreement, shuffled_baseline
    from sim.config import AgoraConfig
    from sim.experiments.human_distributions.config import HumanConfig
    from sim.experiments.human_distributions.run import compare, human_reference
    from sim.experiments.registry import experiments
    from sim.results import to_json

    study = next(e.study for e in experiments().values() if e.key == "human")
    cfg = AgoraConfig(seed=seed, study=study(human=HumanConfig(countries=list(countries))))
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, bootstrap=plan.bootstrap))
    agent_id = {c: k for k, c in enumerate(countries)}
    rows = [r | {"agent_id": NO_PERSONA if r["country"] is None else agent_id[r["country"]]} for r in rows]
    answers = pl.DataFrame(rows, infer_schema_length=None)
    agents = [{"agent_id": agent_id[c], "country": c} for c in countries]
    out: dict[str, Any] = {}
    for inst in ("mfq", "moral_machine"):
        metrics = to_json(compare(answers, agents, inst, cfg)[0])
        out[inst] = {cond: {k: v for k, v in m.items() if k != "per_country_distance"} for cond, m in metrics.items()}
        out[inst]["mean_answer"] = float(np.mean([r["value"] for r in rows if r["instrument"] == inst and r["country"]]))
    prof = profiles(rows, "mfq", held_items)
    model = np.stack([prof[c] for c in countries])
    human, _, draws = human_reference("mfq", list(countries), plan.bootstrap, seed)
    s = child_seed(seed, "persona_study", "held_items")
    m = agreement([p[None, :] for p in model], human, draws, s)
    sh = shuffled_baseline(model, human, 1000, s)
    nop = agreement([prof[None][None, :]] * len(countries), human, draws, s)
    out["mfq_held_items"] = {"model": {"distance": m["distance"], "correlation": m["correlation"],
                                       "permutation_p": sh["permutation_p"]},
                             "no_persona": {"distance": nop["distance"]}, "shuffled": sh}
    return out


def accuracy(backend: LLMBackend, agents: Sequence[Worldview], items: Sequence[Dilemma]) -> dict[str, Any]:
    """MoralChoice low-ambiguity: P(the moral action1) read by agent ``k % N`` as the society reads a first stance."""
    score = scorer(backend)

    async def main():
        return await asyncio.gather(*(read_stance(score, "likelihood", d, agents[k % len(agents)])
                                      for k, d in enumerate(items)))
    got = asyncio.run(main())
    return reader_quality(list(got), [True] * len(got), "likelihood")


def judge_quality(backend: LLMBackend, agents: Sequence[Worldview], items: Sequence[Dilemma]) -> dict[str, Any]:
    """The label-quality gate's judge check: each item judged under a constitution principle (truth: action1)
    and under the inverse principle (truth: action2), by agent judges in turn."""
    score = scorer(backend)
    principles = [p.text for p in load_constitution("harmlessness").judge]
    asked = [(d, agents[k % len(agents)], principles[k % len(principles)], True) for k, d in enumerate(items)]
    asked += [(d, agents[k % len(agents)], INVERSE_PRINCIPLE, False) for k, d in enumerate(items)]

    async def main():
        return await asyncio.gather(*(read_judgment(score, "likelihood", d, w, text, d.action_a, d.action_b)
                                      for d, w, text, _ in asked))
    got = list(asyncio.run(main()))
    truth = [t for *_, t in asked]
    n = len(items)
    return {"both": reader_quality(got, truth, "likelihood")["accuracy"],
            "under_principle": reader_quality(got[:n], truth[:n], "likelihood")["accuracy"],
            "under_inverse_principle": reader_quality(got[n:], truth[n:], "likelihood")["accuracy"]}


def bootstrap_mean(values: np.ndarray, n_boot: int, seed: int) -> dict[str, float]:
    """Mean with a 95% percentile bootstrap interval over the items (dilemmas)."""
    v = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(len(v), size=(n_boot, len(v)))].mean(axis=1)
    return {"value": float(v.mean()), "low": float(np.percentile(means, 2.5)), "high": float(np.percentile(means, 97.5))}


def spread(backend: LLMBackend, agents: Sequence[Worldview], dilemmas: Sequence[Dilemma], plan: Plan, seed: int,
           tag: str) -> dict[str, Any]:
    """What the society does: per dilemma, every agent's P(A) (likelihood, first stance); the spread across
    clusters of the share choosing A, choices drawn as ``sim.choice_rule=sample`` draws them (one seeded draw
    per agent, as a run; and its expectation over 200 draws), and of the clusters' mean P(A)."""
    score = scorer(backend)

    async def main():
        return await asyncio.gather(*(read_stance(score, "likelihood", d, w) for d in dilemmas for w in agents))
    p = np.array([r.p_a for r in asyncio.run(main())]).reshape(len(dilemmas), len(agents))
    clusters = [w.cluster for w in agents]
    names = list(dict.fromkeys(clusters))
    member = np.array([[c == n for c in clusters] for n in names], float)  # clusters x agents
    share = lambda x: (x @ member.T) / member.sum(axis=1)  # noqa: E731  dilemmas x clusters
    rng = child_rng(seed, "persona_study", "choices", tag)
    one = rng.random(p.shape) < p
    many = rng.random((200, *p.shape)) < p
    s_one = np.ptp(share(one.astype(float)), axis=1)
    s_many = np.ptp(share(many.astype(float)), axis=2).mean(axis=0)
    s_p = np.ptp(share(p), axis=1)
    argmax = np.ptp(share((p > 0.5).astype(float)), axis=1)
    b = child_seed(seed, "persona_study", "spread", tag)
    return {"dilemmas": len(dilemmas), "agents": len(agents),
            "spread_sampled": bootstrap_mean(s_one, plan.bootstrap, b),
            "spread_sampled_expected": bootstrap_mean(s_many, plan.bootstrap, b),
            "spread_p_a": bootstrap_mean(s_p, plan.bootstrap, b),
            "spread_argmax": bootstrap_mean(argmax, plan.bootstrap, b),
            "clusters_disagree_argmax": bootstrap_mean((argmax > 0).astype(float), plan.bootstrap, b),
            "mean_p_a": float(p.mean())}


# -- coherent reasons ----------------------------------------------------------------------------------
def reasons(backend: LLMBackend, agents: Sequence[Worldview], dilemmas: Sequence[Dilemma], seed: int) -> dict[str, Any]:
    """Today's stance text (written beside the reading) against a reason written after the choice is read
    (``agents.prompts.reason_messages``): how often each names no option / the other option."""
    from agents.llm.base import GenerateRequest

    score = scorer(backend)

    async def main():
        readings = await asyncio.gather(*(read_stance(score, "likelihood", d, w) for d in dilemmas for w in agents))
        choices = ["a" if r.p_a > 0.5 else "b" for r in readings]
        pairs = [(d, w) for d in dilemmas for w in agents]
        today = [GenerateRequest(messages=stance_messages(d, w), max_new_tokens=48, seed=child_seed(seed, "r", k))
                 for k, (d, w) in enumerate(pairs)]
        after = [GenerateRequest(messages=reason_messages(d, w, c), max_new_tokens=48, seed=child_seed(seed, "r", k))
                 for k, ((d, w), c) in enumerate(zip(pairs, choices, strict=True))]
        a, b = await asyncio.gather(backend.generate(today), backend.generate(after))
        return pairs, choices, a, b
    pairs, choices, today, after = asyncio.run(main())
    n = len(pairs)
    t_letter = [parse_choice(t) for t in today]

    def iv(k: int) -> dict[str, float]:
        v, lo, hi = proportion_interval(k, n)
        return {"value": v, "low": lo, "high": hi, "count": k, "n": n}
    return {"today_names_no_option": iv(sum(x is None for x in t_letter)),
            "today_names_other_than_read": iv(sum(x is not None and x != c for x, c in zip(t_letter, choices, strict=True))),
            "today_text_names_other_than_read": iv(sum(names_other(t, d, c) for t, (d, _), c in
                                                       zip(today, pairs, choices, strict=True))),
            "after_names_other": iv(sum(names_other(t, d, c) for t, (d, _), c in zip(after, pairs, choices, strict=True))),
            "examples": [{"dilemma": d.id, "choice": c, "today": t, "after": u}
                         for (d, _), c, t, u in list(zip(pairs, choices, today, after, strict=True))[:4]]}


# -- a society run ---------------------------------------------------------------------------------------
def society_run(backend: LLMBackend, persona: PersonaConfig | None, plan: Plan, seed: int, dilemmas: Sequence[Dilemma]
                ) -> dict[str, Any]:
    """A default society (``agora``'s default config: 12 agents of 4 clusters, one dilemma a step, debate,
    critique, judging), its agents' worldviews conditioned by ``persona`` (None: no persona), over the
    MoralChoice high-ambiguity dilemmas in order: choice changes after debate and critique, and seconds per
    step. The persona reaches every prompt through its system message (debate's autogen agents take the
    persona text alone)."""
    from sim.config import AgoraConfig, ScenarioConfig, SimConfig
    from sim.society.model import Society

    cfg = AgoraConfig(seed=seed, scenario=ScenarioConfig(per_step=1, shuffle=False),
                      sim=SimConfig(steps=plan.society_steps, progress=False))
    model = Society(cfg, list(dilemmas), load_constitution("harmlessness"), backend, run_id="persona_study")
    for a in model.agents:
        a.worldview = condition(a.worldview, persona) if persona else dataclasses.replace(
            a.worldview, persona="You are a thoughtful person.")
    times = []
    for _ in range(plan.society_steps):
        t0 = time.perf_counter()
        model.step()
        times.append(time.perf_counter() - t0)
    by = {}
    for s in model.stances:
        by.setdefault((s.step, s.agent_id), {})[s.phase] = s.choice
    changed_debate = [v["initial"] != v["post_debate"] for v in by.values() if "post_debate" in v]
    changed_critique = [v["initial"] != v["revised"] for v in by.values() if "revised" in v]
    spreads = model.datacollector.get_model_vars_dataframe()["cluster_spread"].tolist()

    def iv(xs: list[bool]) -> dict[str, float]:
        v, lo, hi = proportion_interval(sum(xs), len(xs))
        return {"value": v, "low": lo, "high": hi, "n": len(xs)}
    return {"steps": plan.society_steps, "agents": len(model.agents), "seconds_per_step": times,
            "changed_after_debate": iv(changed_debate), "changed_after_critique": iv(changed_critique),
            "cluster_spread_per_step": spreads}


# -- the study -------------------------------------------------------------------------------------------
class Stages:
    """Each stage's result cached as JSON, so an interrupted study resumes where it stopped."""

    def __init__(self, folder: Path, cached_only: bool = False) -> None:
        self.folder, self.cached_only = folder, cached_only
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        path = self.folder / (re.sub(r"[^A-Za-z0-9_.=-]+", "_", name) + ".json")
        if path.is_file():
            return json.loads(path.read_text())
        if self.cached_only:
            return {"not_run": name}
        t0 = time.perf_counter()
        out = fn()
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        path.write_text(json.dumps(out))
        return out


def select(grid: dict[str, dict[str, Any]], candidates: Sequence[str]) -> str:
    """The tuning choice: highest tuning MFQ-30 r among configs whose tuning MoralChoice accuracy >= 78%
    (all configs if none reaches it); ties to the smaller tuning MFQ distance."""
    ok = [k for k in candidates if grid[k]["moralchoice_accuracy"] >= ACCURACY_FLOOR] or list(candidates)
    return max(ok, key=lambda k: (grid[k]["human"]["mfq"]["r"] or -2, -grid[k]["human"]["mfq"]["distance"]))


def run(plan: Plan, seed: int, out: Path, engine: LLMBackend | None = None, cached_only: bool = False) -> dict[str, Any]:
    """The study; ``engine`` defaults to the embedded model (a scripted one checks the pipeline's logic).
    ``cached_only``: the figures of the stages already run; a stage not run reads ``{"not_run": name}``."""
    stage = Stages(out.with_suffix(".stages"), cached_only)
    t_start = time.perf_counter()
    if engine is None:
        from agents.llm.embedded import EmbeddedBackend

        engine = EmbeddedBackend(max_batch_size=32)
    backend = MemoBackend(engine)
    sp = split(plan, seed)
    countries = country_agents(plan.countries)
    ref = country_reference()
    pop = society_population(plan, seed)

    def conditioned(cfg: PersonaConfig | None, names: Sequence[str]) -> dict[str | None, Worldview | None]:
        out_: dict[str | None, Worldview | None] = {c: condition(countries[c], cfg, ref) if cfg else None for c in names}
        return out_ if cfg else {None: None}

    def tune_one(cfg: PersonaConfig) -> dict[str, Any]:
        people_ = conditioned(cfg, sp["tune"]) | {None: None}
        rows = human_rows(backend, people_, sp["tune_items"])
        agents = [condition(w, cfg) for w in pop]
        return {"human": point_figures(rows, sp["tune"], sp["tune_items"], seed),
                "moralchoice_accuracy": accuracy(backend, agents, sp["mc_tune"])["accuracy"]["value"]}

    # 1. tuning grids
    grid: dict[str, dict[str, Any]] = {}
    configs: list[PersonaConfig] = []
    for variant in ("culture", "profile"):
        for alpha in plan.alphas:
            for centre in (False, True):
                configs.append(PersonaConfig(method="prompt" if alpha == 0 and not centre else "contrast",
                                             variant=variant, alpha=alpha, centre=centre))
    def tune(cfg: PersonaConfig) -> str:
        grid[label(cfg)] = stage(f"tune {label(cfg)}", lambda: tune_one(cfg)) | {"config": dataclasses.asdict(cfg)}
        return label(cfg)

    for cfg in configs:
        tune(cfg)
    # steer, searched in three rounds on tuning figures (each config is a fresh pass over the model):
    # the layer at the middle scale with the vector alone, then the scale at that layer, then the other variants there
    first, *others = plan.steer_variants
    mid = plan.betas[len(plan.betas) // 2]
    best = select(grid, [tune(PersonaConfig(method="steer", variant=first, layer=L, beta=mid)) for L in plan.layers])
    layer = grid[best]["config"]["layer"]
    best = select(grid, [best] + [tune(PersonaConfig(method="steer", variant=first, layer=layer, beta=b))
                                  for b in plan.betas if b != mid])
    beta = grid[best]["config"]["beta"]
    for variant in others:
        tune(PersonaConfig(method="steer", variant=variant, layer=layer, beta=beta))
    by_method = {m: [k for k in grid if k.startswith(m + "/")] for m in ("prompt", "contrast", "steer")}
    chosen = {m: select(grid, ks) for m, ks in by_method.items() if ks}
    chosen_cfg = {m: PersonaConfig(**grid[k]["config"]) for m, k in chosen.items()}
    prompt_variants = {f"prompt/{v}": PersonaConfig(variant=v) for v in ("culture", "profile")}
    report_cfgs: dict[str, PersonaConfig | None] = {"no_persona": None, **prompt_variants}
    report_cfgs |= {f"chosen {m}": c for m, c in chosen_cfg.items()}

    # 2. held-out people
    held: dict[str, Any] = {}
    for name, cfg in report_cfgs.items():
        if cfg is None:
            continue
        def one(cfg=cfg):
            rows = human_rows(backend, conditioned(cfg, sp["held"]) | {None: None}, mfq30.ITEMS)
            return held_out_figures(rows, sp["held"], sp["held_items"], plan, seed)
        held[name] = stage(f"held-out people {label(cfg)}", one)

    # 3. cost to accuracy, judge, society spread (held-out items)
    dil = load_dilemmas("default")
    mc_high = [d for d in dil if "MoralChoice" in (d.source or "")][:plan.mc_high]
    daily = [d for d in dil if "DailyDilemmas" in (d.source or "")][:plan.daily]
    plain_pop = [dataclasses.replace(w, persona="You are a thoughtful person.") for w in pop]
    society: dict[str, Any] = {}
    for name, cfg in report_cfgs.items():
        agents = [condition(w, cfg) for w in pop] if cfg else plain_pop
        society[name] = stage(f"society readings {label(cfg)}", lambda agents=agents, name=name: {
            "moralchoice_low_accuracy": accuracy(backend, agents, sp["mc_held"]),
            "judge": judge_quality(backend, agents, sp["judge_held"]),
            "spread_moralchoice_high": spread(backend, agents, mc_high, plan, seed, f"{name}/mc"),
            "spread_daily_dilemmas": spread(backend, agents, daily, plan, seed, f"{name}/dd")})

    # 4. coherent reasons (prompt personas), society runs (no persona, prompt, the winner)
    reason = stage("reasons", lambda: reasons(engine, [condition(w, PersonaConfig()) for w in pop],
                                              mc_high[:plan.reason_dilemmas], seed))
    runs: dict[str, Any] = {}
    winner = max((m for m in chosen_cfg), key=lambda m: held[f"chosen {m}"]["mfq"]["model"]["correlation"]["value"] or -2)
    for name in ("no_persona", "prompt/culture", f"chosen {winner}"):
        same = next((k for k in runs if label(report_cfgs[k]) == label(report_cfgs[name])), None)
        if same is not None:  # the winner is a conditioning already run: one run, named twice
            runs[name] = {"same_as": same}
            continue
        runs[name] = stage(f"society run {name}", lambda name=name: society_run(
            MemoBackend(engine), report_cfgs[name], plan, seed, mc_high))
    return {"plan": dataclasses.asdict(plan), "seed": seed,
            "split": {k: (v if k in ("tune", "held") else [getattr(x, "id", x) for x in v]) for k, v in sp.items()},
            "tuning_grid": grid, "chosen": chosen, "held_out_winner_by_mfq_r": winner, "held_out_people": held,
            "society_readings": society,
            "reasons": reason, "society_runs": runs, "cached_only": cached_only,
            "seconds": round(time.perf_counter() - t_start, 1),
            "backend": engine.name, "backend_stats": dataclasses.asdict(engine.stats)}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the whole pipeline on a sliver (minutes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--scripted", action="store_true", help="a scripted backend: the pipeline's logic, no model")
    ap.add_argument("--cached-only", action="store_true",
                    help="write the figures of the stages already run (<out>.stages/); those not run read not_run")
    a = ap.parse_args(argv)
    out = a.out or ROOT / "benches" / ("persona_study_quick.json" if a.quick else "persona_study.json")
    engine = None
    if a.scripted:
        from agents.llm.scripted import ScriptedBackend

        engine = ScriptedBackend(record=False)
    result = run(QUICK if a.quick else FULL, a.seed, out, engine, a.cached_only)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
