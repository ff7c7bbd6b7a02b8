"""Benchmark fixtures: one embedded model per session, shared by agora's engine and the baselines."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture(scope="session")
def backend():
    from agents.llm.embedded import EmbeddedBackend

    return EmbeddedBackend(max_batch_size=32)


@pytest.fixture(autouse=True)
def _environment(request, backend):
    """Record the software and device beside each benchmark's figures."""
    if "benchmark" not in request.fixturenames:
        return
    import torch
    import transformers

    from benches.workloads import QUICK

    request.getfixturevalue("benchmark").extra_info["environment"] = {
        "torch": torch.__version__, "transformers": transformers.__version__, "device": str(backend.device),
        "dtype": str(next(backend.model.parameters()).dtype).removeprefix("torch."), "threads": torch.get_num_threads(),
        "model": backend.name, "params": f"{sum(p.numel() for p in backend.model.parameters()) / 1e6:.0f}M",
        "quick": QUICK}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def record(benchmark, *, name: str, unit: str, items: int, agora_s: float, baseline_s: float, baseline: str,
           target: float | None = None, **extra: Any) -> float:
    """Put the figures where ``benches/report.py`` reads them (pytest-benchmark's ``extra_info``)."""
    ratio = baseline_s / agora_s
    benchmark.extra_info.update(
        name=name, unit=unit, items=items, agora_s=round(agora_s, 3), baseline_s=round(baseline_s, 3),
        agora_rate=round(items / agora_s, 3), baseline_rate=round(items / baseline_s, 3), baseline=baseline,
        ratio=round(ratio, 2), target=target, **extra)
    return ratio
