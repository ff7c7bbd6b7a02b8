"""``experiment=constitution_ablation``: the same society's answer pairs, judged under each constitution.

The society runs once (its own constitution shapes critique and revision, so the answers are fixed);
then every judged pair is judged again under each arm, by the same judge (same persona, same option
order), with a principle drawn from that arm. ``none`` (no principle) is the reference.

Direction: each constitution names the property it asks for as a yes/no question (its
``direction``). A rater without persona scores every answer pointwise with it, both reply orders, so
each pair gets ``delta = q(a) − q(b)``. For arm X and direction D:

- ``shift`` = mean over pairs with delta ≠ 0 of ``(p_X − p_none) · sign(delta_D)``: how much X moved
  the probability of preferring the more-D answer, in probability points (bootstrap interval over
  pairs; ``d_z`` = mean / sd of those per-pair values);
- with ``train_reward``, one reward model per arm is trained on the same training pairs with the
  arm's labels; on held-out pairs, ``rm_agreement`` is the share where the RM ranks the more-D answer
  higher, and ``rm_shift`` its difference from the ``none`` RM (paired bootstrap over pairs).

The pointwise rater shares the model with the judges, so this measures whether judging under a
constitution moves labels toward what the same model, asked directly, calls that property.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from agents import prompts
from agents.llm.base import LLMBackend
from agents.scoring import p_yes, read_judgment, scorer
from alignment.metrics import NA, Interval, bootstrap_interval, finite, finite_figures
from alignment.preferences import split_by_dilemma
from scenarios.constitution import Constitution, load_constitution
from scenarios.dilemma import Dilemma, load_dilemmas
from scenarios.errors import InputError
from sim import aio, store
from sim.calibration import warn_if_uninformative
from sim.checkpoint import runner, simulate
from sim.config import AgoraConfig
from sim.experiments import preflight
from sim.lifecycle import Run
from sim.report.ablation import ablation_report, plot_ablation
from sim.results import pick
from sim.seeding import child_rng, child_seed
from sim.society import Society, check_per_step

log = logging.getLogger(__name__)
MIN_REWARD_PAIRS = 4  # fewer judged pairs train no reward model per arm (recorded as summary.json's reward_na)


async def rejudge(society: Society, prefs: pl.DataFrame, constitution: Constitution, dilemmas: dict[str, Dilemma],
                  seed_path: tuple, bar: tqdm) -> list[float]:
    """P(response_a better) for every pair under ``constitution``: same judge, same presented order,
    both orders averaged when the society debiases; one principle per pair from a seeded draw."""
    rng = child_rng(society.cfg.seed, "ablation", *seed_path)
    principles = [constitution.judge[int(rng.integers(len(constitution.judge)))] for _ in range(len(prefs))]
    c = society.cfg.sim

    score = scorer(society.judge_backend)
    worldviews = society.agents.get("worldview")

    async def one(r: dict[str, Any], principle) -> float:
        w = worldviews[r["judge_id"]] if c.judge_persona else None
        reading = await read_judgment(score, c.judge_reader, dilemmas[r["dilemma_id"]], w, principle.text,
                                      r["response_a"], r["response_b"], both_orders=c.debias_order,
                                      swapped=r["order_swapped"], what=f"ablation judgment of {r['pref_id']}")
        bar.update(1)
        return reading.p_a

    return list(await asyncio.gather(*(one(r, pr) for r, pr in zip(prefs.iter_rows(named=True), principles, strict=True))))


async def rate_answers(backend: LLMBackend, texts: list[tuple[str, str]], question: str, dilemmas: dict[str, Dilemma],
                       bar: tqdm) -> list[float]:
    async def one(dilemma_id: str, text: str) -> float:
        q = await p_yes(backend, lambda no_first: prompts.rating_messages(dilemmas[dilemma_id], text, question,
                                                                          no_first=no_first))
        bar.update(1)
        return q

    return list(await asyncio.gather(*(one(d, t) for d, t in texts)))


def shift_toward(p_arm: np.ndarray, p_ref: np.ndarray, delta: np.ndarray, seed: int, n_boot: int) -> dict[str, Any]:
    """Mean of ``(p_arm − p_ref)·sign(delta)`` over pairs with delta ≠ 0, bootstrap interval and d_z."""
    keep = delta != 0
    v = (p_arm[keep] - p_ref[keep]) * np.sign(delta[keep])
    out = Interval.of(bootstrap_interval(v.tolist(), n_resamples=n_boot, seed=seed)).to_json()
    sd = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
    d_z = (float(v.mean()) / sd if np.isfinite(sd) and sd > 0
           else NA("fewer than 2 pairs" if len(v) < 2 else "no spread: every pair shifts the same"))
    out |= {**finite_figures(d_z=d_z), "pairs": int(keep.sum()),
            "agreement": finite(float(np.mean(np.where(delta[keep] > 0, p_arm[keep], 1 - p_arm[keep])))) if keep.any() else None}
    return out


def check(cfg: AgoraConfig) -> None:
    """Refuse before any work a reward-model arm that cannot be scored: its models are measured on held-out
    dilemmas, so the society must face at least two."""
    pool = load_dilemmas(cfg.scenario.dilemmas)
    check_per_step(cfg, pool)
    faced = min(cfg.sim.steps * cfg.scenario.per_step, len(pool))
    if cfg.study.ablation.train_reward and faced < 2:
        raise InputError(f"study.ablation.train_reward=true needs the society to face 2 or more dilemmas (its reward models "
                         f"are scored on held-out dilemmas); sim.steps x scenario.per_step over {cfg.scenario.dilemmas} "
                         f"gives {faced} (or set study.ablation.train_reward=false)")


@runner
def run_constitution_ablation(cfg: AgoraConfig, out_dir: Path, backend: LLMBackend | None = None) -> dict[str, Any]:
    ab = cfg.study.ablation
    preflight(cfg)  # before any model work
    pool = load_dilemmas(cfg.scenario.dilemmas)
    arms = {name: load_constitution(name) for name in ab.constitutions}
    run = Run.start(cfg, out_dir, "constitution_ablation", backend, trains=cfg.study.ablation.train_reward)
    ckpt, backend = run.ckpt, run.backend
    society = Society(cfg, pool, load_constitution(cfg.constitution.name), backend, run_id=run.run_id)
    fb = ckpt.stage("society", partial(simulate, society, ckpt, "society"), drop=("society",))
    stances, transcripts, prefs = store.feedback_tables(fb["stances"], fb["transcripts"], fb["preferences"])
    trl_export = store.write_feedback(out_dir, stances, transcripts, prefs)
    dilemmas = {d.id: d for d in pool}
    prog = dict(disable=not cfg.sim.progress, leave=False, unit="pair")
    labels: dict[str, list[float]] = {}
    for name, con in arms.items():
        with tqdm(total=len(prefs), desc=f"ablation: judge under {name}", **prog) as bar:
            labels[name] = ckpt.stage(f"judge/{name}", lambda con=con, name=name, bar=bar: aio.run(
                rejudge(society, prefs, con, dilemmas, (name,), bar)))
    texts = sorted({(r["dilemma_id"], t) for r in prefs.iter_rows(named=True) for t in (r["response_a"], r["response_b"])})
    directions = {name: con.direction for name, con in arms.items() if con.direction}
    rated: dict[str, dict[tuple[str, str], float]] = {}
    for name, question in directions.items():
        with tqdm(total=len(texts), desc=f"ablation: rate '{name}' direction", **prog) as bar:
            scores = ckpt.stage(f"rate/{name}", lambda question=question, bar=bar: aio.run(
                rate_answers(backend, texts, question, dilemmas, bar)))
            rated[name] = dict(zip(texts, scores, strict=True))
    table = prefs.select("pref_id", "dilemma_id", "pair_kind", "judge_id", "prompt", "response_a", "response_b")
    table = table.with_columns(*(pl.Series(f"p_a[{n}]", v) for n, v in labels.items()))
    for dname in directions:
        delta = [rated[dname][(r["dilemma_id"], r["response_a"])] - rated[dname][(r["dilemma_id"], r["response_b"])]
                 for r in prefs.iter_rows(named=True)]
        table = table.with_columns(pl.Series(f"delta[{dname}]", delta))
    ref = table["p_a[none]"].to_numpy()
    effects: dict[str, dict[str, Any]] = {}
    for arm in arms:
        for dname in directions:
            effects.setdefault(arm, {})[dname] = shift_toward(table[f"p_a[{arm}]"].to_numpy(), ref,
                                                              table[f"delta[{dname}]"].to_numpy(), cfg.seed, cfg.eval.bootstrap)
    if ab.train_reward and len(table) >= MIN_REWARD_PAIRS:
        warn_if_uninformative(run.label_quality, cfg.alignment.require_informative_labels, "a reward model per arm trains on them")
    reward = (ckpt.stage("reward", lambda: _reward_arms(cfg, table, list(arms), list(directions), out_dir))
              if ab.train_reward and len(table) >= MIN_REWARD_PAIRS else {})
    reward_na = (None if not ab.train_reward or reward else
                 f"{len(table)} judged pair(s), fewer than {MIN_REWARD_PAIRS}" if len(table) < MIN_REWARD_PAIRS
                 else "the dilemma split left no training or no held-out pair")
    if reward_na:
        log.warning("constitution_ablation: no reward models trained: %s", reward_na)
    store.write_parquet(table, out_dir / "ablation_pairs.parquet")
    plots = plot_ablation(effects, reward, out_dir)
    summary: dict[str, Any] = {
        "seconds": {"society": round(ckpt.seconds("society"), 1), "judging_and_rating": round(ckpt.seconds("judge/", "rate/"), 1)},
        "pairs": len(table), "arms": {n: {"tag": c.tag, "principles": [p.text for p in c.judge], "direction": c.direction}
                                      for n, c in arms.items()},
        "mean_p_a": {n: finite(float(np.mean(v))) for n, v in labels.items()},
        "label_change_vs_none": {n: finite(float(np.mean(np.abs(np.asarray(v) - ref)))) for n, v in labels.items()},
        "effects": effects, "reward": reward, "plots": plots, "trl_export": trl_export}
    if reward_na:
        summary["reward_na"] = reward_na
    summary["headline"] = {f"shift[{a}→{a}]": pick(effects[a][a]).to_json()
                           for a in directions if a in effects}
    summary["headline"] |= {f"rm_shift[{a}→{a}]": pick(reward[a][a]["rm_shift"]).to_json()
                            for a in directions if a in reward and a in reward[a]}
    return run.finish(summary, partial(ablation_report, transcripts=transcripts))


def _reward_arms(cfg: AgoraConfig, table: pl.DataFrame, arms: list[str], directions: list[str],
                 out_dir: Path) -> dict[str, Any]:
    """One reward model per arm on the same train pairs; agreement with each direction on held-out pairs."""
    from alignment.reward import load_reward_model, score_texts, train_reward_model

    train, held = split_by_dilemma(table, cfg.alignment.eval_fraction, child_seed(cfg.seed, "ablation", "split"))
    if len(held) == 0 or len(train) == 0:
        return {}
    rm = cfg.alignment.reward  # one seed for every arm: the arms differ only in their labels
    rm_cfg = dataclasses.replace(rm, seed=child_seed(cfg.seed, "ablation", "reward", rm.seed))
    ranked: dict[str, np.ndarray] = {}
    report: dict[str, Any] = {}
    for arm in arms:
        col = f"p_a[{arm}]"
        tr = train.with_columns(pl.col(col).alias("p_a"))
        he = held.with_columns(pl.col(col).alias("p_a"))
        rep = train_reward_model(tr, he, rm_cfg, out_dir / f"reward_{arm}", progress=cfg.sim.progress)
        model, tok = load_reward_model(out_dir / f"reward_{arm}", rm_cfg.seed, rm_cfg.device)
        ra = score_texts(model, tok, held["prompt"].to_list(), held["response_a"].to_list(), rm_cfg.max_length)
        rb = score_texts(model, tok, held["prompt"].to_list(), held["response_b"].to_list(), rm_cfg.max_length)
        ranked[arm] = np.asarray(ra) - np.asarray(rb)
        report[arm] = {"eval_accuracy_own_labels": finite(rep["eval"]["accuracy"]), "held_pairs": len(held)}
    for arm in arms:
        for dname in directions:
            delta = held[f"delta[{dname}]"].to_numpy()
            keep = delta != 0
            sign = np.sign(delta[keep])
            mine, ref = (np.sign(ranked[arm][keep]) == sign).astype(float), (np.sign(ranked["none"][keep]) == sign).astype(float)
            diff = mine - ref
            report[arm][dname] = {"rm_agreement": finite(float(mine.mean())) if keep.any() else None,
                                  "rm_shift": Interval.of(bootstrap_interval(diff.tolist(), n_resamples=cfg.eval.bootstrap,
                                                                          seed=cfg.seed)).to_json()}
    return report




