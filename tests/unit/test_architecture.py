"""The dependency direction: scenarios → agents → alignment → sim core → sim.report → sim.experiments
→ sim.commands → sim.cli → sim.launch. A module may import its own layer and those before it, never one after (lazy imports
inside functions count too: they are cycles waiting to happen).

Inside the core, by concern: the plain core (config, results, display), the society's records, the run
infrastructure (sim.run: seeds, ids, event loops, the lock, the row log, the store), the Mesa model
(sim.society), the label-quality gate (sim.gate, which samples a population), then the two run modules that drive
the society and the gate (sim.run.checkpoint steps a society; sim.run.lifecycle opens the gate)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

LAYERS = ["scenarios", "agents", "alignment", "sim", "sim.society.records", "sim.run", "sim.society", "sim.gate",
          "sim.run.checkpoint", "sim.run.lifecycle", "sim.report", "sim.experiments", "sim.commands", "sim.cli", "sim.launch"]
PACKAGES = ("scenarios", "agents", "alignment", "sim")


def layer(module: str) -> int | None:
    """The index in LAYERS of the longest prefix that names ``module``'s layer (None: not ours)."""
    best = None
    for i, name in enumerate(LAYERS):
        if module == name or module.startswith(name + "."):
            if best is None or len(name) > len(LAYERS[best]):
                best = i
    return best


def imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from sim import store`` imports the module sim.store
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_one_way(path):
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    own = layer(name)
    bad = [f"line {n}: {m} ({LAYERS[layer(m)]})" for n, m in imports(path)
           if layer(m) is not None and layer(m) > own]
    assert not bad, f"{name} ({LAYERS[own]}) imports a later layer: " + "; ".join(bad)


def test_the_check_sees_a_backward_import(tmp_path):
    """The rule itself: a core module importing an experiment is caught."""
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from sim.experiments.pluralism import run_pluralism\n")
    assert [layer(m) for _, m in imports(bad)] == [LAYERS.index("sim.experiments")]
    assert layer("sim.config") == LAYERS.index("sim") < LAYERS.index("sim.report") == layer("sim.report.render")


def test_the_core_packages_keep_their_order(tmp_path):
    """Inside the core: the run infrastructure below the society, the society below the gate, and the modules that
    drive both (checkpoint, lifecycle) above them; a seed helper importing the society is caught."""
    assert layer("sim.run.seeding") < layer("sim.society.model") < layer("sim.gate.calibration") < layer("sim.run.lifecycle")
    assert layer("sim.society.records") < layer("sim.run.store") and layer("sim.society") == layer("sim.society.citizen")
    bad = tmp_path / "m.py"
    bad.write_text("from sim.society.model import Society\nfrom sim.gate import calibration\n")
    assert [layer(m) > layer("sim.run.seeding") for _, m in imports(bad)] == [True, True]


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_project_import_resolves(path):
    """Lazy imports run only when their function does: each ``from ours import name`` must name something
    that exists (a module moved in a redesign leaves such imports behind)."""
    import importlib

    missing = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and layer(node.module) is not None:
            mod = importlib.import_module(node.module)
            missing += [f"line {node.lineno}: {node.module}.{a.name}" for a in node.names
                        if not hasattr(mod, a.name) and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
    assert not missing, "; ".join(missing)
