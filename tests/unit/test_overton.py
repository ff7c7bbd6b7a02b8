"""Overton coverage (sim/experiments/overton/, experiment=overton, the generations loop's overton_coverage) on a
scripted backend whose answers cover known subsets of the positions, and on hand-made tables."""

import math
import re

import numpy as np
import polars as pl
import pytest

from agents.llm.base import GenerateRequest, ScoreRequest
from agents.llm.scripted import ScriptedBackend
from alignment.metrics import bootstrap_interval
from scenarios.dilemma import Dilemma
from sim.experiments import runner_for
from sim.experiments.overton.summary import coverage_metrics, own_position_check
from sim.experiments.shared.coverage import answer_coverage, cluster_positions, coverage_pairs, policy_coverage
from sim.society.model import population
from tests.helpers import agora, compose

CLUSTERS = ["protestant_europe", "confucian", "islamic"]
MARK = {"protestant_europe": "[MARK-P]", "confucian": "[MARK-C]", "islamic": "[MARK-I]"}
FENCED = re.compile(r"<<<(.*?)>>>", re.DOTALL)
YES, NO = [math.log(0.9), math.log(0.1)], [math.log(0.1), math.log(0.9)]


def _marked_backend(cfg, sides: dict[str, str] | None = None) -> ScriptedBackend:
    """Voices and panel members write their cluster's marker; ``single`` writes P's, ``contextual`` P's and
    C's, the panel synthesis all three. The judge says yes iff a marker of the position is in the answer;
    a cluster's voices read as choosing ``sides[cluster]`` (default a)."""
    cluster_of = {w.persona: w.cluster for w in population(cfg)}
    sides = sides or {}

    def reply(r: GenerateRequest) -> str:
        system, user = r.messages[0].content, r.messages[-1].content
        if system in cluster_of:
            return f"A. {MARK[cluster_of[system]]} says so."
        if "merges the views of a panel" in system:
            return "A. " + " ".join(MARK.values())
        if "consider how people from each of these cultures" in user:
            return f"A. {MARK['protestant_europe']} {MARK['confucian']}"
        return f"A. {MARK['protestant_europe']} only."

    def scores(r: ScoreRequest) -> list[float]:
        user, system = r.messages[-1].content, r.messages[0].content
        if "represent or acknowledge this position" in user:
            answer, position = FENCED.findall(user)[-2:]  # the prompt names the fence first
            return YES if any(m in answer for m in MARK.values() if m in position) else NO
        if system in cluster_of and len(r.choices) == 2 and r.continuation:  # a voice's likelihood reading
            return [-1.0, -60.0] if sides.get(cluster_of[system], "a") == "a" else [-60.0, -1.0]
        return ScriptedBackend.default_scores(r)

    return ScriptedBackend(reply=reply, scores=scores, record=False)


def _cfg(*extra: str):
    return compose("experiment=overton", "population.size=6", f"population.clusters=[{','.join(CLUSTERS)}]",
                   "study.overton.dilemmas=3", "study.overton.panel_size=3", "calibration.enabled=false", *extra)


def test_measured_coverage_is_the_known_share_of_positions(tmp_path):
    cfg = _cfg()
    summary = runner_for(cfg)(cfg, tmp_path, _marked_backend(cfg))
    answers = pl.read_parquet(tmp_path / "overton_answers.parquet")
    for condition, share in (("single", 1 / 3), ("contextual", 2 / 3), ("panel", 1.0)):
        got = answers.filter(pl.col("condition") == condition)
        assert len(got) == 3 and got["coverage"].to_list() == pytest.approx([share] * 3), condition
        assert got["positions"].to_list() == [3, 3, 3]
        assert summary["conditions"][condition]["coverage"] == {"value": pytest.approx(share), "low": pytest.approx(share),
                                                                "high": pytest.approx(share)}
    assert summary["conditions"]["single"]["soft_coverage"]["value"] == pytest.approx((0.9 + 0.1 + 0.1) / 3)
    assert summary["differences"]["coverage_panel_minus_single"]["value"] == pytest.approx(2 / 3)
    assert summary["differences"]["coverage_contextual_minus_single"]["value"] == pytest.approx(1 / 3)
    # members write only their own marker: the judge's validity check is perfect
    assert summary["validity"]["own_position"]["value"] == 1.0 and summary["validity"]["other_positions"]["value"] == 0.0
    positions = pl.read_parquet(tmp_path / "overton_positions.parquet")
    assert len(positions) == 9 and set(positions["side"]) == {"a"} and positions["voices"].to_list() == [2] * 9
    pairs = pl.read_parquet(tmp_path / "overton_coverage.parquet")
    single = pairs.filter(pl.col("condition") == "single")
    assert single.filter(pl.col("covered"))["position"].unique().to_list() == ["protestant_europe"]
    assert len(pairs) == 3 * (3 + 3) * 3  # dilemmas × (three conditions + three members) × positions
    assert (tmp_path / "overton_coverage.png").is_file() and "Overton coverage" in (tmp_path / "report.md").read_text()


