"""Everything ``agora`` can run, each in its own module: the society run (``society_run``), the
generations loop (``generations``), the research experiments (``study.kind``: ``pluralism``,
``norms``, ``ablation``, ``overton``) and what they share (``collective`` votes, ``evaluate`` suites,
``injection`` measurement). :func:`runner_for` is the one place a config is mapped to its runner;
:func:`preflight` refuses, before any work, a run that cannot mean anything or a setting that cannot be
honoured (each runner calls it first, so the CLI and a sweep get the same one-line error)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from agents.llm.base import LLMBackend
from scenarios.dilemma import Dilemma, load_dilemmas
from scenarios.errors import InputError
from sim.config import AgoraConfig

Runner = Callable[[AgoraConfig, Path, LLMBackend | None], dict[str, Any]]


class Refused(InputError):
    """A run refused by :func:`preflight`, before any work: nothing of it is worth keeping (the CLI removes the
    folder it made for the run, as for a bad config)."""


# study.kind -> (module, runner); ``society`` runs the generations loop when ``alignment.generations > 0``
RUNNERS = {
    "pluralism": ("sim.experiments.pluralism", "run_pluralism"),
    "evolving_norms": ("sim.experiments.norms", "run_evolving_norms"),
    "constitution_ablation": ("sim.experiments.ablation", "run_constitution_ablation"),
    "inverse_constitution": ("sim.experiments.inverse", "run_inverse_constitution"),
    "overton": ("sim.experiments.overton", "run_overton"),
    "human_distributions": ("sim.experiments.human", "run_human_distributions"),
    "generations": ("sim.experiments.generations", "run_generations"),
    "society": ("sim.experiments.society_run", "run"),
}


def _entry(cfg: AgoraConfig) -> tuple[ModuleType, str]:
    kind = cfg.study.kind
    if kind == "society" and cfg.alignment.generations > 0:
        kind = "generations"
    if kind not in RUNNERS:
        raise InputError(f"study.kind '{kind}' is not an experiment")
    module, name = RUNNERS[kind]
    return importlib.import_module(module), name


def runner_for(cfg: AgoraConfig) -> Runner:
    """The entry point that runs ``cfg``: an experiment (``study.kind``), the generations loop
    (``alignment.generations > 0``) or one society run."""
    module, name = _entry(cfg)
    return getattr(module, name)


def study_dilemmas(cfg: AgoraConfig, n: int, setting: str, minimum: int = 1) -> list[Dilemma]:
    """The pool of ``scenario.dilemmas`` an experiment samples ``n`` from (its ``setting``), refused in one
    line when the file has fewer than ``n`` (a seeded sample would silently be the whole, smaller file) or
    than the experiment's ``minimum``."""
    pool = load_dilemmas(cfg.scenario.dilemmas)
    if len(pool) < minimum:
        raise InputError(f"{cfg.scenario.dilemmas}: {len(pool)} dilemma(s); experiment={cfg.study.kind} needs at least "
                         f"{minimum} (its intervals are over dilemmas)")
    if len(pool) < n:
        raise InputError(f"{cfg.scenario.dilemmas}: {len(pool)} dilemma(s), fewer than {setting}={n} "
                         f"(set it to at most {len(pool)})")
    return pool


def preflight(cfg: AgoraConfig) -> None:
    """Every check a run makes before any work (:class:`Refused`, one line): the label-quality gate's
    slice sizes, then the experiment's own inputs and settings. Reads input files; loads no model."""
    from sim.calibration import check as check_gate

    try:
        check_gate(cfg)
        check = getattr(_entry(cfg)[0], "check", None)  # an experiment module's own check(cfg), when it has one
        if check is not None:
            check(cfg)
    except Refused:
        raise
    except InputError as exc:
        raise Refused(str(exc)) from None


def run_experiment(cfg: AgoraConfig, out_dir: Path, backend: LLMBackend | None = None) -> dict[str, Any]:
    """Run ``cfg`` into ``out_dir`` (see :func:`runner_for`); its ``summary.json`` contents."""
    return runner_for(cfg)(cfg, out_dir, backend)
