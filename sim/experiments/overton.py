"""``experiment=overton``: how many of the population's positions does an answer represent?

After Sorensen et al., "A Roadmap to Pluralistic Alignment" (Overton pluralism). Per dilemma:

1. *voices*: ``study.overton.voices`` agents of each cluster (at most the smallest cluster's) answer it (the
   society's stance prompt) and their P(a) is read (``sim.choice_reader``); each cluster's *position* is its
   side and its surest voice's reason (``sim/overton.py``);
2. the pluralism experiment's answers (:func:`sim.experiments.pluralism.condition_answers`): the base model
   alone (``single``), told to weigh the clusters (``contextual``), a panel merged by a synthesiser
   (``panel``), and the panel's members;
3. a judge reads, for every (answer, position of its dilemma), P(yes) that the answer represents or
   acknowledges the position; coverage = share of positions with P > 0.5.

Members' answers are the judge's validity check: they should cover their own cluster's position more
often than the others'.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from agents import prompts
from agents.llm.base import GenerateRequest, LLMBackend
from agents.scoring import check_probability, read_stance, scorer
from agents.worldview import PopulationSpec, Worldview, cluster_counts
from alignment.metrics import headline_figure
from scenarios.dilemma import Dilemma, load_dilemmas
from scenarios.errors import InputError
from sim import aio, store
from sim.checkpoint import runner
from sim.config import AgoraConfig
from sim.experiments import preflight, study_dilemmas
from sim.experiments.pluralism import condition_answers
from sim.lifecycle import Run
from sim.overton import answer_coverage, cluster_positions, coverage_metrics, coverage_pairs, judge_coverage, own_position_check
from sim.report.overton import overton_report, plot_overton
from sim.seeding import child_rng, child_seed, sample_dilemmas
from sim.society import population

log = logging.getLogger(__name__)
CONDITIONS = ("single", "contextual", "panel")


def voice_agents(clusters: list[str], per_cluster: int, seed: int) -> list[int]:
    """``per_cluster`` agents of each cluster (all of a smaller one), a seeded draw; sorted."""
    rng = child_rng(seed, "overton", "voices")
    chosen: list[int] = []
    for c in dict.fromkeys(clusters):
        members = [i for i, x in enumerate(clusters) if x == c]
        chosen += [int(i) for i in rng.choice(members, size=min(per_cluster, len(members)), replace=False)]
    return sorted(chosen)


async def _voices(cfg: AgoraConfig, backend: LLMBackend, dilemmas: list[Dilemma], worldviews: list[Worldview],
                  bar: tqdm) -> list[dict[str, Any]]:
    """Each voice's answer (text) and its read P(a), per dilemma."""
    o, s = cfg.study.overton, cfg.sim
    agents = voice_agents([w.cluster for w in worldviews], o.voices, cfg.seed)
    score = scorer(backend)

    async def one(j: int, d: Dilemma, m: int) -> dict[str, Any]:
        w = worldviews[m]
        (text,), reading = await asyncio.gather(
            backend.generate([GenerateRequest(messages=prompts.stance_messages(d, w), max_new_tokens=o.answer_tokens,
                                              temperature=cfg.llm.temperature, top_p=cfg.llm.top_p,
                                              seed=child_seed(cfg.seed, "overton", "voice", j, m))]),
            read_stance(score, s.choice_reader, d, w, both_orders=s.debias_order, what=f"voice {m} on '{d.id}'"))
        bar.update(1)
        return {"dilemma_id": d.id, "agent_id": m, "cluster": w.cluster,
                "p_a": check_probability(reading.p_a, f"voice {m} on '{d.id}'"), "text": text}

    return list(await asyncio.gather(*(one(j, d, m) for j, d in enumerate(dilemmas) for m in agents)))


def _bar(cfg: AgoraConfig, total: int, what: str) -> tqdm:
    return tqdm(total=total, desc=f"overton: {what}", unit=what.split()[-1], disable=not cfg.sim.progress, leave=False)


