"""Steerability with an interval and its no-persona baseline: the spread across clusters of the share choosing A,
its bootstrap interval over dilemmas, and the shuffled-cluster null (the spread sampling alone makes) — on scripted
backends whose answers follow the cluster or ignore it, and on tables built by hand."""

import dataclasses

import numpy as np
import polars as pl
import pytest

from agents.llm.scripted import ScriptedBackend
from scenarios.constitution import load_constitution
from scenarios.dilemma import load_dilemmas
from sim.experiments.society.run import shuffled_spreads, spread_figures, summarise
from sim.run import store
from sim.run.seeding import child_rng
from sim.society.model import Society, population
from tests.helpers import tiny_config


def run_society(scores, steps: int = 3, size: int = 24, seed: int = 0) -> dict:
    cfg = dataclasses.replace(tiny_config(steps=steps, choice_rule="argmax", debias_order=False), seed=seed)
    cfg = dataclasses.replace(cfg, population=dataclasses.replace(cfg.population, size=size))
    backend = ScriptedBackend(scores=scores(cfg) if scores else None, record=False)
    soc = Society(cfg, load_dilemmas("default"), load_constitution(cfg.constitution.name), backend, run_id="t")
    for _ in range(steps):
        soc.step()
    stances, _, prefs = store.record_tables(soc.stances, soc.transcripts, soc.preferences)
    return summarise(soc, prefs, stances, 1.0)["steerability"]


def by_cluster(cfg):
    """Log-probabilities that put the first cluster's agents on A and everyone else on B (the first label is A:
    ``debias_order=False``)."""
    agents = population(cfg)
    steered = {w.persona for w in agents if w.cluster == agents[0].cluster}
    return lambda r: [0.0, -2.0] if r.messages[0].content in steered else [-2.0, 0.0]


def test_a_society_whose_clusters_answer_differently_is_far_above_the_shuffled_null():
    s = run_society(by_cluster)
    share, null = s["share_spread_interval"], s["shuffled_clusters"]["share_spread"]
    assert s["mean_cluster_share_spread"] == share["value"] == 1.0 and share["n"] == 3
    assert share["low"] == share["high"] == 1.0  # every dilemma splits the clusters fully
    assert null["p"] < 0.01 and null["p95"] < 1.0 and null["mean"] < 0.9
    p_a = s["shuffled_clusters"]["p_a_spread"]
    assert s["p_a_spread_interval"]["value"] == pytest.approx(s["mean_cluster_p_a_spread"]) and p_a["p"] < 0.01


def test_a_society_whose_clusters_answer_identically_has_no_spread_and_p_one():
    s = run_society(None)  # the default scripted scores follow the prompt's question, never the persona
    assert s["mean_cluster_share_spread"] == 0.0 and s["mean_cluster_p_a_spread"] == 0.0
    for key in ("share_spread", "p_a_spread"):
        assert s[f"{key}_interval"] | {"n": 3} == {"value": 0.0, "low": 0.0, "high": 0.0, "n": 3}
        assert s["shuffled_clusters"][key] == {"mean": 0.0, "p95": 0.0, "p": 1.0}
    assert s["shuffled_clusters"]["permutations"] == 1000


def test_the_figures_are_seeded_by_the_run():
    a, b, c = (run_society(by_cluster, seed=s) for s in (0, 0, 1))
    assert a == b
    # a random table: the same seed gives the same null and interval, another seed others
    t = random_table(np.random.default_rng(5))
    spread = per_dilemma(t)
    f = [spread_figures(t, spread, seed, 500) for seed in (0, 0, 1)]
    assert f[0] == f[1] and f[0] != f[2]
    for key in ("share_spread", "p_a_spread"):
        ci = f[0][f"{key}_interval"]
        assert ci["low"] <= ci["value"] <= ci["high"] and ci["low"] < ci["high"] and ci["n"] == 12


def random_table(rng: np.random.Generator, agents: int = 24, dilemmas: int = 12, clusters: int = 4,
                 lean: float = 0.0) -> pl.DataFrame:
    """First stances of agents in equal clusters; cluster 0 leans to A by ``lean`` (0: clusters do not matter)."""
    rows = []
    for d in range(dilemmas):
        for a in range(agents):
            p = float(np.clip(rng.uniform(0.2, 0.8) + (lean if a % clusters == 0 else 0.0), 0, 1))
            rows.append({"agent_id": a, "cluster": f"c{a % clusters}", "dilemma_id": f"d{d:02d}",
                         "choice": "a" if rng.random() < p else "b", "p_a": p})
    return pl.DataFrame(rows)


def per_dilemma(t: pl.DataFrame) -> pl.DataFrame:
    """``summarise``'s own spread table."""
    per = t.group_by("dilemma_id", "cluster").agg(pl.col("p_a").mean(), (pl.col("choice") == "a").mean().alias("share_a"))
    return per.group_by("dilemma_id").agg((pl.col("share_a").max() - pl.col("share_a").min()).alias("share_spread"),
                                          (pl.col("p_a").max() - pl.col("p_a").min()).alias("p_a_spread")).sort("dilemma_id")


