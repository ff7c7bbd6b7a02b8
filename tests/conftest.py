from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import ROOT, tiny_config  # noqa: F401  (tiny_config: `from tests.conftest import` still works)

SHARED_DATA = Path(os.environ.get("AGORA_SHARED_DATA", ROOT.parent / "shared" / "data"))


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
