"""An experiment's name (its kind) is written in its own folder and nowhere else in the code: everything else looks
it up in the registry (``sim/experiments/registry.py``). Tests, ``conf/`` and the docs may name it.

Kinds not registered yet (transitional) may still appear where they did when their experiment was last touched:
:data:`UNCONVERTED` lists each place, and the list can only shrink (an entry no longer found there fails too, so a
conversion removes its entries; a kind in the list that has been registered fails)."""

from __future__ import annotations

import ast
from pathlib import Path

from sim.experiments import RUNNERS
from sim.experiments.registry import experiments
from tests.helpers import ROOT

PACKAGES = ("agents", "alignment", "scenarios", "sim", "benches")
# the frozen record of what published run ids hashed: study settings keys that share their experiment's name
ANYONE = ("sim/experiments/registry.py", "sim/ids.py")

UNCONVERTED: dict[str, set[str]] = {
    "society": {"alignment/inverse.py", "sim/checkpoint.py", "sim/config.py", "sim/experiments/__init__.py",
                "sim/experiments/constitution_ablation/run.py", "sim/experiments/generations.py",
                "sim/experiments/inverse_constitution/report.py", "sim/experiments/inverse_constitution/run.py",
                "sim/experiments/society_run.py", "sim/report/console.py", "sim/report/render.py",
                "sim/report/society.py", "sim/study_config.py"},
    "generations": {"sim/experiments/__init__.py", "sim/experiments/generations.py", "sim/report/console.py",
                    "sim/report/generations.py", "sim/report/render.py"},
}


def occurrences(names: set[str], root: Path = ROOT) -> dict[str, set[str]]:
    """Where a string constant equal to one of ``names`` is written, per name: the files (relative to ``root``)."""
    found: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                    found.setdefault(node.value, set()).add(rel)
    return found


def test_a_registered_kind_is_written_only_in_its_own_folder():
    registered = set(experiments())
    stray = {kind: sorted(f for f in files if not f.startswith(f"sim/experiments/{kind}/") and f not in ANYONE)
             for kind, files in occurrences(registered).items()}
    assert not {k: v for k, v in stray.items() if v}, "look the kind up in the registry instead"


def test_unconverted_kinds_stay_where_they_were_and_the_list_only_shrinks():
    assert set(UNCONVERTED) == set(RUNNERS) | {"generations"}, "a registered kind leaves UNCONVERTED"
    assert not set(UNCONVERTED) & set(experiments())
    found = {k: {f for f in v if f not in ANYONE} for k, v in occurrences(set(UNCONVERTED)).items()}
    assert {k: sorted(v - UNCONVERTED[k]) for k, v in found.items() if v - UNCONVERTED[k]} == {}, "a new place for a kind"
    assert {k: sorted(v - found.get(k, set())) for k, v in UNCONVERTED.items() if v - found.get(k, set())} == {}, \
        "no longer there: remove it from UNCONVERTED"


def test_the_scan_sees_a_kind_string(tmp_path):
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "m.py").write_text('KIND = "overton"\nf"{x}overton"\n')
    assert occurrences({"overton"}, tmp_path) == {"overton": {"sim/m.py"}}
