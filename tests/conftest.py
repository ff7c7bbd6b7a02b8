"""Fixtures for every group: unit/ (no model: scripted backends, pure functions), embedded/ (the real model
in-process; its fixture is in embedded/conftest.py), e2e/ (the commands as child processes). Helpers
that tests import (agora(), compose(), tiny_config()) are in tests/helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import ROOT

SHARED_DATA = Path(os.environ.get("AGORA_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the shared data at {SHARED_DATA}")
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA
