"""Dispatch for the research experiments (``study.kind``); each lives in its own module."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.llm.base import LLMBackend
from scenarios.dilemma import InputError
from sim.config import AgoraConfig

Runner = Callable[[AgoraConfig, Path, LLMBackend | None], dict[str, Any]]


def runner_for(cfg: AgoraConfig) -> Runner:
    """What ``agora`` runs for ``cfg``: an experiment (``study.kind``), generations of society, reward
    model and DPO (``alignment.generations > 0``), or one society run. Called as ``runner(cfg, out_dir,
    backend)``; the summary's ``kind`` says which ran."""
    if cfg.study.kind != "society":
        return run_study
    if cfg.alignment.generations > 0:
        from sim.evolve import run_generations  # imported on use: it pulls in the trainers

        return run_generations
    from sim.run import run

    return run


def run_study(cfg: AgoraConfig, out_dir: Path, backend: LLMBackend | None = None) -> dict[str, Any]:
    kind = cfg.study.kind
    if kind == "pluralism":
        from sim.pluralism import run_pluralism

        return run_pluralism(cfg, out_dir, backend)
    if kind == "evolving_norms":
        from sim.norms import run_evolving_norms

        return run_evolving_norms(cfg, out_dir, backend)
    if kind == "constitution_ablation":
        from sim.ablation import run_constitution_ablation

        return run_constitution_ablation(cfg, out_dir, backend)
    raise InputError(f"study.kind '{kind}' is not an experiment")