def test_merged_positions_are_the_sides_taken(tmp_path):
    cfg = _cfg("study.overton.merge=true")
    runner_for(cfg)(cfg, tmp_path, _marked_backend(cfg, sides={"islamic": "b"}))
    positions = pl.read_parquet(tmp_path / "overton_positions.parquet")
    assert positions["label"].to_list() == ["option a", "option b"] * 3
    assert positions["clusters"].to_list()[:2] == [["protestant_europe", "confucian"], ["islamic"]]
    answers = pl.read_parquet(tmp_path / "overton_answers.parquet")
    cov = dict(answers.group_by("condition").agg(pl.col("coverage").mean()).iter_rows())
    # single (P) and contextual (P, C) cover side a only; the panel (P, C, I) covers both
    assert cov["single"] == cov["contextual"] == pytest.approx(0.5) and cov["panel"] == pytest.approx(1.0)


D = {k: Dilemma(id=k, situation="s", action_a="act a", action_b="act b.") for k in ("d1", "d2")}


def test_positions_side_representative_and_merge_by_hand():
    voices = pl.DataFrame({"dilemma_id": ["d1"] * 5, "agent_id": [3, 1, 2, 4, 5], "cluster": ["x", "x", "y", "y", "z"],
                           "p_a": [0.9, 0.6, 0.2, 0.45, 0.5], "text": ["x3", "x1", "y2", "y4", None]})
    pos = cluster_positions(voices, D)
    assert [(p["label"], p["side"], p["representatives"]) for p in pos] == [("x", "a", [3]), ("y", "b", [2]), ("z", "b", [5])]
    assert pos[0]["p_side"] == pytest.approx(0.75) and pos[1]["p_side"] == pytest.approx(1 - 0.325)
    assert pos[0]["text"] == "Option A: act a. Reason given: x3"
    assert pos[2]["text"] == "Option B: act b."  # a mean of exactly ½ is side b (pds_entropy's rule); no reason: the side
    merged = cluster_positions(voices, D, merge=True)
    assert [(p["label"], p["clusters"], p["voices"]) for p in merged] == [("option a", ["x"], 2), ("option b", ["y", "z"], 3)]
    assert merged[1]["p_side"] == pytest.approx((0.675 * 2 + 0.5) / 3) and merged[1]["text"].endswith("Reason given: y2")
    tie = pl.DataFrame({"dilemma_id": ["d1", "d1"], "agent_id": [7, 6], "cluster": ["x", "x"], "p_a": [0.8, 0.8],
                        "text": ["seven", "six"]})
    assert cluster_positions(tie, D)[0]["representatives"] == [6]  # equally sure: the lower agent id


def _answers_with(coverage: dict[tuple[str, str], float]) -> pl.DataFrame:
    rows = [{"dilemma_id": d, "condition": c, "coverage": v, "soft_coverage": v / 2} for (c, d), v in coverage.items()]
    return pl.DataFrame(rows)


def test_coverage_pairs_and_per_answer_shares():
    answers = [{"dilemma_id": "d1", "condition": "single", "text": "t"}, {"dilemma_id": "d2", "condition": "panel", "text": "u"},
               {"dilemma_id": "d1", "condition": "member", "cluster": "y", "agent_id": 2, "text": "v"}]
    positions = [{"dilemma_id": "d1", "position_id": "d1:x", "label": "x", "clusters": ["x"], "representatives": [1]},
                 {"dilemma_id": "d1", "position_id": "d1:y", "label": "y", "clusters": ["y"], "representatives": [3]},
                 {"dilemma_id": "d2", "position_id": "d2:x", "label": "x", "clusters": ["x"], "representatives": [1]}]
    pairs = coverage_pairs(answers, positions, [0.8, 0.5, 0.3, 0.2, 0.7])
    assert pairs["answer"].to_list() == [0, 0, 1, 2, 2] and pairs["covered"].to_list() == [True, False, False, False, True]
    assert pairs["own"].to_list() == [None, None, None, False, True]
    per = answer_coverage(pairs, 4)  # answer 3 has no positions: null
    assert per["coverage"].to_list() == [0.5, 0.0, 0.5, None]
    assert per["soft_coverage"].to_list()[:3] == pytest.approx([0.65, 0.3, 0.45])
    check = own_position_check(pairs.filter(pl.col("condition") == "member"))
    assert (check.own_position.value, check.own_position.n, check.other_positions.value) == (1.0, 1, 0.0)
    with pytest.raises(ValueError, match=r"1 coverage readings for 5 \(answer, position\) pairs"):
        coverage_pairs(answers, positions, [0.5])


