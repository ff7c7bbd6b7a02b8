"""Generations: simulate → train a reward model → DPO the policy → the policy rejoins the society.

A fixed, seeded, cluster-stratified share of agents (``alignment.policy_share``) is the *policy
group*: from generation 1 on they speak with the latest fine-tuned policy, while the rest keep the
base model as a control group in the same society. Generation 0 is the baseline (everyone on the
base model). Every generation faces the same dilemmas, so its choice distributions are comparable.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from alignment import launch
from alignment.metrics import NA, js_distance, krippendorff_alpha, normalised_entropy, summary_row, why
from alignment.preferences import balance_by_cluster, filter_confident, split_by_dilemma
from scenarios.constitution import Constitution, load_constitution
from scenarios.dilemma import load_dilemmas
from sim.config import AgoraConfig
from sim.experiments.registry import experiment
from sim.experiments.shared.coverage import policy_coverage
from sim.experiments.society.console import generations_lines
from sim.experiments.society.run import run_society  # noqa: F401  (registered first: the loop runs with its node)
from sim.experiments.society.summary import GenerationsSummary
from sim.report.render import CORE_CONFIG
from sim.run import store
from sim.run.checkpoint import Checkpoint, simulate
from sim.run.lifecycle import Run, embedded_options
from sim.run.seeding import child_rng, child_seed

if TYPE_CHECKING:
    from sim.society.model import Society

log = logging.getLogger(__name__)


def policy_group(clusters: list[str], share: float, seed: int) -> list[int]:
    """Agents that adopt the policy: ``share`` of each cluster (rounded), chosen with a seeded draw."""
    rng = child_rng(seed, "policy_group")
    chosen: list[int] = []
    for c in dict.fromkeys(clusters):
        members = [i for i, x in enumerate(clusters) if x == c]
        k = math.floor(share * len(members) + 0.5)  # half up: one of two members at share 0.5
        chosen += sorted(int(i) for i in rng.choice(members, size=k, replace=False)) if k else []
    return sorted(chosen)


def _dist(p_a: float) -> list[float]:
    return [p_a, 1 - p_a]


def generation_metrics(stances: pl.DataFrame, prefs: pl.DataFrame, group: list[int], clusters: list[str],
                       previous: dict[str, float] | None) -> tuple[dict[str, Any], dict[str, float]]:
    """Pluralism, drift and consensus figures of one generation.

    Choice distributions are the mean scored P(a) of a set of agents per dilemma (the model's own
    distribution, less noisy than sampled choices). Returns the metrics and the policy group's
    per-dilemma P(a), the ``previous`` of the next generation.
    """
    init = stances.filter(pl.col("phase") == "initial")
    pol = init.filter(pl.col("agent_id").is_in(group)).group_by("dilemma_id").agg(pl.col("p_a").mean()).sort("dilemma_id")
    pop = init.group_by("dilemma_id").agg(pl.col("p_a").mean()).sort("dilemma_id")
    by_cluster = init.group_by("dilemma_id", "cluster").agg(pl.col("p_a").mean())
    policy_pa = dict(pol.iter_rows())
    out: dict[str, Any] = {}
    per_dilemma_js = [js_distance(_dist(policy_pa[d]), _dist(p)) for d, p in pop.iter_rows() if d in policy_pa]
    out["_per_dilemma"] = [{"dilemma_id": d, "policy_p_a": policy_pa[d], "population_p_a": p,
                            "js_policy_population": js_distance(_dist(policy_pa[d]), _dist(p))}
                           for d, p in pop.iter_rows() if d in policy_pa]
    no_policy = NA("the policy group answered no dilemma")
    out["js_policy_population"] = float(np.mean(per_dilemma_js)) if per_dilemma_js else no_policy
    if len(pol):
        out["js_policy_population_overall"] = js_distance(_dist(pol["p_a"].mean()), _dist(pop["p_a"].mean()))
    # agreement with each cluster: 1 − JS distance, averaged over dilemmas; which norms is the policy near?
    names = sorted(set(clusters))
    represented = dict.fromkeys(names, 0)
    for c in names:
        rows = by_cluster.filter(pl.col("cluster") == c)
        vals = [1 - js_distance(_dist(policy_pa[d]), _dist(p)) for d, _, p in rows.iter_rows() if d in policy_pa]
        out[f"agreement[{c}]"] = float(np.mean(vals)) if vals else NA(f"no dilemma answered by both the policy group and {c}")
    # PDS entropy: per dilemma the clusters whose majority side matches the policy's side; entropy of
    # those counts over clusters (1 = the policy sides with every cluster equally often).
    for d, pa in policy_pa.items():
        for _, c, p in by_cluster.filter(pl.col("dilemma_id") == d).iter_rows():
            represented[c] += int((p > 0.5) == (pa > 0.5))
    out["pds_entropy"] = normalised_entropy(list(represented.values()))
    out["value_drift_js"] = (float(np.mean([js_distance(_dist(policy_pa[d]), _dist(previous[d]))
                                            for d in policy_pa if d in previous])) if previous
                            else NA("no previous generation to drift from"))
    for label in ("initial", "post_debate", "revised"):
        ph = stances.filter((pl.col("phase") == label) & (pl.col("choice") != "abstain"))
        shares = ph.group_by("dilemma_id").agg((pl.col("choice") == "a").mean().alias("s"))["s"].to_numpy()
        out[f"consensus_{label}"] = (float(np.mean(np.maximum(shares, 1 - shares))) if len(shares)
                                     else NA(f"no {label} stance that chose a side"))
    rev = prefs.filter(pl.col("p_a_reversed").is_not_null())
    # Judge agreement: the two option orders as two coders of each pair (label reliability under order change).
    out["judge_alpha_orders"] = (krippendorff_alpha(np.vstack([rev["p_a_presented"].to_numpy(), rev["p_a_reversed"].to_numpy()]))
                                 if len(rev) > 1 else NA("fewer than 2 pairs read in both orders"))
    out["position_flip_rate"] = float(rev["position_flip"].mean()) if len(rev) else NA("no pair read in both orders")
    out["label_informativeness"] = float((prefs["p_a"] - 0.5).abs().mean()) if len(prefs) else NA("no preferences")
    return out, policy_pa




def _overton(run: Run, society: Society, stances: pl.DataFrame, group: list[int]) -> float:
    """The policy group's Overton coverage this generation (``sim/experiments/shared/coverage.py``): its agents' first answers
    against the clusters' positions (from the control agents' first answers), judged by the run's base model
    (the same judge every generation)."""
    return run.run_async(policy_coverage(run.backend, stances, group, {d.id: d for d in society.schedule}))


def training_figures(rm: Mapping[str, Any], dpo: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A generation's reward-model (and DPO, if it trained one) figures for its metrics row, and its
    training rates apart: pairs/s is wall clock, so it differs between two runs of one seed and would make
    ``metrics_generations.parquet`` differ too. The rates go to summary.json's ``throughput.generations``."""
    row = {"rm_eval_accuracy": rm["eval"]["accuracy"], "rm_eval_ece": rm["eval"]["ece"],
           "rm_eval_log_loss": rm["eval"]["log_loss"]}
    rates = {"rm_pairs_per_s": rm["pairs_per_s"]}
    if dpo is not None:
        row |= {"dpo_eval_margin_before": dpo["eval_margin_before"], "dpo_eval_margin_after": dpo["eval_margin_after"],
                "dpo_train_margin_after": dpo["train_margin_after"]}
        rates["dpo_pairs_per_s"] = dpo["pairs_per_s"]
    return row, rates


