"""The persona study's pipeline on a scripted backend: splits that do not overlap, choices made on the tuning
half only, every figure present, and a persona whose answers follow its country's people found."""

import hashlib
import json
import math

import numpy as np

from agents.llm.scripted import ScriptedBackend
from benches import persona_study as ps
from scenarios import mfq30


def _unit(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def test_splits_are_disjoint_and_seeded():
    a, b = ps.split(ps.FULL, 0), ps.split(ps.FULL, 0)
    assert a["tune"] == b["tune"] and not set(a["tune"]) & set(a["held"])
    assert sorted(a["tune"] + a["held"]) == sorted(ps.FULL.countries) and len(a["tune"]) == 8
    assert {it.id for it in a["tune_items"]}.isdisjoint(it.id for it in a["held_items"])
    for f in mfq30.FOUNDATIONS:
        assert sum(it.foundation == f for it in a["tune_items"]) == 3
    ids = [d.id for k in ("mc_tune", "mc_held", "judge_tune", "judge_held") for d in a[k]]
    assert len(ids) == len(set(ids)) == 2 * (60 + 30)
    assert ps.split(ps.FULL, 1)["tune"] != a["tune"]


def test_country_personas_carry_no_mfq_or_moral_machine_data(shared_data):  # the countries' own IW/Hofstede values
    from agents.persona import PersonaConfig, condition, profile_sources

    for c, w in ps.country_agents(ps.FULL.countries).items():
        assert profile_sources(w) == ["inglehart_welzel", "hofstede"]
        assert c in w.persona  # the culture text names the country; the profile text does not
        assert c not in condition(w, PersonaConfig(variant="profile")).persona


def test_the_quick_study_runs_end_to_end_and_chooses_on_tuning_figures(tmp_path, shared_data):
    """Scores that follow the persona text (a scripted backend): every stage runs, the JSON holds each figure."""
    def scores(r):
        system = r.messages[0].content
        raw = [_unit(system + r.messages[-1].content + c) for c in r.choices]
        z = math.log(sum(math.exp(x) for x in raw))
        return [x - z for x in raw]

    out = tmp_path / "study.json"
    result = ps.run(ps.QUICK, 0, out, ScriptedBackend(scores=scores, record=False))
    json.dumps(result)
    grid = result["tuning_grid"]
    for method, key in result["chosen"].items():
        assert key.startswith(method + "/") and key in grid
        ok = [k for k in grid if k.startswith(method + "/") and grid[k]["moralchoice_accuracy"] >= ps.ACCURACY_FLOOR]
        pool = ok or [k for k in grid if k.startswith(method + "/")]
        assert grid[key]["human"]["mfq"]["r"] == max(grid[k]["human"]["mfq"]["r"] for k in pool)
    held = result["held_out_people"]["prompt/culture"]
    assert set(held) >= {"mfq", "moral_machine", "mfq_held_items"}
    assert held["mfq"]["model"]["correlation"]["value"] is not None and held["mfq"]["model"]["permutation_p"] > 0
    soc = result["society_readings"]["no_persona"]["spread_moralchoice_high"]
    assert soc["spread_p_a"]["value"] == 0  # one prompt for all: clusters differ by sampling alone
    assert 0 <= soc["spread_sampled"]["low"] <= soc["spread_sampled"]["value"] <= soc["spread_sampled"]["high"]
    runs = result["society_runs"]
    assert set(runs) == {"no_persona", "prompt/culture", f"chosen {result['held_out_winner_by_mfq_r']}"}
    for run in runs.values():  # a winner that is prompt/culture is run once and named twice
        assert run.get("same_as") in runs if "same_as" in run else {"changed_after_debate", "seconds_per_step"} <= set(run)
    assert result["reasons"]["after_names_other"]["n"] == 12
    assert (out.with_suffix(".stages")).is_dir()
    again = ps.run(ps.QUICK, 0, out, ScriptedBackend(record=False))  # stages resume: no stage is read again
    assert again["tuning_grid"] == grid


def test_names_other_reads_letters_and_the_actions_own_words():
    from scenarios.dilemma import Dilemma

    d = Dilemma(id="x", situation="s", action_a="I report the theft to the police.", action_b="I keep quiet about it.")
    assert ps.names_other("B. I would keep quiet.", d, "a")
    assert not ps.names_other("Reporting theft to the police is right.", d, "a")
    assert not ps.names_other("I keep quiet.", d, "b") and not ps.names_other("Nothing to say.", d, "a")
    assert ps.names_other("I keep quiet.", d, "a")


def test_bootstrap_mean_holds_its_point():
    iv = ps.bootstrap_mean(np.array([0.0, 0.5, 1.0, 0.25]), 500, 0)
    assert iv["low"] <= iv["value"] == 0.4375 <= iv["high"]
