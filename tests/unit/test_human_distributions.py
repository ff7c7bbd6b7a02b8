"""experiment=human_distributions: MFQ-30 scoring, the bundled human references, the agreement metrics, and
whole runs on scripted backends whose answers are known functions of the persona's country."""

from __future__ import annotations

import csv
import gzip
import io
import math

import numpy as np
import polars as pl
import pytest

from agents.culture import MFQ_AXES, build_bundle, load_mfq_by_country, load_mfq_profiles
from agents.llm.scripted import ScriptedBackend
from agents.scoring import likelihood_distribution, likelihood_p_first
from agents.survey import country_worldview
from alignment.agreement import agreement, between_country_correlation, distances, resample_means, shuffled_baseline
from scenarios import mfq30
from scenarios import moral_machine as mm
from sim.experiments import run_experiment
from sim.experiments.human_distributions.run import RESPONDENT_MFQ_CAVEAT, panel
from tests.helpers import agora, compose

COUNTRIES = ["US", "Japan", "Turkey", "Sweden", "Iran"]
RUN = ("experiment=human_distributions", f"study.human.countries=[{','.join(COUNTRIES)}]", "calibration.enabled=false")


# -- a scripted backend that answers as each country's people do -------------------------------------------
def _country(r) -> str | None:
    system = r.messages[0].content
    return next((c for c in load_mfq_by_country() if f"a person from {c} " in system), None)


def _logprobs_for(dist: np.ndarray, texts) -> list[float]:
    """Log-likelihoods that the likelihood reader turns back into ``dist`` (undoing its per-character scaling)."""
    mean_len = sum(len(t) for t in texts) / len(texts)
    with np.errstate(divide="ignore"):
        return [float(np.log(p)) * len(t) / mean_len for p, t in zip(dist, texts, strict=True)]


def _two_point(mean: float) -> np.ndarray:
    """A distribution over 0..5 whose expected value is ``mean`` exactly."""
    lo = min(int(math.floor(mean)), 4)
    dist = np.zeros(6)
    dist[lo], dist[lo + 1] = lo + 1 - mean, mean - lo
    return dist


def oracle_scores(r) -> list[float]:
    """MFQ: each item's expected answer is the country's mean on its foundation; Moral Machine: P(spare the
    positive level) = (1 + the country's AMCE) / 2. No country in the prompt: 2.5 and 0.5. Anything else
    (none is sent with the gate off) gets the default scores."""
    country = _country(r)
    item = next((it for it in mfq30.ITEMS if it.text in r.messages[-1].content), None)
    if item is not None and r.choices == item.scale:
        if item.foundation == mfq30.CATCH or country is None:
            return _logprobs_for(_two_point(2.5), r.choices)
        mean = load_mfq_by_country()[country].mean(axis=0)[MFQ_AXES.index(item.foundation)]
        return _logprobs_for(_two_point(mean), r.choices)
    choice = next((c for c in mm.choices() if r.choices == (c.spare_preferred, c.spare_other)), None)
    if choice is not None:
        amce = mm.load_estimates()[mm.ISO3[country]][choice.attribute][0] if country else 0.0
        p = (1 + amce) / 2
        return _logprobs_for(np.array([p, 1 - p]), r.choices)
    return ScriptedBackend.default_scores(r)


def uniform_scores(r) -> list[float]:
    return _logprobs_for(np.full(len(r.choices), 1 / len(r.choices)), r.choices)


def test_a_model_answering_as_each_country_does_agrees_with_people_and_the_baselines_do_not(tmp_path):
    s = run_experiment(compose(*RUN), tmp_path, ScriptedBackend(scores=oracle_scores, record=False))
    for inst in ("mfq", "moral_machine"):
        m = s["results"][inst]
        assert m["model"]["distance"]["value"] < 1e-6 and m["model"]["distance"]["high"] < 0.2
        assert m["model"]["correlation"]["value"] == pytest.approx(1.0, abs=1e-6)
        assert m["model"]["correlation"]["low"] > 0.5  # the human side's sampling noise only
        assert m["no_persona"]["correlation"]["value"] is None  # one profile for every country: undefined
        assert m["no_persona"]["distance"]["value"] > 0.05
        assert m["shuffled"]["distance"]["value"] > 0.01 and m["shuffled"]["correlation"]["value"] < 0.5
        assert m["model"]["permutation_p"] == pytest.approx(1 / 120, abs=1e-6)  # exact: 5! orderings, only the identity does as well
        assert m["shuffled"]["permutations"] == 119 and m["shuffled"]["exact"]
        # the basic intervals hold their point and the truth (distance 0, r 1)
        assert m["model"]["distance"]["low"] == 0.0 <= m["model"]["distance"]["high"]
        assert m["model"]["correlation"]["low"] <= 1.0 == m["model"]["correlation"]["high"]
        assert all(c["low"] <= c["value"] <= c["high"] and c["low"] == 0.0 for c in m["model"]["per_country_distance"])
    profiles = pl.read_parquet(tmp_path / "human_profiles.parquet")
    assert np.allclose(profiles["model"], profiles["human"], atol=1e-9)
    answers = pl.read_parquet(tmp_path / "human_answers.parquet")
    assert len(answers) == (len(COUNTRIES) + 1) * (32 + 18)  # + the no-persona baseline
    assert (tmp_path / "human_agreement.png").exists() and "between-country r" in (tmp_path / "report.md").read_text()


