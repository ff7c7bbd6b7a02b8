"""``experiment=overton``: how many of the population's positions does an answer represent?

After Sorensen et al., "A Roadmap to Pluralistic Alignment" (Overton pluralism). Per dilemma:

1. *voices*: ``study.overton.voices`` agents of each cluster (at most the smallest cluster's) answer it (the
   society's stance prompt) and their P(a) is read (``sim.choice_reader``); each cluster's *position* is its
   side and its surest voice's reason (:mod:`sim.experiments.shared.coverage`);
2. the pluralism experiment's answers (:func:`sim.experiments.shared.answers.answers_stage`): the base model
   alone (``single``), told to weigh the clusters (``contextual``), a panel merged by a synthesiser
   (``panel``), and the panel's members;
3. a judge reads, for every (answer, position of its dilemma), P(yes) that the answer represents or
   acknowledges the position; coverage = share of positions with P > 0.5.

Members' answers are the judge's validity check: they should cover their own cluster's position more
often than the others'.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

import polars as pl

from agents import prompts
from agents.llm.base import GenerateRequest
from agents.scoring import check_probability, read_stance, scorer
from agents.worldview import PopulationSpec, Worldview, cluster_counts
from scenarios.dilemma import Dilemma, load_dilemmas
from scenarios.errors import InputError
from sim.config import AgoraConfig
from sim.experiments import study_dilemmas
from sim.experiments.overton.config import SECTIONS, OvertonConfig
from sim.experiments.overton.labels import LABELS, RANGES
from sim.experiments.overton.report import overton_report, plot_overton
from sim.experiments.overton.summary import OvertonSummary, Spread, coverage_metrics, own_position_check
from sim.experiments.registry import experiment
from sim.experiments.shared.answers import answers_stage
from sim.experiments.shared.coverage import answer_coverage, cluster_positions, coverage_pairs, judge_coverage
from sim.results import Codec, pick
from sim.run.lifecycle import Run
from sim.run.seeding import child_rng, child_seed, sample_dilemmas

CONDITIONS = ("single", "contextual", "panel")


@dataclass(frozen=True, kw_only=True)
class Voice:
    """One voice's answer to a dilemma (a row of ``overton_voices.parquet``)."""

    dilemma_id: str
    agent_id: int
    cluster: str
    p_a: float
    text: str


def voice_agents(clusters: list[str], per_cluster: int, seed: int) -> list[int]:
    """``per_cluster`` agents of each cluster (all of a smaller one), a seeded draw; sorted."""
    rng = child_rng(seed, "overton", "voices")
    chosen: list[int] = []
    for c in dict.fromkeys(clusters):
        members = [i for i, x in enumerate(clusters) if x == c]
        chosen += [int(i) for i in rng.choice(members, size=min(per_cluster, len(members)), replace=False)]
    return sorted(chosen)


async def _voices(run: Run, dilemmas: list[Dilemma], worldviews: list[Worldview], agents: list[int]) -> list[Voice]:
    """Each voice's answer (text) and its read P(a), per dilemma."""
    cfg, backend = run.cfg, run.backend
    o, s = cfg.study.overton, cfg.sim
    score = scorer(backend)

    async def one(j: int, d: Dilemma, m: int) -> Voice:
        w = worldviews[m]
        (text,), reading = await asyncio.gather(
            backend.generate([GenerateRequest(messages=prompts.stance_messages(d, w), max_new_tokens=o.answer_tokens,
                                              temperature=cfg.llm.temperature, top_p=cfg.llm.top_p,
                                              seed=child_seed(cfg.seed, "overton", "voice", j, m))]),
            read_stance(score, s.choice_reader, d, w, both_orders=s.debias_order, what=f"voice {m} on '{d.id}'"))
        run.progress.update()
        return Voice(dilemma_id=d.id, agent_id=m, cluster=w.cluster,
                     p_a=check_probability(reading.p_a, f"voice {m} on '{d.id}'"), text=text)

    return list(await asyncio.gather(*(one(j, d, m) for j, d in enumerate(dilemmas) for m in agents)))


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


@experiment("overton", key="overton", config=OvertonConfig, summary=OvertonSummary, report=overton_report, check=check,
            sections=SECTIONS, labels=LABELS, ranges=RANGES, published_id=True)
def run_overton(run: Run) -> OvertonSummary:
    from sim.society.model import population  # here: the CLI imports every experiment folder at start (Mesa is slow to load)

    cfg, o = run.cfg, run.cfg.study.overton
    dilemmas = sample_dilemmas(load_dilemmas(cfg.scenario.dilemmas), o.dilemmas, cfg.seed, "overton")
    by_id = {d.id: d for d in dilemmas}
    worldviews = population(cfg)

    rows, panel = answers_stage(run, dilemmas, o, "overton")
    agents = voice_agents([w.cluster for w in worldviews], o.voices, cfg.seed)
    voices = run.stage("voices", _voices(run, dilemmas, worldviews, agents), total=len(dilemmas) * len(agents),
                       unit="voice", codec=Codec(list[Voice]))
    voice_table = pl.DataFrame([dataclasses.asdict(v) for v in voices], infer_schema_length=None)
    positions = cluster_positions(voice_table, by_id, o.merge)
    n_pairs = sum(1 for a in rows for p in positions if p["dilemma_id"] == a["dilemma_id"])
    p = run.stage("coverage", judge_coverage(run.backend, rows, positions, by_id, run.progress.update), total=n_pairs,
                  unit="pair", desc="judge pairs")

    pairs = coverage_pairs(rows, positions, p)
    answers = pl.concat([pl.DataFrame(rows, infer_schema_length=None), answer_coverage(pairs, len(rows)).drop("answer")],
                        how="horizontal")
    conditions, differences = coverage_metrics(answers, (*CONDITIONS, "member"), cfg.seed, cfg.eval.bootstrap,
                                               compared=CONDITIONS[1:])
    validity = own_position_check(pairs.filter(pl.col("condition") == "member"))
    run.write_parquet("overton_answers", answers)
    run.write_parquet("overton_voices", voice_table)
    run.write_parquet("overton_positions", pl.DataFrame(positions, infer_schema_length=None))
    run.write_parquet("overton_coverage", pairs)
    counts = [sum(1 for q in positions if q["dilemma_id"] == d.id) for d in dilemmas]
    headline = {f"coverage[{c}]": pick(v.coverage) for c, v in conditions.items()}
    headline |= {k: pick(v) for k, v in differences.items() if k.startswith("coverage_")}
    headline |= {f"judge_{k}": pick(getattr(validity, k)) for k in ("own_position", "other_positions")}
    return OvertonSummary(
        dilemmas=len(dilemmas), clusters=list(dict.fromkeys(w.cluster for w in worldviews)), panel_size=panel,
        positions_per_dilemma=Spread(mean=sum(counts) / len(counts), min=min(counts), max=max(counts)),
        conditions=conditions, differences=differences, validity=validity, headline=headline,
        plots=plot_overton(conditions, run.out_dir))