def _simulate(society: Society, ckpt: Checkpoint, g: int, group: list[int],
              policy: tuple[Path, str] | None) -> dict[str, list[dict[str, Any]]]:
    """Generation ``g``'s steps, checkpointed after each one (resumes mid-generation); its feedback rows.
    ``policy``: (folder, name) of the tuned policy the ``group`` speaks with, loaded here only."""
    if policy is not None:
        from agents.llm.embedded import EmbeddedBackend

        tuned = EmbeddedBackend(policy[0], **embedded_options(society.cfg.llm), name=policy[1])
        members = set(group)
        society.agents.select(lambda a: a.index in members).set("backend", tuned)
    return simulate(society, ckpt, f"generation_{g}")


@dataclass
class _Loop:
    """What the generations loop carries from one generation to the next, and collects for the outputs."""

    policy_dir: Path | None  # the tuned policy's folder (the configured model's before any)
    policy_name: str | None = None  # set once a tuned policy exists; loaded only if a society must run
    group: list[int] = field(default_factory=list)
    previous: dict[str, float] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    timings: list[dict[str, Any]] = field(default_factory=list)  # training pairs/s per generation: summary.json only
    per_dilemma: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    votes: list[dict[str, Any]] = field(default_factory=list)
    graph: Any = None  # the society's social graph (the same every generation), for the report


