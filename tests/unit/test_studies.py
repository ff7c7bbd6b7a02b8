"""The research experiments' logic on a scripted backend, and their presets and launchers composed (the
presets run on the real model, sweeps and ``agora-report`` are in test_cli_e2e.py)."""

from __future__ import annotations

import asyncio
import math
import os
import re

import networkx as nx
import numpy as np
import polars as pl
import pytest

from agents.llm.scripted import ScriptedBackend
from agents.worldview import PopulationSpec, cluster_centre, mutate, sample_population
from alignment.metrics import bootstrap_interval, js_distance, normalised_entropy
from sim.config import CollectiveConfig
from sim.experiments.evolving_norms.config import NormConfig, NormsConfig
from sim.experiments.registry import get
from tests.helpers import ROOT, compose


# -- metrics against hand-computed values ------------------------------------------------------------
def test_entropy_js_and_bootstrap_hand_values():
    # H([0.5, 0.25, 0.25]) = 1.5 bits; normalised by log2(3) = 1.58496
    assert normalised_entropy([0.5, 0.25, 0.25]) == pytest.approx(1.5 / math.log2(3))
    assert normalised_entropy([2, 1, 1]) == pytest.approx(1.5 / math.log2(3))  # counts = probabilities
    # JS([1,0],[0.5,0.5]): M = [0.75, 0.25]; KL(P||M) = log2(4/3); KL(Q||M) = 0.5·log2(2/3) + 0.5·log2(2)
    js = (math.log2(4 / 3) + 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)) / 2
    assert js_distance([1, 0], [0.5, 0.5]) == pytest.approx(math.sqrt(js))
    # a bootstrap of a two-valued sample: the mean exactly; bounds inside [min, max] and around the mean
    m, lo, hi = bootstrap_interval([0, 0, 1, 1, 1, 1, 0, 1], n_resamples=4000, seed=1)
    assert m == 0.625 and 0.2 < lo < m < hi <= 1.0
    assert bootstrap_interval([0.3, 0.3, 0.3]) == (0.3, 0.3, 0.3)


# -- scored reads --------------------------------------------------------------------------------------
def test_classify_averages_out_a_position_bias_and_keeps_content():
    from agents.scoring import classify

    labels = ["x", "y", "z"]
    render = lambda order: (__import__("agents.llm.base", fromlist=["ChatMessage"]).ChatMessage(
        role="user", content="|".join(order)),)
    first_always = ScriptedBackend(scores=lambda r: [0.0, -9.0, -9.0])  # picks option 1 whatever it is
    dist = asyncio.run(classify(first_always, labels, render))
    assert dist == pytest.approx([1 / 3] * 3, abs=1e-6)
    # a content judge: always the position where "y" sits
    content = ScriptedBackend(scores=lambda r: [0.0 if x == "y" else -9.0 for x in r.messages[-1].content.split("|")])
    dist = asyncio.run(classify(content, labels, render))
    assert dist.argmax() == 1 and dist[1] > 0.99


def test_p_yes_averages_both_reply_orders():
    from agents.llm.base import ChatMessage
    from agents.scoring import p_yes

    # the model says yes more when "Yes" is named first: 0.8 vs 0.4 -> 0.6
    be = ScriptedBackend(scores=lambda r: [math.log(0.8), math.log(0.2)] if "Yes or No" in r.messages[-1].content
                         else [math.log(0.4), math.log(0.6)])
    p = asyncio.run(p_yes(be, lambda no_first: (ChatMessage(role="user", content="No or Yes" if no_first else "Yes or No"),)))
    assert p == pytest.approx(0.6)


