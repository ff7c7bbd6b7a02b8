"""The society run (``experiment=society``, the default): a society debates, critiques and judges; its outputs."""

from __future__ import annotations

import dataclasses
import logging
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from agents.prompts import names_other
from alignment.metrics import Interval, bootstrap_interval, finite, proportion_interval
from scenarios.constitution import load_constitution
from scenarios.dilemma import load_dilemmas
from sim.config import AgoraConfig
from sim.experiments.registry import experiment
from sim.experiments.society.console import society_lines
from sim.experiments.society.summary import SocietySummary
from sim.report.render import CORE_CONFIG
from sim.run import store
from sim.run.checkpoint import advance
from sim.run.lifecycle import Run
from sim.run.seeding import child_rng, child_seed

if TYPE_CHECKING:
    from sim.society.model import Society

log = logging.getLogger(__name__)

OUTPUT_FILES = ("stances.parquet", "transcripts.parquet", "preferences.parquet", "preferences_trl.parquet",
                "preferences_trl_chat.parquet", "metrics.parquet", "summary.json", "stance_shares.png",
                "social_graph.png", "cluster_choices.png",
                "report.md", "report.html")
# shuffles of the agents' cluster labels behind the steerability null: its p resolves to 1/1001, and a 24-agent,
# 12-dilemma run's shuffles take milliseconds (not a setting: a setting in a hashed section would change run ids)
SPREAD_PERMUTATIONS = 1000


def summarise(society: Society, prefs: pl.DataFrame, stances: pl.DataFrame, wall: float) -> dict[str, Any]:
    """The run's headline figures (also printed at the end of a run)."""
    clock = society.clock
    initial = stances.filter(pl.col("phase") == "initial")
    rate = lambda phase: (clock.items.get(phase, 0) / clock.seconds[phase]) if clock.seconds.get(phase) else None  # noqa: E731
    flips = prefs.filter(pl.col("position_flip").is_not_null())
    # Steerability: does the worldview change the choice? Per cluster, the mean P(a) per dilemma.
    per_cluster = (initial.group_by("dilemma_id", "cluster").agg(pl.col("p_a").mean(),
                                                                 (pl.col("choice") == "a").mean().alias("share_a"))
                   .sort("dilemma_id", "cluster"))
    spread = per_cluster.group_by("dilemma_id").agg(
        (pl.col("share_a").max() - pl.col("share_a").min()).alias("share_spread"),
        (pl.col("p_a").max() - pl.col("p_a").min()).alias("p_a_spread")).sort("dilemma_id")
    by_cluster = per_cluster.group_by("cluster").agg(pl.col("share_a").mean(), pl.col("p_a").mean()).sort("cluster")
    backend = society.judge_backend
    return {
        "run_id": society.run_id,
        "wall_seconds": round(wall, 2),
        "counts": {
            "agents": len(society.agents), "steps": society.steps,
            "stances": len(stances), "initial_stances": len(initial),
            "unparsed_stance_texts": int((~initial["parsed_ok"]).sum()) if len(initial) else 0,
            "abstentions": int((stances["choice"] == "abstain").sum()) if len(stances) else 0,
            "transcript_messages": len(society.transcripts), "preferences": len(prefs),
        },
        "throughput": {
            "stances_per_s": finite(rate("stance")), "preferences_per_s": finite(rate("judge")),
            "debate_messages_per_s": finite(rate("debate")), "phase_seconds": {k: round(v, 2) for k, v in clock.seconds.items()},
        },
        "judge": {
            "position_flip_rate": finite(flips["position_flip"].mean()) if len(flips) else None,
            "label_informativeness_mean_abs_p_minus_half": finite((prefs["p_a"] - 0.5).abs().mean()) if len(prefs) else None,
            "share_confident_labels_abs_gt_0.1": finite(((prefs["p_a"] - 0.5).abs() > 0.1).mean()) if len(prefs) else None,
            "p_a_std": finite(prefs["p_a"].std()) if len(prefs) > 1 else None,
            # an exact 0.5 is a tie (two identical answers, or a model that cannot tell): counted, never hidden
            "labels_exactly_half": int((prefs["p_a"] == 0.5).sum()) if len(prefs) else 0,
            "stances_exactly_half": int((stances["p_a"] == 0.5).sum()) if len(stances) else 0,
            "revision_preferred_rate": finite(prefs.filter(pl.col("pair_kind") == "revision")["p_a"].gt(0.5).mean())
            if len(prefs.filter(pl.col("pair_kind") == "revision")) else None,
        },
        "stance_text_agreement": finite((initial.filter(pl.col("parsed_ok"))
                                          .select((pl.col("text_choice") == pl.col("choice")).mean()).item())
                                         if int(initial["parsed_ok"].sum()) else float("nan")),
        "reasons": reason_coherence(society),
        "steerability": {
            "mean_cluster_share_spread": finite(spread["share_spread"].mean()),
            "mean_cluster_p_a_spread": finite(spread["p_a_spread"].mean()),
            "by_cluster": {r["cluster"]: {"share_a": finite(r["share_a"]), "p_a": finite(r["p_a"])}
                           for r in by_cluster.iter_rows(named=True)},
            **spread_figures(initial, spread, society.cfg.seed, society.cfg.eval.bootstrap),
        },
        "network": {"kind": society.cfg.network.kind, "edges": society.graph.number_of_edges(),
                    "same_cluster_edge_share": round(society.homophily(), 4)},
        "backend": {"name": backend.name, **dataclasses.asdict(backend.stats)},
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "torch": _torch_version(), "device": str(getattr(backend, "device", "n/a"))},
    }


