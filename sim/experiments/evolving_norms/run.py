"""``experiment=evolving_norms``: a norm schedule, selection on fit, and how fast the society follows.

After EvolutionaryAgent (agents judged for fit with the current norm reproduce) and ProgressGym
(norms move; does the model track them?). Each generation every agent answers the same seeded
sample of dilemmas (so fit is comparable across generations); a rater scores each answer's fit
with the current norm (P(yes), both reply orders); the ``turnover`` least fit leave and as many
offspring of the fittest join (worldview copied with mutation, lineage kept). Optionally a policy
is DPO-tuned on each generation's fit-vs-unfit answers and judged the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from agents import prompts
from agents.culture import MFQ_AXES
from agents.llm.base import GenerateRequest, LLMBackend
from agents.scoring import p_yes
from agents.worldview import Worldview, cluster_centre, cluster_label, mutate
from alignment.metrics import NA, binary_entropy, normalised_entropy, summary_row
from scenarios.dilemma import Dilemma, load_dilemmas
from sim.config import AgoraConfig
from sim.experiments import study_dilemmas
from sim.experiments.evolving_norms.config import SECTIONS, NormConfig, NormsConfig
from sim.experiments.evolving_norms.labels import LABELS, TEMPLATES
from sim.experiments.evolving_norms.report import norms_report, plot_norms
from sim.experiments.evolving_norms.summary import NormsSummary, ScheduledNorm, headline, pluralism_change, shifts
from sim.experiments.registry import experiment
from sim.run.lifecycle import Progress, Run, embedded_options
from sim.run.seeding import child_rng, child_seed, sample_dilemmas

log = logging.getLogger(__name__)


def norm_at(schedule: list[NormConfig], generation: int) -> NormConfig:
    """The norm in force at ``generation``: the last entry starting at or before it."""
    return [n for n in schedule if n.generation <= generation][-1]


def norm_text(n: NormConfig) -> str:
    """The principle the rater checks: the given text, or a cluster's values for a dominance norm."""
    if n.principle:
        return n.principle
    return f"Answer as someone from {cluster_label(n.cluster)} culture would: {cluster_centre(n.cluster).persona}"


