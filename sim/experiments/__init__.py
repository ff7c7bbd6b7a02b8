"""Everything ``agora`` can run, each in its own module: the society run (``society_run``), the
generations loop (``generations``), the research experiments (``study.kind``: ``pluralism``,
``norms``, ``ablation``, ``overton``) and what they share (``collective`` votes, ``evaluate`` suites,
``injection`` measurement). :func:`runner_for` is the one place a config is mapped to its runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.llm.base import LLMBackend
from scenarios.errors import InputError
from sim.config import AgoraConfig

Runner = Callable[[AgoraConfig, Path, LLMBackend | None], dict[str, Any]]


def runner_for(cfg: AgoraConfig) -> Runner:
    """The entry point that runs ``cfg``: an experiment (``study.kind``), the generations loop
    (``alignment.generations > 0``) or one society run."""
    kind = cfg.study.kind
    if kind == "pluralism":
        from sim.experiments.pluralism import run_pluralism

        return run_pluralism
    if kind == "evolving_norms":
        from sim.experiments.norms import run_evolving_norms

        return run_evolving_norms
    if kind == "constitution_ablation":
        from sim.experiments.ablation import run_constitution_ablation

        return run_constitution_ablation
    if kind == "inverse_constitution":
        from sim.experiments.inverse import run_inverse_constitution

        return run_inverse_constitution
    if kind == "overton":
        from sim.experiments.overton import run_overton

        return run_overton
    if kind == "human_distributions":
        from sim.experiments.human import run_human_distributions

        return run_human_distributions
    if kind != "society":
        raise InputError(f"study.kind '{kind}' is not an experiment")
    if cfg.alignment.generations > 0:
        from sim.experiments.generations import run_generations

        return run_generations
    from sim.experiments.society_run import run

    return run


def run_experiment(cfg: AgoraConfig, out_dir: Path, backend: LLMBackend | None = None) -> dict[str, Any]:
    """Run ``cfg`` into ``out_dir`` (see :func:`runner_for`); its ``summary.json`` contents."""
    return runner_for(cfg)(cfg, out_dir, backend)