def check(cfg: AgoraConfig) -> None:
    """The loop's refusals before any model work: the steps' per-step settings against the dilemma file."""
    from sim.society.model import check_per_step  # here: Mesa is slow to load (the CLI imports this module)

    check_per_step(cfg, load_dilemmas(cfg.scenario.dilemmas))


def trains(cfg: AgoraConfig) -> tuple[bool, bool]:
    """Every generation trains a reward model; all but the last DPO-tune the policy (the last one's feedback is
    measured, not trained on)."""
    return True, cfg.alignment.generations > 1


def report(out_dir: Path, summary: GenerationsSummary) -> list[str]:
    """Its page (:func:`sim.experiments.society.generations_report.generations_report`)."""
    from sim.experiments.society.generations_report import generations_report  # here: matplotlib is slow to load

    return generations_report(out_dir, summary)


@experiment("generations", summary=GenerationsSummary, report=report, check=check, trains=trains,
            sections=(*CORE_CONFIG, "alignment"), console=generations_lines, published_id=True, of="society")
def run_generations(run: Run) -> GenerationsSummary:
    """Run ``cfg.alignment.generations`` generations (a society run with ``alignment.generations > 0``: the registry
    picks this experiment for it); write per-generation and pooled outputs.

    Checkpointed after every society step, reward model and DPO run; ``resume=DIR`` replays the
    finished ones from the checkpoint and the saved policy folders and continues.
    """
    from sim.society.model import Society  # here: Mesa is slow to load (the CLI imports this module)

    cfg = run.cfg
    dilemmas = load_dilemmas(cfg.scenario.dilemmas)
    constitution = load_constitution(cfg.constitution.name)
    loop = _Loop(policy_dir=cfg.llm.model_path and Path(cfg.llm.model_path) or None)
    for g in range(cfg.alignment.generations):
        society = Society(cfg, dilemmas, constitution, run.backend, run_id=run.run_id, generation=g, run_async=run.run_async)
        if cfg.constitution.collective.enabled:
            constitution = _collective_vote(run, society, constitution, g, loop.versions, loop.votes)
            society.constitution = constitution
        _generation(run, society, g, loop)
    return _finish(run, loop)


def _generation(run: Run, society: Society, g: int, loop: _Loop) -> None:
    """Generation ``g``: its society (the policy group on the latest policy), metrics, reward model and
    (but for the last generation) the DPO run whose policy the next generation speaks with."""
    from sim.gate.calibration import warn_if_uninformative  # here: scipy is slow to load

    cfg, ckpt, a = run.cfg, run.ckpt, run.cfg.alignment
    loop.group = group = policy_group(society.clusters, a.policy_share, cfg.seed)
    loop.graph = society.graph
    policy = (loop.policy_dir, loop.policy_name) if loop.policy_dir and loop.policy_name else None
    fb = ckpt.stage(f"generation_{g}/society", partial(_simulate, society, ckpt, g, group, policy), drop=("society",))
    stances, transcripts, prefs = store.feedback_tables(fb["stances"], fb["transcripts"], fb["preferences"])
    loop.feedback.append((stances, transcripts, prefs))
    row: dict[str, Any] = {"generation": g, "policy_model": loop.policy_name or run.backend.name, "preferences": len(prefs)}
    metrics, loop.previous = generation_metrics(stances, prefs, group, society.clusters, loop.previous)
    loop.per_dilemma += [{"generation": g, **r} for r in metrics.pop("_per_dilemma")]
    coverage = ckpt.stage(f"generation_{g}/overton", partial(_overton, run, society, stances, group))
    for key, value in metrics.items():
        row[key] = value
        if key == "pds_entropy":  # its column beside pds_entropy's
            row["overton_coverage"] = coverage
    data = filter_confident(prefs, a.min_confidence)
    if a.balance_clusters:
        data = balance_by_cluster(data, child_seed(cfg.seed, "balance", g))
    train, held = split_by_dilemma(data, a.eval_fraction, child_seed(cfg.seed, "split", g))
    gdir = run.out_dir / f"generation_{g}"
    warn_if_uninformative(run.label_quality, a.require_informative_labels, f"generation {g}'s reward model trains on them")
    rm_cfg = dataclasses.replace(a.reward, seed=child_seed(cfg.seed, "reward", a.reward.seed, g))
    spread = {"progress": cfg.sim.progress, "processes": a.processes, "accelerate_config": a.accelerate_config}
    rm = ckpt.stage(f"generation_{g}/reward", partial(launch.train, "reward", train, held, rm_cfg, gdir / "reward_model",
                                                      loop.policy_dir, **spread))
    dpo = None
    if g < a.generations - 1:  # the last generation's feedback is measured, not trained on
        dpo_cfg = dataclasses.replace(a.dpo, seed=child_seed(cfg.seed, "dpo", a.dpo.seed, g))
        dpo = ckpt.stage(f"generation_{g}/dpo", partial(launch.train, "dpo", train, held, dpo_cfg, gdir / "policy",
                                                        loop.policy_dir, **spread))
        loop.policy_dir, loop.policy_name = gdir / "policy", f"policy-g{g + 1}"
    trained, rates = training_figures(rm, dpo)
    if not len(held):  # every dilemma of the generation trained: nothing to measure the models on
        why_na = NA(f"no held-out pair: the generation's {data['dilemma_id'].n_unique()} dilemma(s) all trained "
                    "(alignment.eval_fraction keeps one training dilemma)")
        trained = {k: why_na if k.endswith(("eval_accuracy", "eval_ece", "eval_log_loss", "margin_before", "margin_after"))
                   and not k.startswith("dpo_train") else v for k, v in trained.items()}
    row |= trained
    loop.timings.append({"generation": g, **rates})
    loop.rows.append(row)
    log.info("generation %d done: %s", g, {k: v for k, v in row.items() if isinstance(v, float)})


