"""The run configuration: light to import, one source of truth for defaults, frozen once checked."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import typing

import pytest
import yaml

from tests.helpers import ROOT


def test_importing_the_config_loads_no_torch_and_leaves_the_hub_setting_alone():
    probe = ("import os, sys; os.environ.pop('HF_HUB_OFFLINE', None); import sim.config; "
             "print(sorted(m for m in ('torch', 'transformers', 'agents.llm.embedded') if m in sys.modules), "
             "os.environ.get('HF_HUB_OFFLINE'))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "None"]


# -- one source of truth: conf/ group files hold only what names their option -----------------------------
CONF = ROOT / "conf"
SELECTORS = {"llm": "backend", "network": "kind", "constitution": "name"}  # the key that names each option


def group_classes() -> dict[str, type]:
    from sim.config import AgoraConfig

    hints = typing.get_type_hints(AgoraConfig)
    return {d.name: hints[d.name] for d in sorted(CONF.iterdir()) if d.is_dir() and d.name in hints}


def compose_config(*overrides: str):
    """The ``DictConfig`` the CLI gets for these overrides."""
    from hydra import compose, initialize_config_module

    from sim.cli import register_configs

    register_configs()  # the schema and the study nodes, as the CLI registers them
    with initialize_config_module(config_module="conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def composed(*overrides: str) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose_config(*overrides))


def test_the_cli_default_config_is_the_dataclass_default():
    from sim.config import AgoraConfig

    assert composed() == dataclasses.asdict(AgoraConfig())


def test_every_group_option_is_its_dataclass_with_only_what_names_it_changed():
    classes = group_classes()
    assert set(classes) == {"llm", "population", "network", "scenario", "constitution", "sim"}
    for group, cls in classes.items():
        default = dataclasses.asdict(cls())
        for path in sorted((CONF / group).glob("*.yaml")):
            values = yaml.safe_load(path.read_text()) or {}
            restated = {k: v for k, v in values.items() if k != SELECTORS.get(group) and default[k] == v}
            assert not restated, f"{path.relative_to(ROOT)} restates dataclass defaults {restated}"
            assert composed(f"{group}={path.stem}")[group] == dataclasses.asdict(cls(**values)), path


# -- constitution=NAME for every bundled constitution -----------------------------------------------------
def test_every_bundled_constitution_is_a_group_option():
    from scenarios.constitution import bundled_constitutions

    assert sorted(p.stem for p in (CONF / "constitution").glob("*.yaml")) == bundled_constitutions()
    for name in bundled_constitutions():
        assert composed(f"constitution={name}")["constitution"]["name"] == name


def test_the_documented_constitution_options_compose_as_written():
    page = (ROOT / "docs" / "configuration.md").read_text()  # the groups table
    row = next(line for line in page.splitlines() if line.startswith("| `constitution` |"))
    options = re.findall(r"`(\w+)`", row.split("|")[2].split(" or ")[0])
    everywhere = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))])
    overrides = {f"constitution={o}" for o in options} | set(re.findall(r"constitution=\w+", everywhere))
    assert {"constitution=single_care", "constitution=none"} <= overrides
    for override in sorted(overrides):
        assert composed(override)["constitution"]["name"] == override.split("=")[1], override


# -- frozen once checked ---------------------------------------------------------------------------------
def nested_configs(obj) -> list:
    """``obj`` and every config object inside it (nested dataclasses and dataclasses in lists)."""
    found = [obj]
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        for item in value if isinstance(value, list) else [value]:
            if dataclasses.is_dataclass(item):
                found += nested_configs(item)
    return found


def test_a_composed_config_is_frozen_all_the_way_down():
    from omegaconf import OmegaConf

    schedule = "[{generation:0,name:confucian,cluster:confucian},{generation:2,name:english,cluster:english_speaking}]"
    dcfg = compose_config("experiment=evolving_norms", "constitution.collective.enabled=true", "alignment.reward.epochs=1",
                          "sim.tokens.stance=5", "population.clusters=[confucian,islamic]", f"study.norms.schedule={schedule}")
    cfg = OmegaConf.to_object(dcfg)
    assert cfg.alignment.reward.epochs == 1 and cfg.sim.tokens.stance == 5 and cfg.constitution.collective.enabled
    assert [n.name for n in cfg.study.norms.schedule] == ["confucian", "english"]
    objects = nested_configs(cfg)
    studies = len(dataclasses.fields(cfg.study)) - 1  # one settings object per study (``kind`` is not one)
    assert len(objects) == 18 + studies  # AgoraConfig, its 11 parts, tokens, collective, reward, dpo, 2 norms
    for obj in objects:
        name = dataclasses.fields(obj)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, name, getattr(obj, name))


# -- every draw from the seed tree -----------------------------------------------------------------------
def test_no_seed_is_made_by_arithmetic_outside_the_seed_tree():
    """``seed + g`` collides across purposes (the split of generation 1 is the draw of generation 0's
    seed + 1); seeds come from ``sim.run.seeding.child_seed(root, purpose..., generation)`` instead."""
    import ast

    def is_seed(node: ast.AST) -> bool:
        name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
        return name.endswith("seed")

    found = []
    for path in sorted([*(ROOT / "sim").rglob("*.py"), *(ROOT / "alignment").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            # any arithmetic with a seed anywhere in it: `seed + g`, and `seed * 1000 + 2 * j + k` too
            if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Mod | ast.BitXor)
                    and any(is_seed(n) for n in ast.walk(node))):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found