def spread_figures(initial: pl.DataFrame, spread: pl.DataFrame, seed: int, n_boot: int,
                   permutations: int = SPREAD_PERMUTATIONS) -> dict[str, Any]:
    """The steerability spreads' 95% bootstrap intervals over dilemmas (the independent units) and their
    shuffled-cluster null: the agents' cluster labels permuted (cluster sizes kept), the spreads recomputed from the
    same answers. The null is the spread that sampling alone makes when agents differ only in which cluster they
    are counted in; ``p`` is the share of shuffles (the observed labelling counted as one) whose spread reaches the
    observed one.

    Args:
        initial: the first stances (``agent_id``, ``cluster``, ``dilemma_id``, ``choice``, ``p_a``).
        spread: per dilemma (sorted), ``share_spread`` and ``p_a_spread`` (max − min over clusters).
        seed: the run's root seed (children ``steerability/bootstrap`` and ``steerability/shuffle``).
        n_boot: bootstrap resamples (``eval.bootstrap``).
        permutations: cluster-label shuffles.
    """
    out: dict[str, Any] = {}
    for key in ("share_spread", "p_a_spread"):
        values = spread[key].drop_nulls().to_numpy()
        est = bootstrap_interval(values, n_resamples=n_boot, seed=child_seed(seed, "steerability", "bootstrap", key))
        out[f"{key}_interval"] = Interval.of(est, n=len(values)).to_json()
    out["shuffled_clusters"] = {"permutations": permutations} | {
        key: null for key, null in zip(("share_spread", "p_a_spread"),
                                       shuffled_spreads(initial, child_rng(seed, "steerability", "shuffle"), permutations),
                                       strict=True)}
    return out


def _mean_spreads(rows: np.ndarray, labels: np.ndarray, dilemma: np.ndarray, values: np.ndarray, n_clusters: int,
                  n_dilemmas: int) -> np.ndarray:
    """Per labelling (a row of ``labels``: each stance row's cluster), the mean over dilemmas of max − min over
    clusters of the mean of ``values`` (NaN: missing) — what ``summarise`` computes with polars, for many labellings
    at once (one ``bincount``)."""
    n = labels.shape[0]
    cells = n_dilemmas * n_clusters
    idx = (np.arange(n)[:, None] * cells + dilemma[None, :] * n_clusters + labels[:, rows]).ravel()
    ok = ~np.isnan(values)
    sums = np.bincount(idx, np.tile(np.where(ok, values, 0.0), n), minlength=n * cells)
    counts = np.bincount(idx, np.tile(ok.astype(float), n), minlength=n * cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums / counts).reshape(n, n_dilemmas, n_clusters)
    seen = ~np.isnan(means)
    hi = np.where(seen, means, -np.inf).max(axis=2)
    lo = np.where(seen, means, np.inf).min(axis=2)
    per = np.where(seen.any(axis=2), hi - lo, np.nan)
    with np.errstate(invalid="ignore"):
        return np.array([np.nan if np.isnan(r).all() else np.nanmean(r) for r in per])