def test_the_validity_check_leaves_out_a_member_judged_against_its_own_words():
    """A member who is also the voice its cluster's position quotes would be judged against its own
    answer; those readings are counted and left out of the check, the rest kept."""
    answers = [{"dilemma_id": "d1", "condition": "member", "cluster": "y", "agent_id": 3, "text": "v"},
               {"dilemma_id": "d1", "condition": "member", "cluster": "y", "agent_id": 4, "text": "w"}]
    positions = [{"dilemma_id": "d1", "position_id": "d1:x", "label": "x", "clusters": ["x"], "representatives": [1]},
                 {"dilemma_id": "d1", "position_id": "d1:y", "label": "y", "clusters": ["y"], "representatives": [3]}]
    pairs = coverage_pairs(answers, positions, [0.1, 0.9, 0.2, 0.4])
    assert pairs["by_representative"].to_list() == [False, True, False, False]
    check = own_position_check(pairs)
    assert check.self_readings_excluded == 1
    assert (check.own_position.n, check.own_position.value) == (1, 0.0)  # agent 4 on y: P 0.4
    assert (check.other_positions.n, check.other_positions.mean_p) == (2, pytest.approx(0.15))


def test_coverage_metrics_intervals_and_paired_differences_by_hand():
    single = {"d1": 0.0, "d2": 1 / 3, "d3": 1 / 3}
    panel = {"d1": 1.0, "d2": 1.0, "d3": 1.0}
    table = _answers_with({("single", k): v for k, v in single.items()} | {("panel", k): v for k, v in panel.items()})
    # two members on d1 (mean 0.5), one on d2: a condition's per-dilemma value is the mean over its answers
    table = pl.concat([table, pl.DataFrame({"dilemma_id": ["d1", "d1", "d2"], "condition": ["member"] * 3,
                                            "coverage": [0.0, 1.0, 1.0], "soft_coverage": [0.0, 0.5, 0.5]})])
    conditions, differences = coverage_metrics(table, ("single", "panel", "member"), seed=3, n_boot=500, compared=("panel",))
    assert conditions["single"].coverage.to_json() == pytest.approx(
        dict(zip(("value", "low", "high"), bootstrap_interval(list(single.values()), n_resamples=500, seed=3), strict=True)),
        abs=1e-6)
    assert conditions["member"].coverage.value == pytest.approx(0.75) and conditions["member"].dilemmas == 2
    assert conditions["member"].answers == 3
    d = differences["coverage_panel_minus_single"]
    assert d.value == pytest.approx(np.mean([1, 2 / 3, 2 / 3])) and d.n == 3
    assert d.permutation_p == pytest.approx(0.25)  # exact sign flips: 2 of 8 as extreme, all positive
    assert differences["soft_coverage_panel_minus_single"].value == pytest.approx(np.mean([1, 2 / 3, 2 / 3]) / 2)
    assert set(differences) == {"coverage_panel_minus_single", "soft_coverage_panel_minus_single"}


