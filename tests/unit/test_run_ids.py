"""Published run ids stay as they are: a run id is the hash of its settings, and outputs, resumes and reports
are found by it. Adding a setting or moving code must not change the id of any run people already have.

Pinned on 2026-12-07 (main at 007f73b) for every preset, on the scripted backend, on the embedded default, and with a
seed and population size set. A failure here means a change altered what enters the id: make the new setting enter
it only when set (see ``run_id_for``), rather than updating these values.
"""

import pytest

from sim.run.lifecycle import run_id_for
from tests.helpers import compose

PRESETS = {
    "default": ("e7321780", "c04e6f42", "7dfd71ee"),
    "tiny": ("dd466fc4", "1d1eda25", "85a1badb"),
    "pluralism": ("5cc35f28", "45fe71ee", "c914ce77"),
    "overton": ("59ba5541", "fe395eba", "9ff27c18"),
    "evolving_norms": ("0ccb11d2", "dd0e3159", "0e901b33"),
    "constitution_ablation": ("fbeea284", "64cf1fd5", "be19cb01"),
    "inverse_constitution": ("7051e348", "236884b0", "700bea65"),
    "human_distributions": ("ebc3aa10", "84dd5328", "34db63c9"),
    "collective": ("cf02e8a9", "5f32f44e", "50f298d7"),
    "evolve": ("370ed6f2", "41c99522", "3381113b"),
    "tiny_evolve": ("7581556e", "0fba9335", "cd14ef94"),
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_run_ids_of_every_preset_are_the_published_ones(preset: str) -> None:
    args = [] if preset == "default" else [f"experiment={preset}"]
    name = "society" if preset == "default" else preset
    scripted, embedded, varied = PRESETS[preset]  # the hash part of NAME-sSEED-HASH
    assert run_id_for(compose(*args)) == f"{name}-s0-{scripted}"
    assert run_id_for(compose(*args, scripted=False)) == f"{name}-s0-{embedded}"
    assert run_id_for(compose(*args, "seed=3", "population.size=10", scripted=False)) == f"{name}-s3-{varied}"
