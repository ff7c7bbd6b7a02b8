"""Dispatch for the research experiments (``study.kind``); each lives in its own module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.llm.base import LLMBackend
from scenarios.dilemma import InputError
from sim.config import AgoraConfig


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
