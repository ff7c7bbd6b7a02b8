"""Run a society from an :class:`~sim.config.AgoraConfig` and write its outputs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from agents.llm.base import LLMBackend
from scenarios.constitution import load_constitution
from scenarios.dilemma import load_dilemmas
from sim import store
from sim.checkpoint import Checkpoint, runner, simulate
from sim.config import AgoraConfig, LLMConfig
from sim.society import Society, check_per_step

log = logging.getLogger(__name__)

OUTPUT_FILES = ("stances.parquet", "transcripts.parquet", "preferences.parquet", "preferences_trl.parquet",
                "metrics.parquet", "summary.json", "stance_shares.png",
                "report.md", "report.html")
# llm settings that say how to reach a model server, not what it computes: a resumed run may change them
TRANSPORT_KEYS = ("base_url", "api_key_env", "timeout_s", "max_retries", "backoff_s", "concurrency")


def embedded_options(cfg: LLMConfig) -> dict[str, Any]:
    return {"device": cfg.device, "dtype": cfg.dtype, "max_batch_size": cfg.max_batch_size,
            "max_batch_tokens": cfg.max_batch_tokens, "max_context_tokens": cfg.max_context_tokens,
            "prefix_sharing": cfg.prefix_sharing, "prefix_cache_mb": cfg.prefix_cache_mb}


def make_backend(cfg: LLMConfig) -> LLMBackend:
    if cfg.backend == "embedded":
        from agents.llm.embedded import EmbeddedBackend

        return EmbeddedBackend(cfg.model_path, **embedded_options(cfg))
    if cfg.backend == "openai_compatible":
        from agents.llm.openai_compat import OpenAICompatibleBackend

        assert cfg.base_url and cfg.model
        return OpenAICompatibleBackend(base_url=cfg.base_url, model=cfg.model, api_key_env=cfg.api_key_env,
                                       timeout_s=cfg.timeout_s, max_retries=cfg.max_retries, backoff_s=cfg.backoff_s,
                                       concurrency=cfg.concurrency)
    from agents.llm.scripted import ScriptedBackend

    return ScriptedBackend()


def run_id_for(cfg: AgoraConfig) -> str:
    """Deterministic: the same config and seed give the same id (so outputs are byte-identical)."""
    settings = dataclasses.asdict(cfg)
    settings["sim"].pop("progress")  # display only: must not change the id or the bytes
    settings.pop("resume")  # how a run is continued is not what it is
    settings.pop("eval")  # evaluation reads the society's outputs, it does not change them
    settings.pop("calibration")  # nor does the label-quality gate, nor whether a failed gate stops the run
    settings["alignment"].pop("require_informative_labels")
    for k in TRANSPORT_KEYS:  # where the model is served from and how patiently: not what the run is
        settings["llm"].pop(k)
    blob = json.dumps(settings, sort_keys=True, default=str)
    return f"{cfg.name}-s{cfg.seed}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def _finite(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


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
        (pl.col("p_a").max() - pl.col("p_a").min()).alias("p_a_spread"))
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
            "stances_per_s": _finite(rate("stance")), "preferences_per_s": _finite(rate("judge")),
            "debate_messages_per_s": _finite(rate("debate")), "phase_seconds": {k: round(v, 2) for k, v in clock.seconds.items()},
        },
        "judge": {
            "position_flip_rate": _finite(flips["position_flip"].mean()) if len(flips) else None,
            "label_informativeness_mean_abs_p_minus_half": _finite((prefs["p_a"] - 0.5).abs().mean()) if len(prefs) else None,
            "share_confident_labels_abs_gt_0.1": _finite(((prefs["p_a"] - 0.5).abs() > 0.1).mean()) if len(prefs) else None,
            "p_a_std": _finite(prefs["p_a"].std()) if len(prefs) > 1 else None,
            # an exact 0.5 is a tie (two identical answers, or a model that cannot tell): counted, never hidden
            "labels_exactly_half": int((prefs["p_a"] == 0.5).sum()) if len(prefs) else 0,
            "stances_exactly_half": int((stances["p_a"] == 0.5).sum()) if len(stances) else 0,
            "revision_preferred_rate": _finite(prefs.filter(pl.col("pair_kind") == "revision")["p_a"].gt(0.5).mean())
            if len(prefs.filter(pl.col("pair_kind") == "revision")) else None,
        },
        "stance_text_agreement": _finite((initial.filter(pl.col("parsed_ok"))
                                          .select((pl.col("text_choice") == pl.col("choice")).mean()).item())
                                         if int(initial["parsed_ok"].sum()) else float("nan")),
        "steerability": {
            "mean_cluster_share_spread": _finite(spread["share_spread"].mean()),
            "mean_cluster_p_a_spread": _finite(spread["p_a_spread"].mean()),
            "by_cluster": {r["cluster"]: {"share_a": _finite(r["share_a"]), "p_a": _finite(r["p_a"])}
                           for r in by_cluster.iter_rows(named=True)},
        },
        "network": {"kind": society.cfg.network.kind, "edges": society.graph.number_of_edges(),
                    "same_cluster_edge_share": round(society.homophily(), 4)},
        "backend": {"name": backend.name, **dataclasses.asdict(backend.stats)},
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "torch": _torch_version(), "device": str(getattr(backend, "device", "n/a"))},
    }


def _torch_version() -> str:
    try:
        import torch

        return torch.__version__
    except ImportError:  # pragma: no cover
        return "n/a"


@runner
def run(cfg: AgoraConfig, out_dir: Path, backend: LLMBackend | None = None) -> dict[str, Any]:
    """Run ``cfg.sim.steps`` steps and write every output file into ``out_dir``.

    Files appear only when complete (atomic renames); ``summary.json`` is written last, so its
    presence marks a finished run.
    """
    dilemmas = load_dilemmas(cfg.scenario.dilemmas)
    check_per_step(cfg, dilemmas)  # before any model work
    constitution = load_constitution(cfg.constitution.name)
    run_id = run_id_for(cfg)
    ckpt = Checkpoint(out_dir, run_id, "society", cfg, None, resume=bool(cfg.resume))  # refuses before the model loads
    backend = backend or make_backend(cfg.llm)
    ckpt.track(backend.stats)
    from alignment.calibration import start

    quality = start(cfg, backend, ckpt)
    society = Society(cfg, dilemmas, constitution, backend, run_id=run_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    midway = ckpt.extra("society")
    resumed_from = midway["state"]["steps"] if midway else None
    if midway:
        log.info("resuming %s after step %d of %d", society.run_id, resumed_from, cfg.sim.steps)
    rows = simulate(society, ckpt, "society")  # checkpoints after every step
    stances, transcripts, prefs = store.feedback_tables(**rows)
    metrics = pl.from_pandas(society.datacollector.get_model_vars_dataframe().reset_index(names="step"))
    metrics = metrics.with_columns(pl.col("step") + 1, pl.lit(society.run_id).alias("run_id"))
    store.write_feedback(out_dir, stances, transcripts, prefs)
    store.write_parquet(metrics, out_dir / "metrics.parquet")
    from sim.plots import plot_stance_shares

    plot_stance_shares(stances, out_dir / "stance_shares.png", title=society.run_id)
    summary = summarise(society, prefs, stances, ckpt.wall_seconds)
    summary["resumed_after_step"] = resumed_from
    summary["label_quality"] = quality
    summary["config"] = dataclasses.asdict(cfg)
    summary["seed"] = cfg.seed
    summary["outputs"] = list(OUTPUT_FILES)
    summary["cluster_sizes"] = {c: int(n) for c, n in zip(*np.unique(society.clusters, return_counts=True), strict=True)}
    if cfg.eval.suites:
        from alignment.evaluate import evaluate

        summary["eval"] = evaluate(cfg, backend, out_dir)
    summary["kind"] = "society"
    summary["headline"] = headline(summary)
    from sim.report import society_report

    society_report(out_dir, summary)
    store.write_json(summary, out_dir / "summary.json")
    ckpt.finish()  # summary.json now marks the run complete
    return summary


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The figures ``agora-report`` compares across society runs."""
    t, j, s = summary["throughput"], summary["judge"], summary["steerability"]
    out = {"stances_per_s": t["stances_per_s"], "preferences_per_s": t["preferences_per_s"],
           "position_flip_rate": j["position_flip_rate"],
           "label_informativeness": j["label_informativeness_mean_abs_p_minus_half"],
           "cluster_share_spread": s["mean_cluster_share_spread"]}
    return {k: v for k, v in out.items() if v is not None}