def test_constant_answers_give_the_no_persona_numbers(tmp_path):
    s = run_experiment(compose(*RUN), tmp_path, ScriptedBackend(scores=uniform_scores, record=False))
    m = s["results"]["mfq"]
    assert m["model"]["distance"] == m["no_persona"]["distance"]
    assert m["model"]["correlation"]["value"] is None and m["shuffled"]["correlation"]["value"] is None
    human = np.stack([load_mfq_by_country()[c].mean(axis=0) for c in COUNTRIES])
    expected = np.sqrt(((human - 2.5) ** 2).mean(axis=1)).mean()  # every expected answer is 2.5
    assert m["model"]["distance"]["value"] == pytest.approx(expected, abs=1e-6)
    mmr = s["results"]["moral_machine"]
    est = np.array([[mm.load_estimates()[mm.ISO3[c]][a][0] for a in mm.ATTRIBUTES] for c in COUNTRIES])
    assert mmr["model"]["distance"]["value"] == pytest.approx(np.sqrt((est ** 2).mean(axis=1)).mean(), abs=1e-6)
    assert s["mfq_catch_pass"]["value"] == 0.0  # 2.5 on "good at math" is too relevant to pass


# -- scoring and the instruments ---------------------------------------------------------------------------
def test_foundation_scores_are_the_mean_of_each_foundations_six_items():
    answers = {it.id: float(MFQ_AXES.index(it.foundation)) if it.foundation != mfq30.CATCH else 5.0
               for it in mfq30.ITEMS}
    assert mfq30.foundation_scores(answers) == {f: float(i) for i, f in enumerate(MFQ_AXES)}
    answers["r1"], answers["a7"] = 5.0, 2.0  # two care items: (5 + 0·3 + 2 + 0) / 6
    assert mfq30.foundation_scores(answers)["care"] == pytest.approx(7 / 6)
    assert sum(it.foundation == f for it in mfq30.ITEMS for f in MFQ_AXES) == 30 and len(mfq30.ITEMS) == 32
    with pytest.raises(ValueError, match="missing for items"):
        mfq30.foundation_scores({k: v for k, v in answers.items() if k != "a16"})
    assert mfq30.passes_catch({"r6": 0.4, "a6": 4.6}) and not mfq30.passes_catch({"r6": 3.0, "a6": 4.6})


def test_the_k_option_likelihood_reading_is_the_two_option_one_at_k_2():
    lps, texts = [-3.0, -7.5], ["spare them", "swerve and kill the others"]
    assert likelihood_distribution(lps, texts)[0] == pytest.approx(likelihood_p_first(lps, texts))
    assert np.allclose(likelihood_distribution(_logprobs_for(_two_point(3.4), mfq30.RELEVANCE_SCALE),
                                               mfq30.RELEVANCE_SCALE) @ np.arange(6), 3.4)


def test_each_moral_machine_choice_differs_in_its_attribute_and_balances_staying_and_swerving():
    cs = mm.choices()
    assert [c.attribute for c in cs[::2]] == list(mm.ATTRIBUTES) and len(cs) == 18
    for a in mm.ATTRIBUTES:
        v0, v1 = (c for c in cs if c.attribute == a)
        stays = [c.spare_preferred.startswith("Stay") for c in (v0, v1)]
        assert stays == [True, True] if a == "intervention" else sorted(stays) == [False, True]


# -- the bundled references --------------------------------------------------------------------------------
def test_mfq_bundle_holds_every_countrys_respondents_as_recomputed(shared_data):
    _, rows = build_bundle(shared_data)
    by_country = load_mfq_by_country()
    assert len(by_country) == 19 and sum(len(v) for v in by_country.values()) == len(rows)
    for country in ("Latvia", "Mongolia", "Japan"):
        assert np.allclose(by_country[country], [r[2] for r in rows if r[1] == country])
    assert sum(len(v) for v in load_mfq_profiles().values()) == sum(1 for r in rows if r[0])


