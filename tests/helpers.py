"""What tests of every group share: the checkout's root, small configs, and the commands run as a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
# ``code=`` for the other console scripts, started as their installed scripts start them (sim/launch.py)
AGORA_EVAL = "from sim.launch import eval_main; eval_main()"
AGORA_REPORT = "from sim.launch import report_main; report_main()"
AGORA_SANITY = "from sim.launch import sanity_main; sanity_main()"
AGORA_INJECTION = "from sim.launch import injection_main; injection_main()"


def _argv(args: tuple[str, ...], module: str, code: str | None) -> list[str]:
    return [sys.executable, *(("-c", code) if code is not None else ("-m", module)), *args]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child command: this one, ``extra`` on top, and this checkout first on ``PYTHONPATH``
    (a child started outside ROOT would otherwise import whatever `pip install -e` points at)."""
    env = {**os.environ, **(extra or {})}
    return env | {"PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}


def agora(*args: str, module: str = "sim.cli", code: str | None = None, cwd: Path = ROOT,
          timeout: float = 600, env: Mapping[str, str] | None = None, raw: bool = False) -> subprocess.CompletedProcess:
    """Run ``agora ARGS...`` in a child process and wait; stdout and stderr are captured as text.

    Args:
        module: the entry point's module (``sim.cli`` is ``agora``).
        code: run ``python -c CODE ARGS...`` instead: :data:`AGORA_EVAL`, :data:`AGORA_REPORT`, or a child that
            patches something, then calls ``main()``.
        cwd: where the child starts (Hydra's default output folder and relative paths are under it).
        timeout: seconds before the child is killed and the test fails.
        env: variables set for the child on top of this process's (e.g. ``AGORA_CACHE``).
        raw: capture bytes exactly as written (text mode reads a CR as a line end).
    """
    return subprocess.run(_argv(args, module, code), cwd=cwd, env=child_env(env), capture_output=True, text=not raw,
                          timeout=timeout)


def start_agora(*args: str, module: str = "sim.cli", code: str | None = None, cwd: Path = ROOT,
                stderr: int | IO[str] = subprocess.DEVNULL, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """Start ``agora ARGS...`` (as :func:`agora`) without waiting, its output discarded (``stderr=subprocess.PIPE``
    or an open file keeps the errors, as text); the caller kills or waits."""
    return subprocess.Popen(_argv(args, module, code), cwd=cwd, env=child_env(env), stdout=subprocess.DEVNULL,
                            stderr=stderr, text=True)


def compose(*overrides: str, scripted: bool = True):
    """The checked config ``agora OVERRIDES...`` would run (``conf/`` YAML, not the dataclass defaults);
    on the scripted backend with no progress bar unless ``scripted`` is false."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    import sim.cli  # noqa: F401  (registers the schema)

    base = ["llm=scripted", "sim.progress=false"] if scripted else []
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return OmegaConf.to_object(hydra_compose("config", overrides=[*base, *overrides]))


def tiny_config(**sim_overrides):
    """Six agents, one step, 12-token replies on the scripted backend (dataclass defaults otherwise)."""
    from sim.config import AgoraConfig, LLMConfig, PopulationConfig, SimConfig, TokenBudget

    sim = {"steps": 1, "group_size": 2, "tokens": TokenBudget(stance=12, debate=12, critique=12, revision=12),
           "progress": False, **sim_overrides}
    return AgoraConfig(name="test", llm=LLMConfig(backend="scripted"), population=PopulationConfig(size=6),
                       sim=SimConfig(**sim))