def _finish(run: Run, loop: _Loop) -> GenerationsSummary:
    out_dir, rows = run.out_dir, loop.rows
    metrics_df = pl.DataFrame(rows)
    stances, transcripts, prefs = (pl.concat(t) for t in zip(*loop.feedback, strict=True))
    trl_export = store.write_feedback(out_dir, stances, transcripts, prefs)
    store.write_parquet(metrics_df, out_dir / "metrics_generations.parquet")
    store.write_parquet(pl.DataFrame(loop.per_dilemma), out_dir / "pluralism_per_dilemma.parquet")
    if loop.versions:
        store.write_parquet(pl.DataFrame(loop.votes, infer_schema_length=None), out_dir / "constitution_votes.parquet")
        store.atomic_write_bytes(out_dir / "constitutions.jsonl",
                                 "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in loop.versions).encode())
    from sim.experiments.society.generations_report import plot_generations  # here: matplotlib is slow to load

    plots = plot_generations(metrics_df, out_dir)
    last = rows[-1]
    keys = ("js_policy_population", "pds_entropy", "overton_coverage", "value_drift_js", "rm_eval_accuracy", "position_flip_rate")
    headline = {k: last.get(k) if not math.isnan(last[k]) else {"value": None, "na": why(last[k]) or "not computed"}
                for k in keys if isinstance(last.get(k), float)}
    return GenerationsSummary(generations=[summary_row(r) for r in rows], throughput={"generations": loop.timings},
                              policy_group=loop.group, plots=plots, constitutions=loop.versions, trl_export=trl_export,
                              headline={f"last_generation[{k}]": v for k, v in headline.items()}, graph=loop.graph)


def _collective_vote(run: Run, society: Society, current: Constitution, g: int, versions: list[dict[str, Any]],
                     votes: list[dict[str, Any]]) -> Constitution:
    """Generation ``g``'s society votes the constitution it will judge under (on the run's event loop); both are
    recorded."""
    from sim.experiments.shared.collective import elected_constitution, vote

    cfg, backend, ckpt = run.cfg, run.backend, run.ckpt
    if not versions:
        versions.append({"generation": g, "tag": current.tag, "judge": [{"id": p.id, "text": p.text} for p in current.judge]})
    def ballot() -> dict[str, Any]:
        b = run.run_async(vote(society.agents.get("worldview"), society.graph, current, backend,
                               cfg.constitution.collective, seed=cfg.seed, generation=g,
                               temperature=cfg.llm.temperature, top_p=cfg.llm.top_p))
        return {"candidates": b.candidates, "elected": [p.id for p in b.constitution.judge]}

    result = ckpt.stage(f"generation_{g}/vote", ballot)
    new = elected_constitution(current, g, result["candidates"], result["elected"])
    votes += [{"generation": g, **c} for c in result["candidates"]]
    by_id = {c["id"]: c for c in result["candidates"]}
    versions.append({"generation": g, "tag": new.tag, "judge": [{"id": p.id, "text": p.text,
                                                                 "approval": by_id[p.id]["approval"]} for p in new.judge]})
    log.info("generation %d constitution %s: %s", g, new.tag, [p.text[:60] for p in new.judge])
    return new
