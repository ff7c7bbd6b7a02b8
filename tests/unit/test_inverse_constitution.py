"""experiment=inverse_constitution: the selection and agreement arithmetic on known matrices, the principle
bank, bad inputs, resume; and the planted-principle test — judges of one cluster follow one principle, those
of another cluster another, and the per-cluster inverse constitutions must name each cluster's own."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import numpy as np
import polars as pl
import pytest

from agents import prompts
from agents.llm.base import GenerateRequest, ScoreRequest
from agents.llm.scripted import ScriptedBackend, _unit
from alignment.inverse import agreement, explain_scopes, greedy_select, list_vote, paired_difference
from scenarios.errors import InputError
from scenarios.principle_bank import DEFAULT_CCAI, ccai_principle, load_ccai, principle_bank, resolve_path
from sim.experiments import runner_for
from sim.experiments.inverse_constitution.run import parse_proposal, principles_of, read_preferences, split_pairs
from tests.helpers import compose

# -- the arithmetic on known matrices -------------------------------------------------------------------
LABEL = np.array([0.9, 0.8, 0.2, 0.1, 0.5, 0.7])  # sides + + − − tie +


def test_agreement_leaves_label_ties_out_and_counts_undecided_votes_as_misses():
    pred = np.array([0.6, 0.5, 0.4, 0.9, 0.3, 0.2])  # hit, undecided, hit, miss, (tie label), miss
    a = agreement(pred, LABEL)
    assert (a["hits"], a["n"], a["label_ties"], a["undecided"]) == (2, 5, 1, 1)
    assert a["value"] == pytest.approx(0.4)
    # Wilson 95% for 2/5: centre (2 + 1.92)/(5 + 3.84), half-width 1.96·sqrt(0.4·0.6/5 + 1.96²/100)/(1 + 3.84/5)
    z = 1.959964
    centre, half = (2 + z * z / 2) / (5 + z * z), z * np.sqrt(0.4 * 0.6 / 5 + z * z / 100) / (1 + z * z / 5)
    assert a["low"] == pytest.approx(centre - half, abs=1e-5) and a["high"] == pytest.approx(centre + half, abs=1e-5)


def test_a_list_votes_by_the_mean_of_its_principles():
    scores = np.array([[1.0, 0.0], [0.7, 0.6], [0.1, 0.2]])
    assert list_vote(scores, [0, 1]).tolist() == pytest.approx([0.85, 0.3])
    assert list_vote(scores, [0, 2]).tolist() == pytest.approx([0.55, 0.1])
    assert list_vote(scores, []).tolist() == [0.5, 0.5]


def test_greedy_selection_picks_the_best_then_the_best_complement_and_stops_when_nothing_helps():
    label = np.array([0.9, 0.9, 0.9, 0.1, 0.1, 0.1])
    scores = np.array([
        [0.6, 0.6, 0.6, 0.6, 0.6, 0.6],  # always A: 3/6
        [0.9, 0.9, 0.5, 0.5, 0.1, 0.1],  # sure on 4 (right), undecided on 2: 4/6
        [0.6, 0.6, 0.7, 0.2, 0.6, 0.6],  # right on 4, wrong on 2 (weakly): 4/6, ranks after row 1 (tie → earlier)
        [0.5, 0.5, 0.5, 0.5, 0.5, 0.5],  # no view at all: 0/6
    ])
    steps = greedy_select(scores, label, max_k=3)
    # row 1 first (4/6, tie with row 2 goes to the earlier row); adding row 2 fixes the two undecided pairs
    # ((0.5+0.7)/2 = 0.6 → A ✓, (0.5+0.2)/2 → B ✓) without breaking row 1's sure ones: 6/6; then nothing can add
    assert [(s["index"], s["hits"], s["n"]) for s in steps] == [(1, 4, 6), (2, 6, 6)]
    assert [s["index"] for s in greedy_select(scores, label, max_k=1)] == [1]
    assert greedy_select(scores, np.full(6, 0.5), max_k=3) == []  # every label a tie: nothing to explain


def test_explain_scopes_learns_per_group_and_scores_the_baselines_on_held_out_pairs():
    # group g1's labels follow row 0, g2's follow row 1; row 2 is the "given" constitution, row 3 "none"
    rng = np.random.default_rng(0)
    n = 80
    groups = ["g1"] * 40 + ["g2"] * 40
    r0, r1 = rng.uniform(0.05, 0.95, n), rng.uniform(0.05, 0.95, n)
    label = np.where(np.arange(n) < 40, r0, r1)
    scores = np.vstack([r0, r1, 1 - r0, np.full(n, 0.5)])
    held = np.arange(n) % 4 == 0
    out = explain_scopes(scores, label, groups, held, {"candidate": [0, 1], "given": [2], "none": [3]}, 2, seed=0, n_boot=200)
    assert [s["row"] for s in out["g1"]["steps"]] == [0] and [s["row"] for s in out["g2"]["steps"]] == [1]
    for g in ("g1", "g2"):
        m = out[g]["methods"]
        assert m["learned"]["held_out"]["value"] == 1.0 and m["learned"]["held_out"]["n"] == 10
        assert m["no_principle"]["held_out"]["value"] == 0.0 and m["no_principle"]["held_out"]["undecided"] == 10
        assert out[g]["learned_minus"]["no_principle"]["value"] == 1.0
    assert out["g1"]["methods"]["given_constitution"]["held_out"]["value"] == 0.0  # the exact opposite of g1's rule
    assert out["society"]["pairs"] == {"train": 60, "held_out": 20}


def test_paired_difference_is_per_pair_hits_minus_hits():
    label = np.array([0.9, 0.9, 0.1, 0.1])
    d = paired_difference(np.array([0.8, 0.8, 0.2, 0.8]), np.array([0.2, 0.8, 0.2, 0.2]), label, seed=0, n_boot=200)
    assert d["value"] == 0.0 and d["n"] == 4  # +1 on pair 0, −1 on pair 3


# -- proposals and the bank ------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "parsed"), [
    ("Choose the answer that puts kindness first. It is kinder.", "Choose the answer that puts kindness first."),
    ("Principle: select the response which respects elders", "Choose the answer that respects elders."),
    ("A. Because it matters (scripted 0.123).", None),
    ("Choose the answer that.", None),
    ("", None),
])
def test_a_proposal_reply_is_a_principle_or_none(raw, parsed):
    assert parse_proposal(raw) == parsed


def test_unparsed_and_duplicate_proposals_are_counted_and_baselines_keep_their_roles():
    from scenarios.constitution import load_constitution

    raw = [{"raw": "Choose the answer that is kind."}, {"raw": "choose the answer that is KIND!"}, {"raw": "no idea"}]
    bank = [{"id": "harmlessness:less_harmful", "text": "Choose the answer that is less harmful, unethical or dangerous.",
             "source": "constitution:harmlessness"}]
    principles, logged = principles_of(raw, bank, load_constitution("harmlessness"), load_constitution("none"))
    assert [p["status"] for p in logged] == ["parsed", "duplicate", "unparsed"]
    assert logged[2]["principle"] is None
    by_id = {p["id"]: p for p in principles}
    assert by_id["gen:0"]["candidate"] and not by_id["gen:0"]["given"]
    shared = by_id["harmlessness:less_harmful"]  # in the bank and in the given constitution: scored once, both roles
    assert shared["candidate"] and shared["given"]
    assert by_id["none:none"]["none"] and not by_id["none:none"]["candidate"]
    assert len(principles) == 1 + 1 + 5 + 1  # gen:0, the shared one, harmlessness's other five, none


def test_the_bank_draws_bundled_and_ccai_principles_and_records_an_absent_ccai_file(tmp_path):
    csv = tmp_path / "clean_comments.csv"
    csv.write_text("comment-id,comment-body\n" + "".join(f"{i},The AI should do thing {i}.\n" for i in range(30)))
    bank, rec = principle_bank(str(csv), 8, np.random.default_rng(0))
    assert len(bank) == 8 and rec["drawn_ccai"] == 4 and rec["ccai_statements"] == 30
    assert sum(p["source"] == "ccai" for p in bank) == 4
    assert bank == principle_bank(str(csv), 8, np.random.default_rng(0))[0]  # seeded
    assert {p["text"] for p in bank if p["source"] == "ccai"} <= {ccai_principle(f"The AI should do thing {i}.") for i in range(30)}
    assert resolve_path("")[0] is None
    (tmp_path / "bad.csv").write_text("id,text\n1,x\n")
    with pytest.raises(InputError, match="missing CCAI column"):
        load_ccai(tmp_path / "bad.csv")


# -- bad inputs: one line, exit 2 ------------------------------------------------------------------------
def test_a_ccai_folder_is_read_for_its_clean_comments_and_a_set_path_that_is_not_there_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "clean_comments.csv").write_text("comment-id,comment-body\n1,The AI should be kind.\n")
    assert resolve_path(str(tmp_path))[0] == (tmp_path / "clean_comments.csv").resolve()
    with pytest.raises(InputError, match=r"ccai_path=.*missing.csv: no such file"):
        principle_bank(str(tmp_path / "missing.csv"), 8, np.random.default_rng(0))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no such file"):  # a folder without clean_comments.csv
        principle_bank(str(tmp_path / "empty"), 8, np.random.default_rng(0))
    # only the default path may be absent (a clone without ../shared): the bundled constitutions alone, recorded
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("scenarios.principle_bank.CHECKOUT", tmp_path / "checkout")
    absent, rec = principle_bank(DEFAULT_CCAI, 8, np.random.default_rng(0))
    assert len(absent) == 8 and rec["drawn_ccai"] == 0 and rec["ccai"].startswith("absent")
    assert all(p["source"].startswith("constitution:") for p in absent)


def test_a_moderated_column_keeps_only_the_statements_moderators_accepted(tmp_path):
    # Pol.is comments.csv: moderated 1 accepted, 0 unmoderated, -1 rejected; clean_comments.csv holds the 1s only
    csv = tmp_path / "comments.csv"
    csv.write_text("comment-id,moderated,comment-body\n1,1,The AI should be kind.\n2,-1,Spam spam.\n"
                   "3,0,Not yet read.\n4,1,The AI should be fair.\n")
    kept, dropped = load_ccai(csv)
    assert [p["id"] for p in kept] == ["ccai:1", "ccai:4"] and dropped == 2
    assert principle_bank(str(csv), 8, np.random.default_rng(0))[1]["ccai_not_accepted"] == 2
    csv.write_text("comment-id,moderated,comment-body\n1,yes,The AI should be kind.\n")
    with pytest.raises(InputError, match="moderated must be 1, 0 or -1"):
        load_ccai(csv)


def test_bad_preference_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="no preferences.parquet here"):
        read_preferences(str(tmp_path))
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="not a readable parquet"):
        read_preferences(str(tmp_path / "x.parquet"))
    pl.DataFrame({"prompt": ["p"], "p_a": [0.3]}).write_parquet(tmp_path / "y.parquet")
    with pytest.raises(InputError, match="missing column"):
        read_preferences(str(tmp_path / "y.parquet"))


def test_the_cli_refuses_a_bad_path_in_one_line_with_exit_2(tmp_path):
    from tests.helpers import agora

    out = agora("experiment=inverse_constitution", "llm=scripted", f"study.inverse.preferences={tmp_path}/nope",
                f"hydra.run.dir={tmp_path}/run", timeout=120)
    assert out.returncode == 2, out.stderr
    assert "no preferences.parquet here" in out.stderr and "Traceback" not in out.stderr


def test_the_cli_refuses_null_judge_clusters_in_one_line_before_any_work(no_candidate_run, tmp_path):
    from tests.helpers import agora

    bad = tmp_path / "nulls.parquet"
    pl.read_parquet(no_candidate_run[1] / "preferences.parquet").with_columns(
        pl.lit(None, pl.String).alias("judge_cluster")).write_parquet(bad)
    out = agora("experiment=inverse_constitution", "llm=scripted", f"study.inverse.preferences={bad}",
                f"hydra.run.dir={tmp_path}/run", timeout=120)
    assert out.returncode == 2, out.stderr
    assert "column judge_cluster has" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "checkpoint.d").exists()


def test_the_split_is_seeded_within_each_cluster():
    prefs = pl.DataFrame({"pref_id": [f"p{i}" for i in range(20)], "dilemma_id": ["d"] * 20,
                          "judge_cluster": ["a"] * 10 + ["b"] * 10})
    held = split_pairs(prefs, 0.4, "pair", seed=3)
    assert held[:10].sum() == 4 and held[10:].sum() == 4
    assert (held == split_pairs(prefs, 0.4, "pair", seed=3)).all() and (held != split_pairs(prefs, 0.4, "pair", seed=4)).any()
    with pytest.raises(InputError, match="two or more dilemmas"):
        split_pairs(prefs, 0.4, "dilemma", seed=3)


# -- a scope with nothing to learn, and bad preference rows ----------------------------------------------
NO_CANDIDATES = ("experiment=inverse_constitution", "population.size=8", "sim.steps=1", "study.inverse.bank_size=0",
                 "study.inverse.proposals=0")


@pytest.fixture(scope="module")
def no_candidate_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nocand")
    cfg = compose(*NO_CANDIDATES)
    return cfg, out, runner_for(cfg)(cfg, out, ScriptedBackend())


def with_preferences(cfg, path):
    return dataclasses.replace(cfg, study=dataclasses.replace(cfg.study, inverse=dataclasses.replace(
        cfg.study.inverse, preferences=str(path))))


def test_no_candidate_is_reported_as_na_not_as_a_list_that_scores_zero(no_candidate_run):
    _, out, summary = no_candidate_run
    for scope, v in summary["scopes"].items():
        assert v["learned_na"] == "no candidate principle" and v["learned_list"] == [], scope
        assert v["held_out"]["learned"]["value"] is None and v["held_out"]["learned"]["low"] is None
        assert all(d["value"] is None and d["low"] is None for d in v["learned_minus"].values())
    assert summary["scopes"]["society"]["held_out"]["no_principle"]["value"] is not None  # the baselines are still scored
    assert summary["headline"]["learned[society]"]["value"] is None
    learned = pl.read_parquet(out / "inverse_lists.parquet").filter(pl.col("method") == "learned")
    assert set(learned["na_reason"]) == {"no candidate principle"} and learned["held_agreement"].null_count() == learned.height
    assert "n/a (no candidate principle)" in (out / "report.md").read_text()


def test_a_scope_whose_training_labels_are_all_ties_learns_no_list():
    # scope t: its training pair is a tie; scope d: 4 decided training pairs (the minimum), 4 held out
    label = np.array([0.5, 0.5, 0.9, 0.9, 0.1, 0.1, 0.9, 0.9, 0.1, 0.1])
    scores = np.vstack([[0.9, 0.1, 0.8, 0.8, 0.2, 0.2, 0.8, 0.8, 0.2, 0.2], np.full(10, 0.5)])
    held = np.array([False, True] * 5)
    out = explain_scopes(scores, label, ["t"] * 2 + ["d"] * 8, held,
                         {"candidate": [0], "given": [0], "none": [1]}, 2, seed=0, n_boot=50)
    assert out["t"]["na"].startswith("0 decided training pair(s), fewer than 4")
    assert out["t"]["methods"]["learned"]["held_out"]["value"] is None
    assert out["t"]["learned_minus"]["no_principle"]["value"] is None
    assert out["t"]["methods"]["learned"]["held_out"]["na"] == out["t"]["na"]
    assert out["d"]["na"] is None and out["d"]["methods"]["learned"]["held_out"]["value"] == 1.0


@pytest.mark.parametrize("column", ["judge_cluster", "prompt", "response_a", "response_b", "dilemma_id", "p_a", "pref_id"])
def test_nulls_in_a_column_the_method_reads_stop_before_any_model_work(no_candidate_run, tmp_path, column):
    cfg, out, _ = no_candidate_run
    prefs = pl.read_parquet(out / "preferences.parquet")
    bad = tmp_path / "bad.parquet"
    prefs.with_columns(pl.when(pl.int_range(pl.len()) < 2).then(None).otherwise(pl.col(column)).alias(column)).write_parquet(bad)
    with pytest.raises(InputError, match=rf"bad.parquet: column {column} has 2 null value\(s\)"):
        runner_for(cfg)(with_preferences(cfg, bad), tmp_path / "run", ScriptedBackend())
    assert not (tmp_path / "run").exists()  # no gate, no checkpoint


def test_a_judge_cluster_named_society_is_refused(no_candidate_run, tmp_path):
    cfg, out, _ = no_candidate_run
    bad = tmp_path / "society.parquet"
    pl.read_parquet(out / "preferences.parquet").with_columns(pl.lit("society").alias("judge_cluster")).write_parquet(bad)
    with pytest.raises(InputError, match="judge_cluster is named 'society'"):
        runner_for(cfg)(with_preferences(cfg, bad), tmp_path / "run", ScriptedBackend())


def test_an_absent_default_ccai_bank_is_logged(no_candidate_run, tmp_path, monkeypatch, caplog):
    cfg, out, _ = no_candidate_run
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("scenarios.principle_bank.CHECKOUT", tmp_path / "checkout")
    with caplog.at_level("WARNING"):
        summary = runner_for(cfg)(with_preferences(cfg, out), tmp_path / "run", ScriptedBackend())
    assert summary["bank"]["ccai"].startswith("absent") and "CCAI statements not found" in caplog.text


# -- the planted-principle test --------------------------------------------------------------------------
# Every answer the scripted society writes says how much it weighs kindness and fairness (two seeded numbers).
# A judge of cluster KIND_CLUSTER prefers the kinder answer, one of FAIR_CLUSTER the fairer one, whatever
# principle it was given. A persona-free judge follows the two planted principles when it is given them, and
# has no view (a stable hash) under any other. The scripted proposer names the principle of the larger gap.
KIND_CLUSTER, FAIR_CLUSTER = "confucian", "islamic"
PLANTED = {"kindness": "Choose the answer that puts kindness first.",
           "fairness": "Choose the answer that puts fairness first."}
WEIGHS = re.compile(r"kindness at (0\.\d+) and fairness at (0\.\d+)")
PLANTED_RUN = ("experiment=inverse_constitution", "population.size=18", f"population.clusters=[{KIND_CLUSTER},{FAIR_CLUSTER}]",
               "population.weights=[2,1]", "sim.steps=4", "scenario.per_step=2", "calibration.enabled=false",
               "study.inverse.proposals=12", "study.inverse.bank_size=10")


def weighs(text: str) -> tuple[float, float] | None:
    m = WEIGHS.search(text)
    return (float(m[1]), float(m[2])) if m else None


def planted_backend(cfg) -> ScriptedBackend:
    from sim.society.model import population

    follows = {w.persona: {KIND_CLUSTER: "kindness", FAIR_CLUSTER: "fairness"}[w.cluster] for w in population(cfg)}
    neutral = prompts.system_prompt(None, prompts.JUDGE_ROLE).content

    def reply(r: GenerateRequest) -> str:
        if r.messages[0].content == prompts.EXPLAIN_ROLE:
            chosen, rejected = (weighs(part) for part in r.messages[-1].content.split("Rejected answer:"))
            gaps = {"kindness": chosen[0] - rejected[0], "fairness": chosen[1] - rejected[1]}
            best = max(gaps, key=gaps.get)
            return f"{PLANTED[best]} It explains the choice." if gaps[best] > 0 else "I cannot tell."
        u = [_unit(f"{r.messages[-1].content}|{r.seed}|{k}") for k in range(2)]
        return f"A. I weigh kindness at {u[0]:.3f} and fairness at {u[1]:.3f} in this case."

    def scores(r: ScoreRequest) -> list[float]:
        system, user = r.messages[0].content, r.messages[-1].content
        rule = None
        if r.continuation and system.endswith(prompts.JUDGE_ROLE):
            persona = system[: -len(prompts.JUDGE_ROLE)].strip()
            rule = follows.get(persona) if system != neutral else next((k for k, t in PLANTED.items() if t in user), None)
        parsed = [weighs(c) for c in r.choices]
        if rule is None or None in parsed:
            return ScriptedBackend.default_scores(r)
        axis = 0 if rule == "kindness" else 1
        return [(-2.0 + w[axis]) * len(c) for c, w in zip(r.choices, parsed, strict=True)]  # per character: −2 + weight

    return ScriptedBackend(reply=reply, scores=scores, record=False)


def test_per_cluster_inverse_constitutions_recover_each_clusters_planted_principle(tmp_path):
    cfg = compose(*PLANTED_RUN)
    summary = runner_for(cfg)(cfg, tmp_path, planted_backend(cfg))
    scopes = summary["scopes"]
    assert set(scopes) == {"society", KIND_CLUSTER, FAIR_CLUSTER}
    for cluster, principle in ((KIND_CLUSTER, PLANTED["kindness"]), (FAIR_CLUSTER, PLANTED["fairness"])):
        learned = [p["text"] for p in scopes[cluster]["learned_list"]]
        assert learned == [principle], (cluster, learned)  # found, and nothing else helps once it is in
        held = scopes[cluster]["held_out"]
        assert held["learned"]["value"] == 1.0 and held["learned"]["n"] >= 10
        assert held["learned"]["low"] > max(held["given_constitution"]["high"], held["no_principle"]["high"])
        assert scopes[cluster]["learned_minus"]["no_principle"]["low"] > 0
    # the whole society's list is the majority's principle (2 of 3 judges): one list cannot follow both
    assert scopes["society"]["learned_list"][0]["text"] == PLANTED["kindness"]
    assert summary["proposals"]["parsed"] == 2 and summary["proposals"]["duplicate"] + summary["proposals"]["unparsed"] == 10
    lists = pl.read_parquet(tmp_path / "inverse_lists.parquet")
    assert lists.height == 3 * 3 and set(lists["method"]) == {"learned", "given_constitution", "no_principle"}
    cands = pl.read_parquet(tmp_path / "inverse_candidates.parquet")
    assert cands.filter(pl.col("selected_rank") == 1).height == 3
    assert (tmp_path / "inverse_agreement.png").is_file() and "Learned lists" in (tmp_path / "report.md").read_text()

    # the same preferences analysed from the run folder (study.inverse.preferences): the same lists
    again = tmp_path / "again"
    cfg2 = dataclasses.replace(cfg, study=dataclasses.replace(cfg.study, inverse=dataclasses.replace(
        cfg.study.inverse, preferences=str(tmp_path))))
    s2 = runner_for(cfg2)(cfg2, again, planted_backend(cfg))
    assert {k: v["learned_list"] for k, v in s2["scopes"].items()} == {k: v["learned_list"] for k, v in scopes.items()}
    assert s2["given_constitution"].startswith("harmlessness (named by the preferences)")
    assert not (again / "preferences.parquet").exists()  # it analyses, it does not copy


def test_a_stopped_inverse_run_resumes_to_the_same_outputs(tmp_path, monkeypatch):
    from tests.unit.test_resume import _outputs, _stop_and_resume, _with_crash

    cfg = compose("experiment=inverse_constitution", "population.size=8", "sim.steps=1", "study.inverse.bank_size=2",
                  "study.inverse.proposals=2")
    writes = _with_crash(monkeypatch, None)
    ref = runner_for(cfg)(cfg, tmp_path / "ref", ScriptedBackend())
    total = writes[0]
    monkeypatch.undo()
    assert total >= 5 and _outputs(tmp_path / "ref")
    for n in (1, 2, 3, total // 2, total):  # the gate, the society, proposals, a principle's scores, the last
        _stop_and_resume(monkeypatch, cfg, ref, tmp_path / "ref", tmp_path / f"stop{n}", n)
    shutil.rmtree(tmp_path / "ref")
    assert json.dumps(ref["headline"])  # JSON-ready


def test_the_inverse_settings_name_only_inverse_runs():
    """study.inverse joined the config after runs were published: only an inverse run's config holds it (its own
    study node), so every other run keeps its id (and bytes), and an inverse run's id follows it."""
    from sim.run.lifecycle import run_id_for

    society, inverse = compose("experiment=tiny"), compose("experiment=inverse_constitution")
    assert not hasattr(society.study, "inverse")
    bank = dataclasses.replace(inverse, study=dataclasses.replace(inverse.study, inverse=dataclasses.replace(
        inverse.study.inverse, bank_size=3)))
    assert run_id_for(bank) != run_id_for(inverse)
