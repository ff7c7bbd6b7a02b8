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
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from agents import prompts
from agents.llm.base import LLMBackend
from agents.scoring import p_yes, read_judgment, scorer
from alignment.metrics import Interval, bootstrap_interval, finite
from alignment.preferences import split_by_dilemma
from scenarios.constitution import Constitution, load_constitution
from scenarios.dilemma import Dilemma, load_dilemmas
from scenarios.errors import InputError
from sim.config import AgoraConfig
from sim.experiments.constitution_ablation.config import SECTIONS, AblationConfig
from sim.experiments.constitution_ablation.labels import LABELS
from sim.experiments.constitution_ablation.report import ablation_report, plot_ablation
from sim.experiments.constitution_ablation.summary import (
    AblationSummary,
    Arm,
    Effect,
    RewardArm,
    RewardDirection,
    shift_toward,
)
from sim.experiments.registry import experiment
from sim.results import Codec, pick
from sim.run import store
from sim.run.checkpoint import simulate
from sim.run.lifecycle import Progress, Run
from sim.run.seeding import child_rng, child_seed

if TYPE_CHECKING:
    from sim.society.model import Society

log = logging.getLogger(__name__)
MIN_REWARD_PAIRS = 4  # fewer judged pairs train no reward model per arm (recorded as summary.json's reward_na)


async def rejudge(society: Society, prefs: pl.DataFrame, constitution: Constitution, dilemmas: dict[str, Dilemma],
                  seed_path: tuple, bar: Progress) -> list[float]:
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
                       bar: Progress) -> list[float]:
    async def one(dilemma_id: str, text: str) -> float:
        q = await p_yes(backend, lambda no_first: prompts.rating_messages(dilemmas[dilemma_id], text, question,
                                                                          no_first=no_first))
        bar.update(1)
        return q

    return list(await asyncio.gather(*(one(d, t) for d, t in texts)))


def check(cfg: AgoraConfig) -> None:
    """Refuse before any work an arm that names no bundled constitution, and a reward-model arm that cannot be
    scored: its models are measured on held-out dilemmas, so the society must face at least two."""
    from sim.society.model import check_per_step  # here: Mesa is slow to load (the CLI imports this)

    for name in cfg.study.ablation.constitutions:
        load_constitution(name)
    pool = load_dilemmas(cfg.scenario.dilemmas)
    check_per_step(cfg, pool)
    faced = min(cfg.sim.steps * cfg.scenario.per_step, len(pool))
    if cfg.study.ablation.train_reward and faced < 2:
        raise InputError(f"study.ablation.train_reward=true needs the society to face 2 or more dilemmas (its reward models "
                         f"are scored on held-out dilemmas); sim.steps x scenario.per_step over {cfg.scenario.dilemmas} "
                         f"gives {faced} (or set study.ablation.train_reward=false)")


def _trains(cfg: AgoraConfig) -> tuple[bool, bool]:
    return cfg.study.ablation.train_reward, False


@experiment("constitution_ablation", key="ablation", config=AblationConfig, summary=AblationSummary,
            report=ablation_report, check=check, trains=_trains, sections=SECTIONS, labels=LABELS, published_id=True)
