import json

import numpy as np
import pytest

from agents.culture import CLUSTERS_FILE, MFQ_AXES, build_bundle, load_clusters, load_mfq_profiles
from agents.worldview import PopulationSpec, Worldview, cluster_counts, render_persona, sample_population


def test_bundle_matches_recomputation_from_raw_survey_files(shared_data):
    clusters_json, rows = build_bundle(shared_data)
    assert clusters_json == json.loads(CLUSTERS_FILE.read_text())
    profiles = load_mfq_profiles()
    assert sum(len(v) for v in profiles.values()) == sum(1 for r in rows if r[0])  # Latvia, Mongolia: in no cluster


def test_cluster_centres_are_ordered_as_the_cultural_map_says():
    c = load_clusters()
    # Inglehart–Welzel: Protestant Europe is the most secular and self-expressive zone, the Islamic
    # zone the most traditional and survival-oriented (among ours).
    trad = {k: v.centre["traditional_secular"] for k, v in c.items()}
    surv = {k: v.centre["survival_selfexpression"] for k, v in c.items()}
    assert max(trad, key=trad.get) == "protestant_europe" and min(trad, key=trad.get) == "islamic"
    assert max(surv, key=surv.get) == "protestant_europe" and min(surv, key=surv.get) == "islamic"


@pytest.mark.parametrize("size,weights,expected", [
    (10, (2, 1, 1), [5, 3, 2]),  # exact 5, 2.5, 2.5: the tied remainder goes to the earlier cluster
    (10, (1, 1, 2), [3, 2, 5]),
    (10, (1, 2, 3), [2, 3, 5]),  # exact 1.67, 3.33, 5: the largest remainder (0.67) gets the spare agent
    (10, None, [4, 3, 3]),  # equal weights by default
    (16, None, [6, 5, 5]),
])
def test_cluster_counts_apportion_by_largest_remainder(size, weights, expected):
    clusters = ("confucian", "islamic", "english_speaking")
    spec = PopulationSpec(size=size, clusters=clusters, **({"weights": weights} if weights else {}))
    assert cluster_counts(spec) == expected
    assert cluster_counts(PopulationSpec(size=7, clusters=("confucian", "islamic"))) == [4, 3]


def test_sampling_is_seeded_and_uses_real_mfq_profiles():
    spec = PopulationSpec(size=8, clusters=("confucian", "islamic"))
    a = sample_population(spec, np.random.default_rng(1))
    b = sample_population(spec, np.random.default_rng(1))
    c = sample_population(spec, np.random.default_rng(2))
    assert a == b and a != c
    rows = {tuple(r) for r in load_mfq_profiles()["islamic"]}
    for w in a:
        assert w.persona and w.persona == render_persona(w)
        if w.cluster == "islamic":
            assert tuple(w.values[x] for x in MFQ_AXES) in rows


def test_zero_spread_puts_agents_on_the_centre():
    spec = PopulationSpec(size=3, clusters=("protestant_europe",), spread=0.0)
    centre = load_clusters()["protestant_europe"].centre
    for w in sample_population(spec, np.random.default_rng(0)):
        assert w.values["traditional_secular"] == pytest.approx(centre["traditional_secular"], abs=1e-3)


def test_personas_differ_between_distant_clusters():
    spec = PopulationSpec(size=2, clusters=("protestant_europe", "islamic"), spread=0.0)
    sweden, iran = sample_population(spec, np.random.default_rng(0))
    assert "secular" in sweden.persona and "religion" in iran.persona


@pytest.mark.parametrize("kwargs,msg", [
    ({"size": 1, "clusters": ("confucian",)}, "must be 2 to 1,000,000"),
    ({"size": 1_000_001, "clusters": ("confucian",)}, "got 1,000,001"),
    ({"size": 4, "clusters": ("atlantis",)}, "unknown cluster"),
    ({"size": 4, "clusters": ("confucian",), "weights": (1, 2)}, "one per cluster"),
])
def test_bad_population_specs_fail_clearly(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        PopulationSpec(**kwargs)


def test_unknown_axis_rejected():
    with pytest.raises(ValueError, match="unknown value axes"):
        Worldview(cluster="x", values={"happiness": 1.0})