def test_moral_machine_bundle_is_the_mit_file_and_matches_the_nhipk_table(shared_data):
    bundled = [(r["iso3"], r["attribute"], float(r["estimate"]), float(r["se"])) for r in
               csv.DictReader(io.StringIO(gzip.decompress(mm.DATA_FILE.read_bytes()).decode()))]
    assert bundled == mm.build_bundle(shared_data)
    est = mm.load_estimates()
    with (shared_data / "moral_machine" / "CountriesChangePr.csv").open(newline="") as fh:
        table = {row["UserCountry3"]: row for row in csv.DictReader(fh)}  # read in place, never bundled
    cols = {"age": "Age [Elderly -> Young]", "species": "Species [Pets -> Humans]", "law": "Law [Illegal -> Legal]",
            "intervention": "[Omission -> Commission]", "relation_to_av": "[Passengers -> Pedestrians]"}
    for iso in mm.ISO3.values():
        for attr, col in cols.items():
            assert est[iso][attr][0] == pytest.approx(float(table[iso][f"{col}: Estimates"]), abs=1e-6)
            assert est[iso][attr][1] == pytest.approx(float(table[iso][f"{col}: se"]), abs=1e-6)


# -- metrics -----------------------------------------------------------------------------------------------
def test_agreement_metrics_on_hand_checked_profiles():
    human = np.array([[1.0, 2.0], [3.0, 2.0], [2.0, 5.0]])
    assert between_country_correlation(human + 7, human) == pytest.approx(1.0)  # a level shift is not a difference
    assert between_country_correlation(-human, human) == pytest.approx(-1.0)
    assert math.isnan(between_country_correlation(np.ones((3, 2)), human))
    assert distances(human + np.array([3.0, 4.0]), human) == pytest.approx([math.sqrt(12.5)] * 3)
    rows = np.arange(20.0).reshape(10, 2)
    boot = resample_means(rows, 500, np.random.default_rng(0))
    assert boot.shape == (500, 2) and abs(boot.mean(axis=0) - rows.mean(axis=0)).max() < 0.5
    sh = shuffled_baseline(human, human, 200, seed=1)
    assert sh["permutations"] == 5 and sh["distance"]["low"] > 0  # 3! orderings, the identity left out of the baseline


@pytest.mark.parametrize("n,p", [(3, 1 / 6), (4, 1 / 24), (5, 1 / 120)])
def test_permutation_p_is_exact_over_every_ordering_when_there_are_few(n, p):
    human = np.random.default_rng(n).normal(size=(n, 5))
    sh = shuffled_baseline(human + 0.01 * np.random.default_rng(9).normal(size=(n, 5)), human, 1000, seed=0)
    assert sh["exact"] and sh["permutations"] == math.factorial(n) - 1
    assert sh["permutation_p"] == pytest.approx(p, abs=1e-6)  # only the identity does as well: p = 1/n!, never lower


def test_permutation_p_of_random_shuffles_never_goes_below_one_over_n_plus_one():
    human = np.random.default_rng(0).normal(size=(7, 5))  # 7! = 5040 > 1000: seeded draws
    sh = shuffled_baseline(human, human, 1000, seed=0)
    assert not sh["exact"] and sh["permutations"] == 1000 and sh["permutation_p"] == pytest.approx(1 / 1001, abs=1e-6)
    assert sh == shuffled_baseline(human, human, 1000, seed=0)


def test_basic_bootstrap_intervals_hold_the_point_and_the_truth_when_the_model_answers_as_people_do():
    rows = [np.random.default_rng(c).normal(c, 1.0, size=(200, 5)) for c in range(4)]
    human = np.stack([r.mean(axis=0) for r in rows])
    draws = np.stack([resample_means(r, 500, np.random.default_rng(10 + c)) for c, r in enumerate(rows)], axis=1)
    m = agreement([h[None, :] for h in human], human, draws, seed=0)
    assert m["distance"]["value"] == 0.0 and m["distance"]["low"] == 0.0 <= m["distance"]["high"]
    assert m["correlation"]["value"] == pytest.approx(1.0)
    assert m["correlation"]["low"] <= 1.0 <= m["correlation"]["high"] + 1e-12
    assert all(c["low"] <= 0.0 <= c["high"] for c in m["per_country_distance"])
    off = agreement([h[None, :] + 1.0 for h in human], human, draws, seed=0)  # every dimension off by 1
    assert off["distance"]["low"] <= 1.0 <= off["distance"]["high"]