def _measure(run: Run, dilemmas: list[Dilemma]) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                         list[dict[str, Any]], list[float]]:
    """The checkpointed stages (the conditions' answers, the voices, the judge's readings) and the positions."""
    cfg, ckpt, backend, o = run.cfg, run.ckpt, run.backend, run.cfg.study.overton
    worldviews = population(cfg)
    by_id = {d.id: d for d in dilemmas}
    with _bar(cfg, len(dilemmas) * (3 + min(o.panel_size, cfg.population.size)), "answers") as bar:
        answers = ckpt.stage("answers", lambda: aio.run(condition_answers(
            cfg, backend, dilemmas, bar, tag="overton", panel_size=o.panel_size, answer_tokens=o.answer_tokens,
            synthesis_tokens=o.synthesis_tokens)))
    n_voices = len(voice_agents([w.cluster for w in worldviews], o.voices, cfg.seed))
    with _bar(cfg, len(dilemmas) * n_voices, "voices") as bar:
        voices = ckpt.stage("voices", lambda: aio.run(_voices(cfg, backend, dilemmas, worldviews, bar)))
    positions = cluster_positions(pl.DataFrame(voices, infer_schema_length=None), by_id, o.merge)
    n_pairs = sum(1 for a in answers for p in positions if p["dilemma_id"] == a["dilemma_id"])
    with _bar(cfg, n_pairs, "judge pairs") as bar:
        p = ckpt.stage("coverage", lambda: aio.run(judge_coverage(backend, answers, positions, by_id,
                                                                      lambda: bar.update(1))))
    return answers, voices, positions, p


def check(cfg: AgoraConfig) -> None:
    """Refuse before any work what cannot be honoured: fewer dilemmas in the file than ``study.overton.dilemmas``
    (at least 2: intervals over dilemmas), more voices than a cluster has agents."""
    o = cfg.study.overton
    study_dilemmas(cfg, o.dilemmas, "study.overton.dilemmas", minimum=2)
    pop = cfg.population
    counts = [(n, c) for n, c in zip(cluster_counts(PopulationSpec(size=pop.size, clusters=tuple(pop.clusters),
                                                                    weights=tuple(pop.weights))), pop.clusters, strict=True) if n]
    fewest, name = min(counts)
    if o.voices > fewest:
        raise InputError(f"study.overton.voices={o.voices} is more than the {fewest} agent(s) of cluster {name} "
                         f"(population.size={pop.size} over {len(counts)} clusters); at most {fewest}")


@runner
def run_overton(cfg: AgoraConfig, out_dir: Path, backend: LLMBackend | None = None) -> dict[str, Any]:
    o = cfg.study.overton
    preflight(cfg)
    pool = load_dilemmas(cfg.scenario.dilemmas)
    run = Run.start(cfg, out_dir, "overton", backend)
    dilemmas = sample_dilemmas(pool, o.dilemmas, cfg.seed, "overton")
    if o.panel_size > cfg.population.size:
        log.warning("study.overton.panel_size %d > population.size %d: panels of %d", o.panel_size,
                    cfg.population.size, cfg.population.size)
    rows, voices, positions, p = _measure(run, dilemmas)
    pairs = coverage_pairs(rows, positions, p)
    answers = pl.concat([pl.DataFrame(rows, infer_schema_length=None), answer_coverage(pairs, len(rows)).drop("answer")],
                        how="horizontal")
    metrics = coverage_metrics(answers, (*CONDITIONS, "member"), cfg.seed, cfg.eval.bootstrap,
                               compared=CONDITIONS[1:])
    metrics["validity"] = own_position_check(pairs.filter(pl.col("condition") == "member"))
    store.write_parquet(answers, out_dir / "overton_answers.parquet")
    store.write_parquet(pl.DataFrame(voices, infer_schema_length=None), out_dir / "overton_voices.parquet")
    store.write_parquet(pl.DataFrame(positions, infer_schema_length=None), out_dir / "overton_positions.parquet")
    store.write_parquet(pairs, out_dir / "overton_coverage.parquet")
    counts = [sum(1 for q in positions if q["dilemma_id"] == d.id) for d in dilemmas]
    summary: dict[str, Any] = {
        "seconds": {k: round(run.ckpt.seconds(k), 1) for k in ("answers", "voices", "coverage")},
        "dilemmas": len(dilemmas), "clusters": list(dict.fromkeys(w.cluster for w in population(cfg))),
        "panel_size": min(o.panel_size, cfg.population.size),
        "positions_per_dilemma": {"mean": sum(counts) / len(counts), "min": min(counts), "max": max(counts)},
        **metrics, "plots": plot_overton(metrics, out_dir)}
    summary["headline"] = {f"coverage[{c}]": headline_figure(v["coverage"]) for c, v in metrics["conditions"].items()}
    summary["headline"] |= {k: headline_figure(v) for k, v in metrics["differences"].items() if k.startswith("coverage_")}
    summary["headline"] |= {f"judge_{k}": headline_figure(metrics["validity"][k]) for k in ("own_position", "other_positions")}
    return run.finish(summary, partial(overton_report, answers=answers, positions=positions, pairs=pairs))