# -- evolving norms --------------------------------------------------------------------------------------
def test_norm_schedule_selection_and_lag():
    from sim.experiments.evolving_norms.run import norm_at, norm_text, select
    from sim.experiments.evolving_norms.summary import tracking_lag

    sched = NormsConfig().schedule
    assert [norm_at(sched, g).name for g in range(5)] == ["loyalty_first"] * 3 + ["fairness_first"] * 2
    dominance = NormConfig(generation=0, name="c", cluster="confucian")
    assert "Confucian" in norm_text(dominance) and cluster_centre("confucian").persona in norm_text(dominance)
    # turnover 0.25 of 8 -> 2 replaced: the two least fit leave, the two fittest reproduce (best replaces worst)
    fit = np.array([0.1, 0.9, 0.5, 0.2, 0.8, 0.6, 0.4, 0.3])
    assert select(fit, 0.25, np.random.default_rng(0)) == [(0, 1), (3, 4)]
    assert select(fit, 0.0, np.random.default_rng(0)) == []
    # ties are broken at random, not by index
    picks = {tuple(select(np.zeros(6), 0.2, np.random.default_rng(s))) for s in range(20)}
    assert len(picks) > 3
    # lag: fit at the shift (g=2) 0.40, sd 0.2 -> target 0.50, first reached at g=4
    assert tracking_lag([0.6, 0.6, 0.40, 0.45, 0.52, 0.7], 0.2, 2, 6) == 2
    assert tracking_lag([0.6, 0.6, 0.40, 0.45, 0.46, 0.47], 0.2, 2, 6) is None
    assert tracking_lag([0.6, 0.6, 0.40, 0.45, 0.9], 0.2, 2, 4) is None  # reached only after the window


def test_norm_config_errors_are_one_line():
    with pytest.raises(ValueError, match="start with a norm at generation 0"):
        NormsConfig(schedule=[NormConfig(generation=1, name="x", principle="p")])
    with pytest.raises(ValueError, match="exactly one of principle or cluster"):
        NormsConfig(schedule=[NormConfig(generation=0, name="x")])
    with pytest.raises(ValueError, match="strictly increasing"):
        NormsConfig(schedule=[NormConfig(generation=0, name="a", principle="p"), NormConfig(generation=0, name="b", principle="q")])
    with pytest.raises(ValueError, match="study.kind"):
        get("society").study(kind="nope")


def test_mutation_keeps_lineage_and_scale():
    w = sample_population(PopulationSpec(size=2, clusters=("islamic",)), np.random.default_rng(0))[0]
    child = mutate(w, np.random.default_rng(1), 0.05)
    assert child.cluster == w.cluster and child.persona and set(child.values) == set(w.values)
    assert any(child.values[a] != w.values[a] for a in w.values)
    assert all(0 <= child.values[a] <= 5 for a in ("care", "fairness", "loyalty", "authority", "sanctity"))
    assert mutate(w, np.random.default_rng(1), 0.0).values == w.values


def test_norms_selection_follows_the_rater_on_a_scripted_backend(tmp_path):
    """A rater that likes answers of agents with high loyalty: selection under loyalty-first raises mean loyalty."""
    from sim.config import AgoraConfig, LLMConfig, PopulationConfig, SimConfig
    from sim.experiments import runner_for

    def reply(r):
        return f"A. loyalty={r.messages[0].content.count('loyalty')}"

    def scores(r):
        text = r.messages[-1].content
        if "Reply with Yes or No" in text or "Reply with No or Yes" in text:
            yes = 0.9 if "loyalty=1" in text else 0.1
            return [math.log(yes), math.log(1 - yes)]
        return [-0.7, -0.7]

    cfg = AgoraConfig(name="t", llm=LLMConfig(backend="scripted"), population=PopulationConfig(size=12),
                      sim=SimConfig(progress=False),
                      study=get("evolving_norms").study(norms=NormsConfig(generations=4, dilemmas=1, turnover=0.25, mutation=0.0)))
    s = runner_for(cfg)(cfg, tmp_path, ScriptedBackend(reply=reply, scores=scores))
    fit = [g["mean_fit"] for g in s["generations"]]
    assert fit[2] > fit[0]  # the loyal lineages took over under loyalty-first
    assert s["generations"][-1]["founders_alive"] < 12 and s["pluralism_change"]["founders_alive"] < 0
    assert len(s["shifts"]) == 1 and s["shifts"][0]["to"] == "fairness_first"
    assert (tmp_path / "report.md").exists() and (tmp_path / "norms_tracking.png").exists()
    answers = pl.read_parquet(tmp_path / "norms_answers.parquet")
    assert len(answers) == 4 * 12 and answers["fit"].is_between(0, 1).all()