# -- population and config ---------------------------------------------------------------------------------
def test_respondent_agents_are_real_respondents_of_their_country_seeded():
    cfg = compose(*RUN, "study.human.persona=respondent", "study.human.agents_per_country=3")
    a, b = panel(cfg), panel(cfg)
    assert [x["respondent"] for x in a] == [x["respondent"] for x in b] and len(a) == 15
    for x in a:
        w = x["worldview"]
        assert w.source_country == x["country"] and f"a person from {x['country']} " in w.persona
        assert np.allclose([w.values[f] for f in MFQ_AXES], load_mfq_by_country()[x["country"]][x["respondent"]])
        assert "Morally, you care most about" in w.persona
    assert "Morally" not in country_worldview("Japan").persona and "culture" in country_worldview("Japan").persona
    assert country_worldview("Latvia").persona == "You are a person from Latvia and answer as yourself."


@pytest.mark.parametrize("override,needle", [
    ("study.human.countries=[Narnia,US,UK]", "unknown country ['Narnia']"),
    ("study.human.countries=[US,UK]", "at least 3 different countries"),
    ("study.human.agents_per_country=2", "1 with persona=country"),
    ("study.human.instruments=[mfq,wvs]", "mfq and/or moral_machine"),
    ("study.human.persona=citizen", "persona must be one of"),
    ("study.human.instruments=[mfq,mfq]", "each once"),
])
def test_bad_settings_are_one_line_errors(tmp_path, override, needle):
    res = agora("llm=scripted", "experiment=human_distributions", override, f"hydra.run.dir={tmp_path}")
    err = res.stderr.strip()
    assert res.returncode == 2 and err.startswith("agora: error: ") and "\n" not in err and needle in err, err


@pytest.mark.filterwarnings("error::UserWarning")  # its undefined correlations once broke the plot's layout
def test_respondent_persona_with_mfq_records_its_caveat(tmp_path, caplog):
    run = (*RUN[:1], "study.human.countries=[US,Japan,Turkey]", "calibration.enabled=false", "study.human.persona=respondent")
    with caplog.at_level("WARNING"):
        s = run_experiment(compose(*run, "study.human.instruments=[mfq]"), tmp_path / "a",
                           ScriptedBackend(scores=uniform_scores, record=False))
    assert s["caveats"] == [RESPONDENT_MFQ_CAVEAT] and RESPONDENT_MFQ_CAVEAT in (tmp_path / "a" / "report.md").read_text()
    assert RESPONDENT_MFQ_CAVEAT in caplog.text
    s = run_experiment(compose(*run, "study.human.instruments=[moral_machine]"), tmp_path / "b",
                       ScriptedBackend(scores=uniform_scores, record=False))
    assert s["caveats"] == []


def test_the_docs_give_the_bundles_count_of_usable_mfq_respondents():
    import re
    from pathlib import Path

    n = sum(len(v) for v in load_mfq_by_country().values())
    root = Path(__file__).parents[2]  # the experiment's page and Concepts both give it
    text = "\n".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").rglob("*.md"))])
    counts = re.findall(r"([\d,]+) usable (?:MFQ-30 )?respondents", text)
    assert counts and set(counts) == {f"{n:,}"}, counts


def test_the_persona_setting_reaches_the_country_agents(tmp_path):
    """persona.variant=none: every country agent reads under the neutral prompt, so its answers are the no-persona
    baseline's (the oracle answers by the country named); persona.method=steer gives each the vector of its values."""
    from agents.persona import NEUTRAL

    cfg = compose(*RUN, "persona.variant=none")
    assert {a["worldview"].persona for a in panel(cfg)} == {NEUTRAL}
    s = run_experiment(cfg, tmp_path, ScriptedBackend(scores=oracle_scores, record=False))
    assert s["results"]["mfq"]["model"]["distance"] == s["results"]["mfq"]["no_persona"]["distance"]
    assert s["results"]["mfq"]["model"]["correlation"]["value"] is None  # one profile for every country
    steered = panel(compose(*RUN, "persona.method=steer"))
    assert all(a["worldview"].conditioning.method == "steer" for a in steered)
    # a country persona carries its cluster's centre: one vector per cluster
    assert len({a["worldview"].conditioning.steer for a in steered}) == len({a["worldview"].cluster for a in steered}) > 1
    plain = panel(compose(*RUN))
    assert [a["worldview"] for a in plain] == [country_worldview(c) for c in COUNTRIES]  # the default: as written

