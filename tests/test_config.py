"""The run configuration: light to import, one source of truth for defaults, frozen once checked."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_importing_the_config_loads_no_torch_and_leaves_the_hub_setting_alone():
    probe = ("import os, sys; os.environ.pop('HF_HUB_OFFLINE', None); import sim.config; "
             "print(sorted(m for m in ('torch', 'transformers', 'agents.llm.embedded') if m in sys.modules), "
             "os.environ.get('HF_HUB_OFFLINE'))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "None"]
