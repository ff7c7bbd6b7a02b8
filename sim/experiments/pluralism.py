"""``experiment=pluralism``: does answering as a panel keep more perspectives alive than one model?

After WorldView-Bench's multiplexity study. Per dilemma, three conditions:

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
import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from agents import prompts
from agents.llm.base import GenerateRequest, LLMBackend
from agents.scoring import classify
from agents.worldview import cluster_centre, cluster_label
from alignment.metrics import (
    bootstrap_interval,
    finite,
    finite_figures,
    headline_figure,
    interval,
    normalised_entropy,
    paired_permutation_test,
)
from scenarios.dilemma import Dilemma, load_dilemmas
from scenarios.errors import InputError
from sim import aio, store
from sim.checkpoint import runner
from sim.config import AgoraConfig
from sim.experiments import preflight, study_dilemmas
from sim.lifecycle import Run
from sim.report.pluralism import plot_pluralism, pluralism_report
from sim.seeding import child_rng, child_seed, sample_dilemmas
from sim.society import population

CONDITIONS = ("single", "contextual", "panel")
log = logging.getLogger(__name__)




def panel_members(clusters: list[str], size: int, rng: np.random.Generator) -> list[int]:
    """``size`` agents, cycling through the clusters so that the panel spans as many as it can."""
    names = list(dict.fromkeys(clusters))
    by_cluster = {c: [i for i, x in enumerate(clusters) if x == c] for c in names}
    out: list[int] = []
    for k in range(size):
        pool = [i for i in by_cluster[names[k % len(names)]] if i not in out] or [i for i in range(len(clusters)) if i not in out]
        if not pool:
            break
        out.append(int(pool[int(rng.integers(len(pool)))]))
    return out


async def condition_answers(cfg: AgoraConfig, backend: LLMBackend, dilemmas: list[Dilemma], bar: tqdm, *,
                            tag: str = "pluralism", panel_size: int, answer_tokens: int,
                            synthesis_tokens: int) -> list[dict[str, Any]]:
    """Per dilemma, the ``single``, ``contextual`` and ``panel`` answers and the panel's ``member`` answers
    (rows of ``dilemma_id, condition, agent_id, cluster, text``); seeds drawn under ``tag`` (the experiment
    that asks: ``pluralism``, ``overton``)."""
    temp, top_p = cfg.llm.temperature, cfg.llm.top_p
    worldviews = population(cfg)
    clusters = [w.cluster for w in worldviews]
    names = list(dict.fromkeys(clusters))
    views = [(cluster_label(c), cluster_centre(c).persona) for c in names]

    async def gen(messages, tokens: int, *path: int | str) -> str:
        (text,) = await backend.generate([GenerateRequest(messages=messages, max_new_tokens=tokens, temperature=temp,
                                                          top_p=top_p, seed=child_seed(cfg.seed, tag, *path))])
        bar.update(1)
        return text

    async def one(j: int, d: Dilemma) -> list[dict[str, Any]]:
        members = panel_members(clusters, panel_size, child_rng(cfg.seed, tag, "panel", j))
        single, contextual, *said = await asyncio.gather(
            gen(prompts.stance_messages(d, None), answer_tokens, "single", j),
            gen(prompts.multiplex_messages(d, views), answer_tokens, "contextual", j),
            *(gen(prompts.stance_messages(d, worldviews[m]), answer_tokens, "member", j, m) for m in members))
        merged = await gen(prompts.synthesis_messages(d, [(cluster_label(clusters[m]), t) for m, t in zip(members, said,
                                                                                                       strict=True)]),
                           synthesis_tokens, "panel", j)
        base = {"dilemma_id": d.id}
        rows = [base | {"condition": "single", "agent_id": None, "cluster": None, "text": single},
                base | {"condition": "contextual", "agent_id": None, "cluster": None, "text": contextual},
                base | {"condition": "panel", "agent_id": None, "cluster": None, "text": merged}]
        rows += [base | {"condition": "member", "agent_id": m, "cluster": clusters[m], "text": t}
                 for m, t in zip(members, said, strict=True)]
        return rows

    out = await asyncio.gather(*(one(j, d) for j, d in enumerate(dilemmas)))
    return [r for rows in out for r in rows]


async def _classify(backend: LLMBackend, rows: list[dict[str, Any]], dilemmas: dict[str, Dilemma],
                    names: list[str], bar: tqdm) -> list[np.ndarray]:
    descriptions = {c: (cluster_label(c), cluster_centre(c).persona) for c in names}

    async def one(r: dict[str, Any]) -> np.ndarray:
        dist = await classify(backend, names, lambda order: prompts.perspective_messages(
            dilemmas[r["dilemma_id"]], r["text"], [descriptions[c] for c in order]))
        bar.update(1)
        return dist

    return list(await asyncio.gather(*(one(r) for r in rows)))


def pluralism_metrics(answers: pl.DataFrame, names: list[str], seed: int, n_boot: int = 2000) -> dict[str, Any]:
    """Per condition: mean PDS entropy with a bootstrap interval over dilemmas; paired differences vs
    ``single`` (interval + sign-flip permutation p); the entropy of the pooled distribution; and the
    classifier's accuracy at naming panel members' own clusters."""
    out: dict[str, Any] = {"conditions": {}, "differences": {}}
    per = {c: answers.filter(pl.col("condition") == c).sort("dilemma_id") for c in CONDITIONS}
    for c, df in per.items():
        dist = np.asarray(df.select([f"p[{n}]" for n in names]).to_numpy(), float)
        out["conditions"][c] = {
            "entropy": interval(bootstrap_interval(df["entropy"].to_list(), n_resamples=n_boot, seed=seed)),
            "pooled_entropy": finite(normalised_entropy(dist.mean(axis=0))) if len(dist) else None,
            "mean_distribution": {n: finite(v) for n, v in zip(names, dist.mean(axis=0), strict=True)} if len(dist) else {},
            "top_perspective_counts": {n: int((df["top"] == n).sum()) for n in names},
            "answers": len(df),
        }
    for c in ("contextual", "panel"):
        d = (per[c]["entropy"] - per["single"]["entropy"]).to_list()
        out["differences"][f"{c}_minus_single"] = interval(bootstrap_interval(d, n_resamples=n_boot, seed=seed)) | \
            finite_figures(permutation_p=paired_permutation_test(d, seed=seed))
    members = answers.filter(pl.col("condition") == "member")
    if len(members):
        hits = int((members["top"] == members["cluster"]).sum())
        from alignment.metrics import proportion_interval

        out["classifier_member_accuracy"] = interval(proportion_interval(hits, len(members))) | {
            "chance": finite(1 / len(names)), "n": len(members)}
    return out




def check(cfg: AgoraConfig) -> None:
    """Refuse before any work a run that cannot mean anything: fewer dilemmas in the file than
    ``study.pluralism.dilemmas`` (at least 2: intervals over dilemmas), fewer than two clusters (an entropy
    over one perspective is undefined)."""
    study_dilemmas(cfg, cfg.study.pluralism.dilemmas, "study.pluralism.dilemmas", minimum=2)
    if len(set(cfg.population.clusters)) < 2:
        raise InputError(f"experiment=pluralism needs at least 2 population.clusters (the entropy over perspectives), "
                         f"got {list(cfg.population.clusters)}")


@runner
def run_pluralism(cfg: AgoraConfig, out_dir: Path, backend: LLMBackend | None = None) -> dict[str, Any]:
    p = cfg.study.pluralism
    preflight(cfg)
    pool = load_dilemmas(cfg.scenario.dilemmas)
    run = Run.start(cfg, out_dir, "pluralism", backend)
    ckpt, backend = run.ckpt, run.backend
    dilemmas = sample_dilemmas(pool, p.dilemmas, cfg.seed, "pluralism")
    names = list(dict.fromkeys(cfg.population.clusters))
    panel = min(p.panel_size, cfg.population.size)
    if panel < p.panel_size:
        log.warning("study.pluralism.panel_size %d > population.size %d: panels of %d", p.panel_size,
                    cfg.population.size, panel)
    n_answers = len(dilemmas) * (3 + min(p.panel_size, cfg.population.size))
    with tqdm(total=n_answers, desc="pluralism: answers", unit="answer", disable=not cfg.sim.progress, leave=False) as bar:
        rows = ckpt.stage("answers", lambda: aio.run(condition_answers(
            cfg, backend, dilemmas, bar, panel_size=p.panel_size, answer_tokens=p.answer_tokens,
            synthesis_tokens=p.synthesis_tokens)))
    with tqdm(total=len(rows), desc="pluralism: classify", unit="answer", disable=not cfg.sim.progress, leave=False) as bar:
        dists = ckpt.stage("classify", lambda: [d.tolist() for d in aio.run(
            _classify(backend, rows, {d.id: d for d in dilemmas}, names, bar))])
    for r, dist in zip(rows, map(np.asarray, dists), strict=True):
        r |= {f"p[{n}]": float(v) for n, v in zip(names, dist, strict=True)}
        r["entropy"] = normalised_entropy(dist)
        r["top"] = names[int(np.argmax(dist))]
    answers = pl.DataFrame(rows, infer_schema_length=None)
    metrics = pluralism_metrics(answers, names, cfg.seed, cfg.eval.bootstrap)
    store.write_parquet(answers, out_dir / "pluralism_answers.parquet")
    plots = plot_pluralism(metrics, names, out_dir)
    summary = {
        "seconds": {"answers": round(ckpt.seconds("answers"), 1), "classify": round(ckpt.seconds("classify"), 1)},
        "dilemmas": len(dilemmas), "clusters": names, "panel_size": panel, **metrics, "plots": plots}
    summary["headline"] = {f"entropy[{c}]": v["entropy"] for c, v in metrics["conditions"].items()}
    summary["headline"] |= {k: headline_figure(v) for k, v in metrics["differences"].items()}
    if "classifier_member_accuracy" in metrics:
        summary["headline"]["classifier_member_accuracy"] = headline_figure(metrics["classifier_member_accuracy"])
    return run.finish(summary, partial(pluralism_report, answers=answers))


