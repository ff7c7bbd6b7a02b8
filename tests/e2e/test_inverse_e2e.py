"""experiment=inverse_constitution as a command on the embedded model, tiny (the planted-principle test with
known answers is in unit/test_inverse_constitution.py; the figures of docs/experiments/inverse-constitution.md come from
the preset's defaults)."""

import json

import polars as pl

from tests.helpers import agora


def test_inverse_constitution_preset_on_the_embedded_model(tmp_path):
    res = agora("experiment=inverse_constitution", "population.size=4", "sim.steps=1", "sim.group_size=2",
                "sim.debate_rounds=0", "sim.tokens.stance=12", "sim.tokens.critique=12", "sim.tokens.revision=12",
                "study.inverse.proposals=2", "study.inverse.proposal_tokens=16", "study.inverse.bank_size=2",
                "calibration.enabled=false", "sim.progress=false", f"hydra.run.dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    prefs = pl.read_parquet(tmp_path / "preferences.parquet")
    scores = pl.read_parquet(tmp_path / "inverse_scores.parquet")
    assert s["pairs"]["all"] == len(prefs) >= 2 and len(scores) == len(prefs) * s["principles"]["scored"]
    assert scores["p_a"].is_between(0, 1).all()
    assert s["proposals"]["asked"] == 2 == s["proposals"]["parsed"] + s["proposals"]["duplicate"] + s["proposals"]["unparsed"]
    lists = pl.read_parquet(tmp_path / "inverse_lists.parquet")
    society = lists.filter(pl.col("scope") == "society")
    assert set(society["method"]) == {"learned", "given_constitution", "no_principle"}
    assert (society["held_n"] == s["pairs"]["held_out"] - s["scopes"]["society"]["held_out"]["learned"]["label_ties"]).all()
    assert "learned[society]" in res.stdout and (tmp_path / "inverse_agreement.png").exists()
