"""``persona.method=steer`` and ``contrast`` as run settings on the real embedded model: a 2-agent, 1-step society
runs end to end with each, and each moves the agents' readings away from the prompt-only run of the same seed."""

import dataclasses

import polars as pl
import pytest

from agents.llm.base import BackendError
from agents.persona import PersonaConfig
from sim.config import AgoraConfig, LLMConfig, PopulationConfig, SimConfig, TokenBudget
from sim.experiments.society_run import run
from sim.lifecycle import check_persona


def two_agents(persona: PersonaConfig, reason: str = "before_choice") -> AgoraConfig:
    return AgoraConfig(name="persona", llm=LLMConfig(temperature=0.0), population=PopulationConfig(size=2),
                       persona=persona,
                       sim=SimConfig(steps=1, group_size=2, progress=False, reason=reason,
                                     tokens=TokenBudget(stance=8, debate=8, critique=8, revision=8)))


def initial_p_a(out) -> list[float]:
    s = pl.read_parquet(out / "stances.parquet").filter(pl.col("phase") == "initial").sort("agent_id")
    return s["p_a"].to_list()


@pytest.mark.parametrize("persona", [PersonaConfig(method="steer", beta=1.0, layer=4),
                                     PersonaConfig(method="contrast", alpha=2.0, centre=True)],
                         ids=["steer", "contrast"])
def test_a_two_agent_society_runs_a_step_with_the_method(embedded, tmp_path, persona):
    base = run(two_agents(PersonaConfig()), tmp_path / "prompt", embedded)
    summary = run(two_agents(persona, reason="after_choice"), tmp_path / "method", embedded)
    assert summary["run_id"] != base["run_id"]
    assert summary["counts"]["stances"] == 6 and summary["counts"]["preferences"] >= 2  # 2 revisions (+ a cross pair)
    assert summary["config"]["persona"] == dataclasses.asdict(persona)
    assert summary["reasons"]["texts"] == 2 and summary["reasons"]["mode"] == "after_choice"
    transcripts = pl.read_parquet(tmp_path / "method" / "transcripts.parquet")
    assert set(transcripts["phase"]) == {"stance", "debate", "critique", "revision"}
    assert (transcripts["text"].str.len_chars() > 0).all()
    # the method acted on the readings: the same seed and dilemma, other P(a)
    assert initial_p_a(tmp_path / "method") != pytest.approx(initial_p_a(tmp_path / "prompt"), abs=1e-6)


def test_a_layer_the_model_lacks_is_refused_before_any_work(embedded):
    assert embedded.layer_count == 30
    with pytest.raises(BackendError, match="persona.layer=30"):
        check_persona(PersonaConfig(method="steer", beta=1.0, layer=30), embedded)
    assert check_persona(PersonaConfig(method="steer", beta=1.0, layer=29), embedded) is None
