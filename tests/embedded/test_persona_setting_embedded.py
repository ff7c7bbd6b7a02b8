"""``persona.method=steer`` and ``contrast`` as run settings on the real embedded model: a 2-agent, 1-step society
runs end to end with each, and each moves the agents' readings away from the prompt-only run of the same seed."""

import dataclasses
import math

import polars as pl
import pytest

from agents.llm.base import BackendError
from agents.persona import PersonaConfig
from sim.config import AgoraConfig, LLMConfig, PopulationConfig, SimConfig, TokenBudget
from sim.experiments import run_experiment as run
from sim.run.lifecycle import check_persona


def two_agents(persona: PersonaConfig, reason: str = "before_choice") -> AgoraConfig:
    return AgoraConfig(name="persona", llm=LLMConfig(temperature=0.0), population=PopulationConfig(size=2),
                       persona=persona,
                       sim=SimConfig(steps=1, group_size=2, progress=False, reason=reason,
                                     tokens=TokenBudget(stance=8, debate=8, critique=8, revision=8)))


def initial_log_odds(out) -> list[float]:
    """Each agent's first reading as log-odds: P(a) saturates near 1 on the first dilemma (1 - 8e-10 here), where
    a difference is visible only on this scale."""
    s = pl.read_parquet(out / "stances.parquet").filter(pl.col("phase") == "initial").sort("agent_id")
    return [math.log(p) - math.log1p(-p) for p in s["p_a"].to_list()]


# steer: the held-out study's choice of layer and scale (at beta 1 on layer 4 the model's free text falls apart: empty
# or "I have been to have been to me"); contrast decodes two rows per request, ~140 s on 2 cores, hence slow
@pytest.mark.parametrize("persona", [pytest.param(PersonaConfig(method="steer", beta=0.3, layer=4), id="steer"),
                                     pytest.param(PersonaConfig(method="contrast", alpha=2.0, centre=True), id="contrast",
                                                  marks=pytest.mark.slow)])
def test_a_two_agent_society_runs_a_step_with_the_method(embedded, tmp_path, persona):
    base = run(two_agents(PersonaConfig()), tmp_path / "prompt", embedded)
    summary = run(two_agents(persona, reason="after_choice"), tmp_path / "method", embedded)
    assert summary["run_id"] != base["run_id"]
    assert summary["counts"]["stances"] == 6 and summary["counts"]["preferences"] >= 2  # 2 revisions (+ a cross pair)
    assert summary["config"]["persona"] == dataclasses.asdict(persona)
    assert summary["reasons"]["texts"] == 2 and summary["reasons"]["mode"] == "after_choice"
    transcripts = pl.read_parquet(tmp_path / "method" / "transcripts.parquet")
    assert set(transcripts["phase"]) == {"stance", "debate", "critique", "revision"} and len(transcripts) == 8
    # the method acted on the readings: the same seed and dilemma, other P(a) (steer moved the log-odds by 13-19,
    # contrast by ~0.5 in the run that set these bounds)
    moved = [abs(m - p) for m, p in zip(initial_log_odds(tmp_path / "method"), initial_log_odds(tmp_path / "prompt"),
                                        strict=True)]
    assert max(moved) > 0.1, moved


def test_a_layer_the_model_lacks_is_refused_before_any_work(embedded):
    assert embedded.layer_count == 30
    with pytest.raises(BackendError, match="persona.layer=30"):
        check_persona(PersonaConfig(method="steer", beta=1.0, layer=30), embedded)
    assert check_persona(PersonaConfig(method="steer", beta=1.0, layer=29), embedded) is None
