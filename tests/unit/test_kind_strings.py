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


def imports_of(root: Path = ROOT) -> dict[str, set[str]]:
    """Every ``sim.experiments.<folder>`` module imported, per file of the code (relative to ``root``): the folders it
    uses. Benchmarks, like tests, may study an experiment through its modules."""
    found: dict[str, set[str]] = {}
    for pkg in PACKAGES[:-1]:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                for name in names:
                    parts = name.split(".")
                    if parts[:2] == ["sim", "experiments"] and len(parts) > 2:
                        found.setdefault(rel, set()).add(parts[2])
    return found


def settings_keys(names: set[str], root: Path = ROOT) -> dict[str, set[str]]:
    """Where a string (or an f-string's text) names ``study.<key>`` of one of ``names``, per key: the files.
    Docstrings are documentation (they may point to another experiment's settings) and are left out."""
    found: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                    for key in names:
                        if f"study.{key}" in node.value:
                            found.setdefault(key, set()).add(rel)
    return found


def test_no_experiment_folder_is_imported_from_outside_it():
    """Code two experiments use lives in ``sim/experiments/shared/``: removing one folder leaves every other
    experiment (and the default run) working."""
    folders = {folder(kind).split("/")[2] for kind in experiments()}
    stray = {rel: sorted(used & folders) for rel, used in imports_of().items()
             if used & folders and not any(rel.startswith(f"sim/experiments/{f}/") for f in used & folders)}
    assert stray == {}, "move what two experiments share into sim/experiments/shared/"


def test_an_experiments_settings_are_named_only_in_its_own_folder():
    keys = {e.key: kind for kind, e in experiments().items() if e.key is not None}
    stray = {key: sorted(f for f in files if not f.startswith(folder(keys[key])) and f not in ANYONE)
             for key, files in settings_keys(set(keys)).items()}
    assert not {k: v for k, v in stray.items() if v}, "the experiment passes its setting's name in"


def test_the_scans_see_imports_and_settings_keys(tmp_path):
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "m.py").write_text('from sim.experiments.overton.coverage import f\nimport sim.experiments.pluralism as p\n'
                                           'x = f"{y}: study.inverse.ccai_path is empty"\n"a docstring: study.overton.voices"\n')
    assert imports_of(tmp_path) == {"sim/m.py": {"overton", "pluralism"}}
    assert settings_keys({"inverse", "overton"}, tmp_path) == {"inverse": {"sim/m.py"}}