# -- collective constitution ------------------------------------------------------------------------------
def test_clean_proposal_and_voter_weights():
    from sim.experiments.shared.collective import clean_proposal, voter_weights

    assert clean_proposal('  "Choose the answer that is kind. And more text') == "Choose the answer that is kind."
    assert clean_proposal("1. Choose the answer <|im_end|> that helps!") == "Choose the answer   that helps!".replace("   ", " ")
    assert clean_proposal("   ") is None
    star = nx.star_graph(4)  # hub 0 with degree 4, leaves with degree 1; mean degree 1.6
    w = voter_weights(star, "degree")
    assert w == pytest.approx([2.5, 0.625, 0.625, 0.625, 0.625]) and w.mean() == pytest.approx(1.0)
    assert voter_weights(star, "uniform").tolist() == [1.0] * 5
    assert voter_weights(star, "pagerank")[0] > voter_weights(star, "pagerank")[1]


def test_tally_weights_approvals_and_keeps_status_quo_on_ties():
    from sim.experiments.shared.collective import tally

    cands = [{"id": "old"}, {"id": "new1"}, {"id": "new2"}]
    approve = np.array([[1, 0, 1], [0, 1, 0], [0, 1, 0]], float)  # hub approves old+new2, leaves approve new1
    assert tally(cands, approve, np.array([1.0, 1.0, 1.0]), 1) == [1]  # unweighted: new1 (2 votes)
    assert tally(cands, approve, np.array([3.0, 1.0, 1.0]), 1) == [0]  # the hub's weight 3 beats two leaves
    assert tally(cands, np.ones((3, 3)), np.ones(3), 2) == [0, 1]  # a tie keeps the earlier (in-force) principle


def test_vote_elects_what_the_agents_approve():
    from scenarios.constitution import load_constitution
    from sim.experiments.shared.collective import vote

    people = sample_population(PopulationSpec(size=6, clusters=("protestant_europe", "confucian")), np.random.default_rng(0))

    def scores(r):  # approve a principle exactly when it mentions fairness
        yes = 0.9 if "fair" in r.messages[-1].content.split("<<<")[-1] else 0.1
        return [math.log(yes), math.log(1 - yes)]

    be = ScriptedBackend(reply=lambda r: "Choose the answer that is most fair to everyone. Extra.", scores=scores)
    current = load_constitution("harmlessness")
    ballot = asyncio.run(vote(people, nx.cycle_graph(6), current, be, CollectiveConfig(proposers=3, keep=2), seed=0,
                              generation=0))
    texts = [p.text for p in ballot.constitution.judge]
    assert texts[0] == "Choose the answer that is most fair to everyone."  # drafted (deduplicated: one candidate)
    assert len(ballot.candidates) == len(current.judge) + 1 and ballot.approvals.shape == (6, len(current.judge) + 1)
    assert ballot.constitution.tag == "harmlessness+collective@g0" and len(texts) == 2
    # every agent approves the one fair principle and none of the others (relative rule: above its own mean)
    fair = ["fair" in c["text"] for c in ballot.candidates]
    assert [c["approval"] for c in ballot.candidates] == [1.0 if f else 0.0 for f in fair]
    assert [c["mean_p_yes"] for c in ballot.candidates] == pytest.approx([0.9 if f else 0.1 for f in fair])
    assert (ballot.approvals == np.array(fair, float)).all()
    # the fair draft wins; the tie among the rest goes to the earlier candidate
    assert [c["id"] for c in ballot.candidates if c["elected"]] == [ballot.candidates[0]["id"], "g0_a1"]


# -- constitution ablation -----------------------------------------------------------------------------------
def test_shift_toward_hand_values():
    from sim.experiments.constitution_ablation.summary import shift_toward

    p_arm, p_ref = np.array([0.8, 0.3, 0.6, 0.5]), np.array([0.5, 0.5, 0.5, 0.5])
    delta = np.array([0.4, -0.2, 0.0, 0.1])  # pair 3 has no direction and is left out
    out = shift_toward(p_arm, p_ref, delta, seed=0, n_boot=1000)
    vals = [0.3, 0.2, 0.0]
    assert out.value == pytest.approx(np.mean(vals), abs=1e-6) and out.pairs == 3  # reported to 6 places
    assert out.d_z == pytest.approx(np.mean(vals) / np.std(vals, ddof=1), abs=1e-6)
    assert out.agreement == pytest.approx(np.mean([0.8, 0.7, 0.5]), abs=1e-6)
    assert "d_z_na" not in out.to_json() and "n" not in out.to_json()  # summary.json's keys as published


