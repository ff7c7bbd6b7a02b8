"""``experiment=pluralism``: does answering as a panel keep more perspectives alive than one model?

After WorldView-Bench's multiplexity study. Per dilemma, three conditions
(:func:`sim.experiments.shared.answers.answers_stage`):

- ``single``: one model answers alone (no persona);
- ``contextual``: the same model, told to weigh the clusters' perspectives (contextual multiplexity);
- ``panel``: agents from different clusters answer, a synthesiser merges them (multi-agent multiplexity).

A judge (``score_choices`` over numbered perspectives, every rotation of the list) gives each answer a
distribution over the clusters whose values it reflects; its normalised entropy is the answer's
perspective diversity (WorldView-Bench's PDS entropy). The panel members' own answers are classified
too, as a validity check: a classifier that cannot tell a member's cluster from its answer cannot
measure multiplexity either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl

from agents import prompts
from agents.scoring import classify
from agents.worldview import cluster_centre, cluster_label
from alignment.metrics import normalised_entropy
from scenarios.dilemma import Dilemma, load_dilemmas
from scenarios.errors import InputError
from sim.config import AgoraConfig
from sim.experiments import study_dilemmas
from sim.experiments.pluralism.config import SECTIONS, PluralismConfig
from sim.experiments.pluralism.labels import LABELS, RANGES
from sim.experiments.pluralism.report import plot_pluralism, pluralism_report
from sim.experiments.pluralism.summary import PluralismSummary, pluralism_metrics
from sim.experiments.registry import experiment
from sim.experiments.shared.answers import answers_stage
from sim.results import pick
from sim.run.lifecycle import Run
from sim.run.seeding import sample_dilemmas


async def _classify(run: Run, rows: list[dict[str, Any]], dilemmas: dict[str, Dilemma], names: list[str],
                    on_done: Callable[[], None]) -> list[list[float]]:
    """Each answer's distribution over the clusters' perspectives, as the judge reads it."""
    descriptions = {c: (cluster_label(c), cluster_centre(c).persona) for c in names}

    async def one(r: dict[str, Any]) -> list[float]:
        dist = await classify(run.backend, names, lambda order: prompts.perspective_messages(
            dilemmas[r["dilemma_id"]], r["text"], [descriptions[c] for c in order]))
        on_done()
        return dist.tolist()

    return list(await asyncio.gather(*(one(r) for r in rows)))


def check(cfg: AgoraConfig) -> None:
    """Refuse before any work a run that cannot mean anything: fewer dilemmas in the file than
    ``study.pluralism.dilemmas`` (at least 2: intervals over dilemmas), fewer than two clusters (an entropy
    over one perspective is undefined)."""
    study_dilemmas(cfg, cfg.study.pluralism.dilemmas, "study.pluralism.dilemmas", minimum=2)
    if len(set(cfg.population.clusters)) < 2:
        raise InputError(f"experiment=pluralism needs at least 2 population.clusters (the entropy over perspectives), "
                         f"got {list(cfg.population.clusters)}")


@experiment("pluralism", key="pluralism", config=PluralismConfig, summary=PluralismSummary, report=pluralism_report,
            check=check, sections=SECTIONS, labels=LABELS, ranges=RANGES, published_id=True)
def run_pluralism(run: Run) -> PluralismSummary:
    cfg, p = run.cfg, run.cfg.study.pluralism
    dilemmas = sample_dilemmas(load_dilemmas(cfg.scenario.dilemmas), p.dilemmas, cfg.seed, "pluralism")
    names = list(dict.fromkeys(cfg.population.clusters))
    rows, panel = answers_stage(run, dilemmas, p, "pluralism")
    dists = run.stage("classify", _classify(run, rows, {d.id: d for d in dilemmas}, names, run.progress.update),
                      total=len(rows), unit="answer")
    for r, dist in zip(rows, map(np.asarray, dists), strict=True):
        r |= {f"p[{n}]": float(v) for n, v in zip(names, dist, strict=True)}
        r["entropy"] = normalised_entropy(dist)
        r["top"] = names[int(np.argmax(dist))]
    answers = pl.DataFrame(rows, infer_schema_length=None)
    conditions, differences, accuracy = pluralism_metrics(answers, names, cfg.seed, cfg.eval.bootstrap)
    run.write_parquet("pluralism_answers", answers)
    headline = {f"entropy[{c}]": pick(v.entropy) for c, v in conditions.items()}
    headline |= {k: pick(v) for k, v in differences.items()}
    if accuracy is not None:
        headline["classifier_member_accuracy"] = pick(accuracy)
    return PluralismSummary(dilemmas=len(dilemmas), clusters=names, panel_size=panel, conditions=conditions,
                            differences=differences, classifier_member_accuracy=accuracy, headline=headline,
                            plots=plot_pluralism(conditions, names, run.out_dir))