FLOAT_NOISE = 1e-5  # spreads closer than this are equal (P(A) of one prompt in different batches: up to ~1e-6 apart)


def shuffled_spreads(initial: pl.DataFrame, rng: np.random.Generator, permutations: int) -> list[dict[str, Any]]:
    """For the share choosing A and for P(A): the observed mean spread recomputed, the shuffled-cluster null's mean
    and 95th percentile, and the permutation p (see :func:`spread_figures`)."""
    if initial.is_empty():
        return [{"mean": None, "p95": None, "p": None, "na": "no first stances"}] * 2
    _, rows = np.unique(initial["agent_id"].to_numpy(), return_inverse=True)
    of_agent = initial.group_by("agent_id").agg(pl.col("cluster").first()).sort("agent_id")["cluster"].to_list()
    names, agent_cluster = np.unique(np.asarray(of_agent), return_inverse=True)
    dilemmas, dilemma = np.unique(initial["dilemma_id"].to_numpy(), return_inverse=True)
    is_a = (initial["choice"] == "a").cast(pl.Float64).to_numpy()
    p_a = initial["p_a"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    out = []
    for values in (is_a, p_a):
        observed = _mean_spreads(rows, agent_cluster[None, :], dilemma, values, len(names), len(dilemmas))[0]
        # chunks of shuffles keep memory near 4 million cells whatever the society's size
        chunk = max(1, 4_000_000 // max(len(initial), len(dilemmas) * len(names)))
        null = np.concatenate([
            _mean_spreads(rows, rng.permuted(np.tile(agent_cluster, (k, 1)), axis=1), dilemma, values, len(names),
                          len(dilemmas))
            for k in [min(chunk, permutations - i) for i in range(0, permutations, chunk)]])
        if np.isnan(observed) or np.isnan(null).all():
            out.append({"mean": None, "p95": None, "p": None, "na": "no spread to compare (no values)"})
            continue
        null = null[~np.isnan(null)]
        # a shuffle whose spread is within FLOAT_NOISE of the observed one reaches it: the same prompt read in two
        # batches gives P(A)s ~1e-7 apart, and agents are batched in cluster order, so such noise is not a spread
        reached = int((null >= observed - FLOAT_NOISE).sum())
        out.append({"mean": finite(null.mean()), "p95": finite(float(np.quantile(null, 0.95))),
                    "p": finite((1 + reached) / (1 + len(null)))})
    return out


def reason_coherence(society: Society) -> dict[str, Any]:
    """How often a first stance's free-text reason still names the option its reading did not choose
    (``agents.prompts.names_other``), counted over the stances with a reason and a choice, with a 95% interval."""
    dilemmas = {d.id: d for d in society.schedule}
    texts = [(s.reason, dilemmas[s.dilemma_id], s.choice) for s in society.stances
             if s.phase == "initial" and s.reason is not None and s.choice in ("a", "b")]
    k = sum(names_other(t, d, c) for t, d, c in texts)
    share, low, high = proportion_interval(k, len(texts)) if texts else (None, None, None)
    return {"mode": society.cfg.sim.reason, "texts": len(texts), "naming_other_option": k,
            "share": finite(share), "interval": [finite(low), finite(high)]}


def _torch_version() -> str:
    try:
        import torch

        return torch.__version__
    except ImportError:  # pragma: no cover
        return "n/a"


def check(cfg: AgoraConfig) -> None:
    """A society run's refusals before any model work: the steps' per-step settings against the dilemma file, and
    the evaluation's inputs (``eval.suites``)."""
    from sim.society.model import check_per_step  # here: Mesa is slow to load (the CLI imports this module)

    check_per_step(cfg, load_dilemmas(cfg.scenario.dilemmas))
    if cfg.eval.suites:
        from sim.experiments.evaluate import eval_inputs

        eval_inputs(cfg)


def report(out_dir: Path, summary: SocietySummary) -> list[str]:
    """Its page (:func:`sim.experiments.society.report.society_report`)."""
    from sim.experiments.society.report import society_report  # here: matplotlib is slow to load (the CLI imports this)

    return society_report(out_dir, summary)


@experiment("society", summary=SocietySummary, report=report, check=check, sections=CORE_CONFIG, console=society_lines,
            published_id=True)
def run_society(run: Run) -> SocietySummary:
    """Run ``cfg.sim.steps`` steps, each on the run's one event loop, checkpointed after every one; its outputs and
    summary. Files appear only when complete (atomic renames)."""
    from sim.report.plots import plot_stance_shares  # here: matplotlib and Mesa are slow to load
    from sim.society.model import Society

    cfg, out_dir = run.cfg, run.out_dir
    dilemmas = load_dilemmas(cfg.scenario.dilemmas)
    constitution = load_constitution(cfg.constitution.name)
    society = Society(cfg, dilemmas, constitution, run.backend, run_id=run.run_id, run_async=run.run_async)
    midway = run.ckpt.extra("society")
    resumed_from = midway["state"]["steps"] if midway else None
    if midway:
        log.info("resuming %s after step %d of %d", society.run_id, resumed_from, cfg.sim.steps)
    advance(society, run.ckpt, "society")  # checkpoints after every step
    stances, transcripts, prefs = store.record_tables(society.stances, society.transcripts, society.preferences)
    metrics = pl.from_pandas(society.datacollector.get_model_vars_dataframe().reset_index(names="step"))
    metrics = metrics.with_columns(pl.col("step") + 1, pl.lit(society.run_id).alias("run_id"))
    trl_export = store.write_feedback(out_dir, stances, transcripts, prefs)
    run.write_parquet("metrics", metrics)
    plot_stance_shares(stances, out_dir / "stance_shares.png", title=society.run_id)
    summary = summarise(society, prefs, stances, run.ckpt.wall_seconds)
    r = summary["reasons"]
    if r["texts"]:
        log.info("reasons: %d of %d first reasons still name the option not chosen (%.0f%% [%.0f, %.0f]; sim.reason=%s)",
                 r["naming_other_option"], r["texts"], 100 * r["share"], 100 * r["interval"][0], 100 * r["interval"][1],
                 r["mode"])
    summary["resumed_after_step"] = resumed_from
    summary["seed"] = cfg.seed
    summary["outputs"] = list(OUTPUT_FILES)
    summary["trl_export"] = trl_export
    summary["cluster_sizes"] = {c: int(n) for c, n in zip(*np.unique(society.clusters, return_counts=True), strict=True)}
    if cfg.eval.suites:
        from sim.experiments.evaluate import evaluate

        summary["eval"] = evaluate(cfg, run.backend, out_dir, inputs=None, run_async=run.run_async)
    summary["headline"] = headline(summary)
    summary.pop("run_id")  # the run fills it, and wall_seconds, backend
    return SocietySummary.of(summary, graph=society.graph)


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The figures ``agora-report`` compares across society runs."""
    t, j, s = summary["throughput"], summary["judge"], summary["steerability"]
    out = {"stances_per_s": t["stances_per_s"], "preferences_per_s": t["preferences_per_s"],
           "position_flip_rate": j["position_flip_rate"],
           "label_informativeness": j["label_informativeness_mean_abs_p_minus_half"],
           "cluster_share_spread": s["mean_cluster_share_spread"]}
    return {k: v for k, v in out.items() if v is not None}