def test_ablation_moves_labels_toward_the_named_direction_on_a_scripted_judge(tmp_path):
    """A judge that follows the principle's words: under single_care it prefers the answer that says
    'care'; under none it follows position only. The care arm's diagonal shift must be positive."""
    from sim.config import AgoraConfig, LLMConfig, PopulationConfig, SimConfig, TokenBudget
    from sim.experiments import runner_for
    from sim.experiments.constitution_ablation.config import AblationConfig

    def reply(r):
        return "A. I care about them." if r.seed % 2 else "B. Rules are rules."

    def scores(r):
        text = r.messages[-1].content
        quoted = re.findall(r"<<<(.*?)>>>", text)  # the fenced answers are the last quotes
        if "Reply with Yes or No" in text or "Reply with No or Yes" in text:
            yes = 0.9 if "care" in quoted[-1] else 0.1
            return [math.log(yes), math.log(1 - yes)]
        if "more care" in text and "Answer (A)" in text:
            a, b = ("care" in q for q in quoted[-2:])
            return [0.0, -3.0] if a and not b else [-3.0, 0.0] if b and not a else [0.0, 0.0]
        return [0.0, -1.0]

    cfg = AgoraConfig(name="t", llm=LLMConfig(backend="scripted"), population=PopulationConfig(size=8),
                      sim=SimConfig(steps=2, group_size=2, progress=False, judge_reader="label",
                                    tokens=TokenBudget(stance=8, debate=8, critique=8, revision=8)),
                      study=get("constitution_ablation").study(
                          ablation=AblationConfig(constitutions=["none", "single_care"], train_reward=False)))
    s = runner_for(cfg)(cfg, tmp_path, ScriptedBackend(reply=reply, scores=scores))
    eff = s["effects"]["single_care"]["single_care"]
    assert eff["pairs"] > 0 and eff["value"] > 0.3 and eff["low"] > 0
    assert s["effects"]["none"]["single_care"]["value"] == 0.0
    table = pl.read_parquet(tmp_path / "ablation_pairs.parquet")
    assert {"p_a[none]", "p_a[single_care]", "delta[single_care]"} <= set(table.columns)
    assert (tmp_path / "report.md").exists() and (tmp_path / "ablation_shift.png").exists()
    assert (tmp_path / "preferences.parquet").exists()


# -- presets and launchers compose ---------------------------------------------------------------------------
@pytest.mark.parametrize("preset,kind", [("pluralism", "pluralism"), ("evolving_norms", "evolving_norms"),
                                         ("constitution_ablation", "constitution_ablation"), ("collective", "society"),
                                         ("human_distributions", "human_distributions")])
def test_presets_compose_to_checked_configs(preset, kind):
    cfg = compose(f"experiment={preset}", scripted=False)
    assert cfg.study.kind == kind and cfg.name == preset
    if preset == "collective":
        assert cfg.constitution.collective.enabled and cfg.alignment.generations == 2


def test_launcher_configs_compose():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import sim.cli  # noqa: F401

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        slurm = compose("config", overrides=["hydra/launcher=slurm", "experiment=pluralism"], return_hydra_config=True)
        local = compose("config", overrides=["hydra/launcher=slurm_local"], return_hydra_config=True)
        ray = {dev: compose("config", overrides=["hydra/launcher=ray_cluster", f"llm.device={dev}"], return_hydra_config=True)
               for dev in ("auto", "cuda")}
        joblib = compose("config", overrides=["hydra/launcher=joblib"], return_hydra_config=True)
    launcher = slurm.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.gpus_per_node == 1 and launcher.timeout_min == 120 and launcher.partition is None
    assert launcher.max_num_timeout == 3  # a run past the time limit is requeued and resumes
    made = instantiate(launcher)  # the real plugin class accepts every key we set
    assert type(made).__name__ == "SlurmLauncher"
    assert type(instantiate(local.hydra.launcher)).__name__ == "LocalLauncher"
    # a GPU per point only when the run asks for cuda; no object_store_memory (refused on a running cluster)
    for dev, gpus in (("auto", 0), ("cuda", 1)):
        made = instantiate(ray[dev].hydra.launcher)
        assert type(made).__name__ == "RayLauncher"
        assert OmegaConf.to_container(made.ray_cfg.remote, resolve=True) == {"num_gpus": gpus, "num_cpus": 1, "max_retries": 3}
        assert OmegaConf.to_container(made.ray_cfg.init, resolve=True) == {"address": os.environ.get("RAY_ADDRESS", "auto"),
                                                                                "object_store_memory": None}
    assert joblib.hydra.launcher._target_.endswith("JoblibLauncher")
