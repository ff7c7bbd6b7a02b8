"""The run configuration: light to import, one source of truth for defaults, frozen once checked."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import typing

import yaml

from tests.conftest import ROOT


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


def composed(*overrides: str) -> dict:
    from hydra import compose, initialize_config_module
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from sim.config import AgoraConfig

    ConfigStore.instance().store(name="agora_schema", node=AgoraConfig)  # as the CLI registers it
    with initialize_config_module(config_module="conf", version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="config", overrides=list(overrides)))


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


def test_the_readme_constitution_options_compose_as_written():
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `constitution` |"))
    options = re.findall(r"`(\w+)`", row.split("|")[2].split(" or ")[0])
    overrides = {f"constitution={o}" for o in options} | set(re.findall(r"constitution=\w+", readme))
    assert {"constitution=single_care", "constitution=none"} <= overrides
    for override in sorted(overrides):
        assert composed(override)["constitution"]["name"] == override.split("=")[1], override
