"""An experiment's name (its kind) is written in its own folder and nowhere else in the code: everything else looks
it up in the registry (``sim/experiments/registry.py``). Tests, ``conf/`` and the docs may name it.

``society`` is also an everyday word the code and the outputs use in other senses (:data:`OTHER_SENSES`, each place
with what it means there): those places stay, and the list can only shrink (a place no longer found fails too)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from sim.experiments.registry import experiments
from tests.helpers import ROOT

PACKAGES = ("agents", "alignment", "scenarios", "sim", "benches")
# the frozen record of what published run ids hashed: study settings keys that share their experiment's name
ANYONE = ("sim/experiments/registry.py", "sim/run/ids.py")

OTHER_SENSES: dict[str, dict[str, str]] = {
    "society": {
        "alignment/inverse.py": "the whole-society scope of a learned constitution (a value in its parquet rows)",
        "sim/experiments/inverse_constitution/report.py": "the whole-society scope",
        "sim/experiments/inverse_constitution/run.py": "the whole-society scope, and its society stage's checkpoint name",
        "sim/experiments/constitution_ablation/run.py": "its society stage's checkpoint name (old checkpoints resume by it)",
        "sim/run/checkpoint.py": "the checkpoint key of a society's partial steps (old checkpoints resume by it)",
        "sim/config.py": "the default run name (the prefix of published run ids)",
        "sim/study_config.py": "the default study.kind of the base node (what a config built without Hydra runs)",
    },
}


def folder(kind: str) -> str:
    """The folder an experiment lives in: its run function's package (the generations loop is in ``society/``)."""
    module = experiments()[kind].run.__module__
    return Path(importlib.import_module(module).__file__).parent.relative_to(ROOT).as_posix() + "/"


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
    other = {k: set(v) for k, v in OTHER_SENSES.items()}
    stray = {kind: sorted(f for f in files if not f.startswith(folder(kind)) and f not in ANYONE and f not in other.get(kind, ()))
             for kind, files in occurrences(registered).items()}
    assert not {k: v for k, v in stray.items() if v}, "look the kind up in the registry instead"


def test_the_other_senses_of_a_kind_word_are_still_where_they_are_listed():
    found = occurrences(set(OTHER_SENSES))
    assert {k: sorted(set(v) - found.get(k, set())) for k, v in OTHER_SENSES.items() if set(v) - found.get(k, set())} == {}, \
        "no longer there: remove it from OTHER_SENSES"
    assert folder("generations") == folder("society") == "sim/experiments/society/"


def test_the_scan_sees_a_kind_string(tmp_path):
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "m.py").write_text('KIND = "overton"\nf"{x}overton"\n')
    assert occurrences({"overton"}, tmp_path) == {"overton": {"sim/m.py"}}