def run_constitution_ablation(run: Run) -> AblationSummary:
    from sim.gate.calibration import warn_if_uninformative  # here: the gate and the society load Mesa and scipy
    from sim.society.model import Society

    cfg, ab, out_dir = run.cfg, run.cfg.study.ablation, run.out_dir
    pool = load_dilemmas(cfg.scenario.dilemmas)
    arms = {name: load_constitution(name) for name in ab.constitutions}
    society = Society(cfg, pool, load_constitution(cfg.constitution.name), run.backend, run_id=run.run_id,
                      run_async=run.run_async)
    tag = "society"  # the stage's name and its partial rows' key in the checkpoint
    fb = run.stage(tag, partial(simulate, society, run.ckpt, tag), drop=(tag,))
    stances, transcripts, prefs = store.feedback_tables(fb["stances"], fb["transcripts"], fb["preferences"])
    trl_export = store.write_feedback(out_dir, stances, transcripts, prefs)
    dilemmas = {d.id: d for d in pool}
    labels: dict[str, list[float]] = {}
    for name, con in arms.items():
        labels[name] = run.stage(f"judge/{name}", rejudge(society, prefs, con, dilemmas, (name,), run.progress),
                                 total=len(prefs), unit="pair", desc=f"judge under {name}")
    texts = sorted({(r["dilemma_id"], t) for r in prefs.iter_rows(named=True) for t in (r["response_a"], r["response_b"])})
    directions = {name: con.direction for name, con in arms.items() if con.direction}
    rated: dict[str, dict[tuple[str, str], float]] = {}
    for name, question in directions.items():
        scores = run.stage(f"rate/{name}", rate_answers(run.backend, texts, question, dilemmas, run.progress),
                           total=len(texts), unit="pair", desc=f"rate '{name}' direction")
        rated[name] = dict(zip(texts, scores, strict=True))
    table = prefs.select("pref_id", "dilemma_id", "pair_kind", "judge_id", "prompt", "response_a", "response_b")
    table = table.with_columns(*(pl.Series(f"p_a[{n}]", v) for n, v in labels.items()))
    for dname in directions:
        delta = [rated[dname][(r["dilemma_id"], r["response_a"])] - rated[dname][(r["dilemma_id"], r["response_b"])]
                 for r in prefs.iter_rows(named=True)]
        table = table.with_columns(pl.Series(f"delta[{dname}]", delta))
    ref = table["p_a[none]"].to_numpy()
    effects: dict[str, dict[str, Effect]] = {}
    for arm in arms:
        for dname in directions:
            effects.setdefault(arm, {})[dname] = shift_toward(table[f"p_a[{arm}]"].to_numpy(), ref,
                                                              table[f"delta[{dname}]"].to_numpy(), cfg.seed, cfg.eval.bootstrap)
    if ab.train_reward and len(table) >= MIN_REWARD_PAIRS:
        warn_if_uninformative(run.label_quality, cfg.alignment.require_informative_labels, "a reward model per arm trains on them")
    reward = (run.stage("reward", partial(_reward_arms, cfg, table, list(arms), list(directions), out_dir),
                        codec=Codec(dict[str, RewardArm]))
              if ab.train_reward and len(table) >= MIN_REWARD_PAIRS else {})
    reward_na = (None if not ab.train_reward or reward else
                 f"{len(table)} judged pair(s), fewer than {MIN_REWARD_PAIRS}" if len(table) < MIN_REWARD_PAIRS
                 else "the dilemma split left no training or no held-out pair")
    if reward_na:
        log.warning("%s: no reward models trained: %s", run.kind, reward_na)
    run.write_parquet("ablation_pairs", table)
    headline = {f"shift[{a}→{a}]": pick(effects[a][a]) for a in directions if a in effects}
    headline |= {f"rm_shift[{a}→{a}]": pick(reward[a].directions[a].rm_shift)
                 for a in directions if a in reward and a in reward[a].directions}
    # the two blocks this experiment has always reported (not one per stage: an arm's stages are summed)
    seconds = {"society": round(run.ckpt.seconds(tag), 1), "judging_and_rating": round(run.ckpt.seconds("judge/", "rate/"), 1)}
    return AblationSummary(
        seconds=seconds, pairs=len(table),
        arms={n: Arm(tag=c.tag, principles=[p.text for p in c.judge], direction=c.direction) for n, c in arms.items()},
        mean_p_a={n: finite(float(np.mean(v))) for n, v in labels.items()},
        label_change_vs_none={n: finite(float(np.mean(np.abs(np.asarray(v) - ref)))) for n, v in labels.items()},
        effects=effects, reward=reward, reward_na=reward_na, headline=headline,
        plots=plot_ablation(effects, reward, out_dir), trl_export=trl_export)


def _reward_arms(cfg: AgoraConfig, table: pl.DataFrame, arms: list[str], directions: list[str],
                 out_dir: Path) -> dict[str, RewardArm]:
    """One reward model per arm on the same train pairs; agreement with each direction on held-out pairs."""
    from alignment.reward import load_reward_model, score_texts, train_reward_model

    train, held = split_by_dilemma(table, cfg.alignment.eval_fraction, child_seed(cfg.seed, "ablation", "split"))
    if len(held) == 0 or len(train) == 0:
        return {}
    rm = cfg.alignment.reward  # one seed for every arm: the arms differ only in their labels
    rm_cfg = dataclasses.replace(rm, seed=child_seed(cfg.seed, "ablation", "reward", rm.seed))
    ranked: dict[str, np.ndarray] = {}
    accuracy: dict[str, float | None] = {}
    for arm in arms:
        col = f"p_a[{arm}]"
        tr = train.with_columns(pl.col(col).alias("p_a"))
        he = held.with_columns(pl.col(col).alias("p_a"))
        rep = train_reward_model(tr, he, rm_cfg, out_dir / f"reward_{arm}", progress=cfg.sim.progress)
        model, tok = load_reward_model(out_dir / f"reward_{arm}", rm_cfg.seed, rm_cfg.device)
        ra = score_texts(model, tok, held["prompt"].to_list(), held["response_a"].to_list(), rm_cfg.max_length)
        rb = score_texts(model, tok, held["prompt"].to_list(), held["response_b"].to_list(), rm_cfg.max_length)
        ranked[arm] = np.asarray(ra) - np.asarray(rb)
        accuracy[arm] = finite(rep["eval"]["accuracy"])
    report: dict[str, RewardArm] = {}
    for arm in arms:
        read: dict[str, RewardDirection] = {}
        for dname in directions:
            delta = held[f"delta[{dname}]"].to_numpy()
            keep = delta != 0
            sign = np.sign(delta[keep])
            mine, ref = (np.sign(ranked[arm][keep]) == sign).astype(float), (np.sign(ranked["none"][keep]) == sign).astype(float)
            diff = mine - ref
            read[dname] = RewardDirection(rm_agreement=finite(float(mine.mean())) if keep.any() else None,
                                          rm_shift=Interval.of(bootstrap_interval(diff.tolist(), n_resamples=cfg.eval.bootstrap,
                                                                                  seed=cfg.seed)))
        report[arm] = RewardArm(eval_accuracy_own_labels=accuracy[arm], held_pairs=len(held), directions=read)
    return report
