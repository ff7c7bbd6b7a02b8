from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AGORA_SHARED_DATA", ROOT.parent / "shared" / "data"))
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the shared data at {SHARED_DATA}")
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def embedded():
    """The real embedded model (SmolLM2-135M), loaded once per test session."""
    from agents.llm.embedded import EmbeddedBackend

    return EmbeddedBackend(max_batch_size=16)


def tiny_config(**sim_overrides):
    from sim.config import AgoraConfig, LLMConfig, PopulationConfig, SimConfig, TokenBudget

    sim = {"steps": 1, "group_size": 2, "tokens": TokenBudget(stance=12, debate=12, critique=12, revision=12),
           "progress": False, **sim_overrides}
    return AgoraConfig(name="test", llm=LLMConfig(backend="scripted"), population=PopulationConfig(size=6),
                       sim=SimConfig(**sim))