def test_policy_coverage_reads_the_policy_groups_first_answers():
    import asyncio

    stances = pl.DataFrame({
        "dilemma_id": ["d1"] * 4 + ["d2"] * 4, "agent_id": [0, 1, 2, 3] * 2, "cluster": ["x", "x", "y", "y"] * 2,
        "phase": ["initial"] * 8, "step": [0] * 4 + [1] * 4, "p_a": [0.9, 0.8, 0.05, 0.1] * 2,
        "reason": ["[MARK-P] x0", "[MARK-P] x1", "[MARK-C] y2", "[MARK-C] [MARK-P] y3"] * 2})

    def scores(r: ScoreRequest) -> list[float]:
        answer, position = FENCED.findall(r.messages[-1].content)[-2:]
        return YES if any(m in answer for m in MARK.values() if m in position) else NO

    be = ScriptedBackend(scores=scores)
    # positions: x from agent 0 ([MARK-P]), y from agent 2 (the surest of y). Agent 0 covers x only (1/2);
    # agent 3 names both markers (1): the mean per dilemma is 3/4
    assert asyncio.run(policy_coverage(be, stances, [0, 3], D)) == pytest.approx(0.75)
    assert asyncio.run(policy_coverage(be, stances, [0], D)) == pytest.approx(0.5)
    assert math.isnan(asyncio.run(policy_coverage(be, stances, [9], D)))
    # the positions come from the other agents: agent 2, the surest of y, would otherwise cover itself
    own = pl.DataFrame({"dilemma_id": ["d1"] * 3, "agent_id": [0, 1, 2], "cluster": ["x", "y", "y"], "phase": ["initial"] * 3,
                        "step": [0] * 3, "p_a": [0.9, 0.1, 0.05], "reason": ["[MARK-P]", "[MARK-C]", "[MARK-I]"]})
    assert asyncio.run(policy_coverage(be, own, [2], D)) == 0.0
    assert asyncio.run(policy_coverage(be, own, [0, 1, 2], D)) == pytest.approx((1 / 2 + 0 + 1 / 2) / 3)  # no control: all


def test_generations_loop_records_overton_coverage_beside_pds_entropy(tmp_path, monkeypatch):
    """One scripted generation (its reward model stubbed: the column is what is tested): the column sits
    beside pds_entropy and equals the coverage recomputed from the run's stances."""
    import asyncio

    import sim.experiments.society.generations as gen
    from scenarios.dilemma import load_dilemmas

    rm = {"eval": {"accuracy": 0.5, "ece": 0.1, "log_loss": 0.7}, "pairs_per_s": 1.0}
    monkeypatch.setattr(gen.launch, "train", lambda *a, **k: rm)
    cfg = compose("experiment=tiny", "alignment.generations=1", "calibration.enabled=false")
    summary = runner_for(cfg)(cfg, tmp_path, ScriptedBackend(record=False))
    metrics = pl.read_parquet(tmp_path / "metrics_generations.parquet")
    cols = metrics.columns
    assert cols.index("overton_coverage") == cols.index("pds_entropy") + 1
    value = metrics["overton_coverage"][0]
    assert 0.0 <= value <= 1.0 and summary["headline"]["last_generation[overton_coverage]"] == value
    stances = pl.read_parquet(tmp_path / "stances.parquet")
    dilemmas = {d.id: d for d in load_dilemmas(cfg.scenario.dilemmas)}
    again = asyncio.run(policy_coverage(ScriptedBackend(), stances, summary["policy_group"], dilemmas))
    assert value == pytest.approx(again)


@pytest.mark.parametrize("override, message", [
    ("study.overton.dilemmas=1", "dilemmas must be >= 2"), ("study.overton.voices=0", "voices >= 1"),
    ("study.overton.panel_size=1", "panel_size >= 2"), ("study.overton.answer_tokens=0", "answer_tokens"),
    ("study.overton.no_such_key=1", "no_such_key")])
def test_bad_overton_settings_fail_in_one_line(override, message):
    with pytest.raises(Exception, match=message):
        compose("experiment=overton", override)


def test_bad_overton_setting_exits_2_on_the_command_line(tmp_path):
    r = agora("experiment=overton", "llm=scripted", "study.overton.voices=0", f"hydra.run.dir={tmp_path}")
    assert r.returncode == 2 and "voices" in r.stderr and "Traceback" not in r.stderr


def test_overton_settings_enter_only_overton_run_ids():
    """study.overton exists only in an overton run's config (its Hydra option), so no other run's id can carry it
    (every row carries the id: their bytes would change); in an overton run each setting enters the id."""
    from sim.run.lifecycle import run_id_for

    with pytest.raises(Exception, match="Could not override 'study.overton.voices'"):
        compose("experiment=tiny", "study.overton.voices=5")
    assert run_id_for(_cfg()) != run_id_for(_cfg("study.overton.voices=1"))
    assert run_id_for(compose("experiment=pluralism")) != run_id_for(compose("experiment=pluralism", "study.pluralism.dilemmas=5"))