def test_p_is_the_share_of_labellings_reaching_the_observed_spread_counted_by_hand():
    """Six agents in clusters of 2, 2 and 2 on three dilemmas: all 90 labellings enumerated with polars
    (``summarise``'s arithmetic) against 4,000 shuffles."""
    import itertools

    t = random_table(np.random.default_rng(11), agents=6, dilemmas=3, clusters=3)
    observed = per_dilemma(t)["share_spread"].mean()
    spreads = []
    for perm in itertools.permutations(range(6)):
        relabel = {a: f"c{perm[a] % 3}" for a in range(6)}
        spreads.append(per_dilemma(t.with_columns(pl.col("agent_id").replace_strict(relabel).alias("cluster")))
                       ["share_spread"].mean())
    spreads = np.array(spreads)
    share, _ = shuffled_spreads(t, child_rng(0, "by hand"), 4000)
    assert share["p"] == pytest.approx((spreads >= observed - 1e-12).mean(), abs=0.03)
    assert share["mean"] == pytest.approx(spreads.mean(), abs=0.02)


def test_p_is_near_uniform_when_clusters_do_not_matter_and_small_when_one_cluster_always_chooses_a():
    ps = []
    for k in range(40):
        t = random_table(np.random.default_rng(100 + k))
        share, p_a = shuffled_spreads(t, child_rng(0, "test", k), 200)
        ps.append(share["p"])
        assert share["mean"] > 0 and share["p95"] >= share["mean"]
    ps = np.array(ps)
    # ties count as reaching the observed spread, so p leans a little high; never mostly small
    assert 0.3 < ps.mean() < 0.75 and (ps < 0.05).mean() <= 0.15 and ps.min() < 0.5 < ps.max()
    leaning = random_table(np.random.default_rng(7), lean=1.0)
    share, p_a = shuffled_spreads(leaning, child_rng(0, "test"), 500)
    assert share["p"] < 0.01 and p_a["p"] < 0.01


def test_float_noise_that_follows_the_clusters_is_no_spread():
    """Without a persona every agent reads the same prompt, but its P(A) differs by ~1e-7 between the batches it
    lands in, and batches follow cluster order: that must give p = 1, not a spread beyond every shuffle."""
    t = random_table(np.random.default_rng(5)).with_columns(
        (pl.lit(0.4) + pl.col("cluster").replace_strict({"c0": 0.0, "c1": 0.0, "c2": 3e-7, "c3": 3e-7})).alias("p_a"))
    _, p_a = shuffled_spreads(t, child_rng(0, "noise"), 300)
    assert p_a["p"] == 1.0 and p_a["mean"] < 1e-6
    real = t.with_columns((pl.col("p_a") + pl.when(pl.col("cluster") == "c0").then(0.01).otherwise(0.0)).alias("p_a"))
    assert shuffled_spreads(real, child_rng(0, "noise"), 300)[1]["p"] < 0.01  # a 0.01 shift is still seen


def test_missing_readings_and_an_empty_table():
    t = random_table(np.random.default_rng(3)).with_columns(
        pl.when(pl.col("agent_id") == 0).then(None).otherwise(pl.col("p_a")).alias("p_a"))
    share, p_a = shuffled_spreads(t, child_rng(0, "t"), 100)
    assert p_a["p"] is not None and 0 < p_a["p"] <= 1
    empty = t.clear()
    assert shuffled_spreads(empty, child_rng(0, "t"), 10)[0]["na"] == "no first stances"
    f = spread_figures(empty, per_dilemma(empty), 0, 500)
    assert f["share_spread_interval"]["value"] is None and "na" in f["share_spread_interval"]


def test_the_report_and_the_console_print_the_spread_against_the_null_and_an_older_summary_prints_as_before(tmp_path):
    from sim.experiments import run_experiment
    from sim.experiments.society.console import spread_vs_null
    from sim.experiments.society.report import steerability_line

    summary = run_experiment(tiny_config(steps=2), tmp_path / "run", ScriptedBackend(record=False))
    s = summary["steerability"]
    ci, null = s["share_spread_interval"], s["shuffled_clusters"]["share_spread"]
    text = f" [{ci['low']:.2f}, {ci['high']:.2f}] (shuffled-cluster null mean {null['mean']:.2f}, 95th pct {null['p95']:.2f}; p"
    assert spread_vs_null(s, "share_spread").startswith(text)
    page = (tmp_path / "run" / "report.md").read_text()
    assert steerability_line(s) in page and text in page and "(1000 times, cluster sizes kept)" in page
    older = {k: v for k, v in s.items() if k in ("mean_cluster_share_spread", "mean_cluster_p_a_spread", "by_cluster")}
    assert spread_vs_null(older, "share_spread") == "" and steerability_line(older) is None