def select(fitness: np.ndarray, turnover: float, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Replacement plan ``[(leaving slot, parent slot), ...]``: the ``round(turnover·N)`` least fit leave,
    each replaced by an offspring of one of as many fittest (best parent replaces worst). Ties are
    broken by a seeded random key, so equal fitness never favours low indices."""
    n = len(fitness)
    k = int(math.floor(turnover * n + 0.5))
    if k == 0:
        return []
    order = np.lexsort((rng.random(n), -np.asarray(fitness, float)))  # fittest first
    parents, leaving = order[:k], order[::-1][:k]
    return [(int(lv), int(pa)) for lv, pa in zip(leaving, parents, strict=True)]


def lineage_entropy(clusters: list[str], names: list[str]) -> float:
    return normalised_entropy([clusters.count(c) for c in names])


async def _generation(cfg: AgoraConfig, g: int, people: list[Worldview], dilemmas: list[Dilemma], principle: str,
                      backend: LLMBackend, policy: LLMBackend | None, bar: Progress) -> tuple[list[dict], list[dict]]:
    nc, temp, top_p = cfg.study.norms, cfg.llm.temperature, cfg.llm.top_p
    question = f"Does this answer follow the principle \"{principle}\"?"

    async def answer_and_rate(who: int | None, w: Worldview | None, be: LLMBackend, j: int, d: Dilemma) -> dict:
        seed = child_seed(cfg.seed, "norms", g, j, "policy" if who is None else who)
        (text,) = await be.generate([GenerateRequest(messages=prompts.stance_messages(d, w), max_new_tokens=nc.answer_tokens,
                                                     temperature=temp, top_p=top_p, seed=seed)])
        fit = await p_yes(backend, lambda no_first: prompts.rating_messages(d, text, question, no_first=no_first))
        bar.update(1)
        return {"dilemma_id": d.id, "text": text, "fit": fit, "choice": prompts.parse_choice(text)}

    agent_jobs = [answer_and_rate(i, w, backend, j, d) for i, w in enumerate(people) for j, d in enumerate(dilemmas)]
    policy_jobs = [answer_and_rate(None, None, policy, j, d) for j, d in enumerate(dilemmas)] if policy else []
    done = await asyncio.gather(*agent_jobs, *policy_jobs)
    agent_rows = [{"slot": i, **r} for (i, _), r in zip([(i, j) for i in range(len(people)) for j in range(len(dilemmas))],
                                                         done[:len(agent_jobs)], strict=True)]
    return agent_rows, list(done[len(agent_jobs):])


def _answer_generation(cfg: AgoraConfig, g: int, people: list[Worldview], dilemmas: list[Dilemma], principle: str,
                       backend: LLMBackend, policy_dir: Path | None, bar: Progress) -> Any:
    """One generation's rated answers (a coroutine); the policy (base model until one is tuned) answers too with
    train_policy: loaded here, so a replayed generation loads no model."""
    policy: LLMBackend | None = None
    if cfg.study.norms.train_policy:
        from agents.llm.embedded import EmbeddedBackend

        policy = backend if policy_dir is None else EmbeddedBackend(policy_dir, **embedded_options(cfg.llm),
                                                                    name=f"policy-{policy_dir.parent.name}")
    return _generation(cfg, g, people, dilemmas, principle, backend, policy, bar)


def _policy_pairs(rows: list[dict], dilemmas: list[Dilemma], g: int) -> pl.DataFrame:
    """Per dilemma, the fittest answer vs the least fit, soft label from their fit gap (DPO input)."""
    out = []
    for d in dilemmas:
        sub = sorted((r for r in rows if r["dilemma_id"] == d.id), key=lambda r: -r["fit"])
        if len(sub) >= 2 and sub[0]["fit"] > sub[-1]["fit"]:
            out.append({"dilemma_id": d.id, "prompt": prompts.dilemma_text(d), "response_a": sub[0]["text"],
                        "response_b": sub[-1]["text"], "p_a": 0.5 + 0.5 * (sub[0]["fit"] - sub[-1]["fit"]),
                        "generation": g})
    return pl.DataFrame(out, schema={"dilemma_id": pl.String, "prompt": pl.String, "response_a": pl.String,
                                     "response_b": pl.String, "p_a": pl.Float64, "generation": pl.Int64})


def check(cfg: AgoraConfig) -> None:
    """Refuse before any work fewer dilemmas in the file than ``study.norms.dilemmas`` (a sample would be cut)."""
    study_dilemmas(cfg, cfg.study.norms.dilemmas, "study.norms.dilemmas")


def _trains(cfg: AgoraConfig) -> tuple[bool, bool]:
    return False, cfg.study.norms.train_policy


@experiment("evolving_norms", key="norms", config=NormsConfig, summary=NormsSummary, report=norms_report, check=check,
            trains=_trains, sections=SECTIONS, labels=LABELS, templates=TEMPLATES, published_id=True)
def run_evolving_norms(run: Run) -> NormsSummary:
    from sim.society.model import population  # here: Mesa is slow to load (the CLI imports this)

    cfg, nc = run.cfg, run.cfg.study.norms
    pool = load_dilemmas(cfg.scenario.dilemmas)
    people = population(cfg)
    lineage = list(range(len(people)))  # founder each slot descends from
    names = list(dict.fromkeys(cfg.population.clusters))
    policy_dir: Path | None = None  # the tuned policy, once there is one; before that the base model answers as policy
    gens: list[dict[str, Any]] = []
    agent_rows: list[dict[str, Any]] = []
    policy_rows: list[dict[str, Any]] = []
    per_call = nc.dilemmas * (len(people) + (1 if nc.train_policy else 0))
    # the same dilemmas every generation: changes in fit are the population's, not the questions'
    dilemmas = sample_dilemmas(pool, nc.dilemmas, cfg.seed, "norms")
    for g in range(nc.generations):
        norm = norm_at(nc.schedule, g)
        rows, prow = run.stage(f"generation_{g}/answers", partial(_answer_generation, cfg, g, people, dilemmas,
                                                                  norm_text(norm), run.backend, policy_dir, run.progress),
                               total=per_call, unit="answer", desc=f"generation {g}")
        fit = np.zeros(len(people))
        for r in rows:
            fit[r["slot"]] += r["fit"] / len(dilemmas)
        for r in rows:
            w = people[r["slot"]]
            agent_rows.append({"generation": g, "norm": norm.name, **r, "lineage": lineage[r["slot"]], "cluster": w.cluster,
                               **{a: w.values.get(a) for a in MFQ_AXES}})
        policy_fit = float(np.mean([r["fit"] for r in prow])) if prow else NA("no policy (study.norms.train_policy=false)")
        policy_rows += [{"generation": g, "norm": norm.name, **r} for r in prow]
        row = _population_row(g, norm.name, fit, rows, policy_fit, people, lineage, names, dilemmas)
        # reproduction: the least fit leave, offspring of the fittest take their places
        rng = child_rng(cfg.seed, "norms", "select", g)
        plan = select(fit, nc.turnover, rng)
        row["replaced"] = len(plan)
        if nc.train_policy and g < nc.generations - 1:
            policy_dir = _tune_policy(run, rows, dilemmas, g, policy_dir, row)
        people, lineage = _reproduce(people, lineage, plan, rng, nc.mutation)
        gens.append(row)
        log.info("generation %d (%s): mean fit %.3f", g, norm.name, row["mean_fit"])
    table = pl.DataFrame(gens, infer_schema_length=None)
    found = shifts(nc.schedule, nc.generations, gens)
    change = pluralism_change(gens)
    run.write_parquet("norms_generations", table)
    run.write_parquet("norms_answers", pl.DataFrame(agent_rows, infer_schema_length=None))
    if policy_rows:
        run.write_parquet("norms_policy_answers", pl.DataFrame(policy_rows, infer_schema_length=None))
    return NormsSummary(schedule=[ScheduledNorm(**dataclasses.asdict(n), text=norm_text(n)) for n in nc.schedule],
                        generations=[summary_row(g) for g in gens], shifts=found, pluralism_change=change,
                        headline=headline(found, change, nc.train_policy), plots=plot_norms(table, nc.schedule, run.out_dir))


def _population_row(g: int, norm: str, fit: np.ndarray, rows: list[dict[str, Any]], policy_fit: float,
                    people: list[Worldview], lineage: list[int], names: list[str], dilemmas: list[Dilemma]) -> dict[str, Any]:
    """Generation ``g``'s row of ``norms_generations.parquet``: fit, diversity and composition."""
    choices = [r["choice"] for r in rows]
    shares = []
    for d in dilemmas:
        cs = [r["choice"] for r in rows if r["dilemma_id"] == d.id and r["choice"]]
        if cs:
            shares.append(sum(c == "a" for c in cs) / len(cs))
    return {
        "generation": g, "norm": norm, "mean_fit": float(fit.mean()), "sd_fit": float(fit.std(ddof=1)),
        "policy_fit": policy_fit, "lineage_entropy": lineage_entropy([w.cluster for w in people], names),
        "founders_alive": len(set(lineage)),
        "choice_entropy": float(np.mean(binary_entropy(shares))) if shares else NA("no answer named a choice"),
        "unparsed_share": sum(c is None for c in choices) / len(choices),
        "mfq_dispersion": float(np.mean([np.std([w.values[a] for w in people]) for a in MFQ_AXES])),
        **{f"share[{c}]": sum(w.cluster == c for w in people) / len(people) for c in names},
        **{f"mean[{a}]": float(np.mean([w.values[a] for w in people])) for a in MFQ_AXES},
    }


def _tune_policy(run: Run, rows: list[dict[str, Any]], dilemmas: list[Dilemma], g: int, policy_dir: Path | None,
                 row: dict[str, Any]) -> Path | None:
    """DPO on generation ``g``'s fitness judgments (a checkpointed stage); the policy folder the next
    generation answers with (unchanged when there were no pairs)."""
    from alignment.dpo import train_dpo
    from sim.gate.calibration import warn_if_uninformative  # here: the gate loads Mesa and scipy (the CLI imports this)

    cfg = run.cfg
    pairs = _policy_pairs(rows, dilemmas, g)
    if not len(pairs):
        return policy_dir
    warn_if_uninformative(run.label_quality, cfg.alignment.require_informative_labels,
                          f"generation {g}'s policy is tuned on fitness judgments")
    dpo_cfg = dataclasses.replace(cfg.alignment.dpo, seed=child_seed(cfg.seed, "norms", "dpo", cfg.alignment.dpo.seed, g))
    folder = run.out_dir / f"generation_{g}" / "policy"
    rep = run.stage(f"generation_{g}/dpo", partial(train_dpo, pairs, pairs, dpo_cfg, folder, base_path=policy_dir,
                                                   progress=cfg.sim.progress), desc=f"generation {g}: DPO")
    row["dpo_train_margin_after"] = rep["train_margin_after"]
    return folder



def _reproduce(people: list[Worldview], lineage: list[int], plan: list[tuple[int, int]], rng: np.random.Generator,
               mutation: float) -> tuple[list[Worldview], list[int]]:
    """The next generation: each (leaving, parent) slot takes a mutated copy of its parent and its lineage."""
    new_people, new_lineage = list(people), list(lineage)
    for leaving, parent in plan:
        new_people[leaving] = mutate(people[parent], rng, mutation)
        new_lineage[leaving] = lineage[parent]
    return new_people, new_lineage
