"""Tests that load real model weights in this process (SmolLM2-135M, MiniLM): the engine, training steps,
and measurements whose logic unit/ checks on scripted judges."""

import pytest


@pytest.fixture(scope="session")
def embedded():
    """The real embedded model (SmolLM2-135M), loaded once per test session."""
    from agents.llm.embedded import EmbeddedBackend

    return EmbeddedBackend(max_batch_size=16)
