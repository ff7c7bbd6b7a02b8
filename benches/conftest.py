"""Benchmark fixtures: one embedded model per session, shared by agora's engine and the baselines."""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


@pytest.fixture(scope="session")
def backend():
    from agents.llm.embedded import EmbeddedBackend

    return EmbeddedBackend(max_batch_size=32)


@pytest.fixture(autouse=True)
def _environment(request, backend):
    """Record the software and device beside each benchmark's figures, and the machine's 1-minute load
    average at the benchmark's start and end (other jobs may share the cores: a load above the torch
    threads means they did)."""
    if "benchmark" not in request.fixturenames:
        yield
        return
    import torch
    import transformers

    from benches.workloads import QUICK

    request.getfixturevalue("benchmark").extra_info["environment"] = {
        "torch": torch.__version__, "transformers": transformers.__version__, "device": str(backend.device),
        "dtype": str(next(backend.model.parameters()).dtype).removeprefix("torch."), "threads": torch.get_num_threads(),
        "model": backend.name, "params": f"{sum(p.numel() for p in backend.model.parameters()) / 1e6:.0f}M",
        "quick": QUICK}
    start = os.getloadavg()[0]
    yield
    request.getfixturevalue("benchmark").extra_info["load_avg_1m"] = [round(start, 2), round(os.getloadavg()[0], 2)]


@dataclass(frozen=True)
class Timing:
    """Seconds per round of one side of a benchmark."""

    seconds: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.mean(self.seconds)

    @property
    def sd(self) -> float | None:
        """Sample standard deviation over the rounds (None from one round: no spread to report)."""
        return statistics.stdev(self.seconds) if len(self.seconds) > 1 else None


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def measure(fn: Callable[[], Any], rounds: int) -> tuple[list[Any], Timing]:
    """A baseline, timed as pytest-benchmark times a pedantic round (``time.perf_counter`` around one
    call, no warm-up rounds): every round's output and seconds."""
    outs, secs = [], []
    for _ in range(rounds):
        out, s = timed(fn)
        outs.append(out)
        secs.append(s)
    return outs, Timing(tuple(secs))


def bench(benchmark, fn: Callable[[], Any], rounds: int) -> tuple[list[Any], Timing]:
    """agora's side through pytest-benchmark's own rounds (its statistics go to ``results.json``); the
    same clock and round as :func:`measure` gives the baseline. Every round's output and seconds."""
    outs: list[Any] = []
    benchmark.pedantic(lambda: outs.append(fn()), rounds=rounds, iterations=1)
    if benchmark.stats is None:  # --benchmark-disable: pedantic called fn once, untimed
        more, timing = measure(fn, rounds)
        return more, timing
    return outs, Timing(tuple(benchmark.stats.stats.data))


def record(benchmark, *, name: str, unit: str, items: int, agora: Timing, baseline: Timing, baseline_is: str,
           target: float | None = None, **extra: Any) -> float:
    """Put the figures where ``benches/report.py`` reads them (pytest-benchmark's ``extra_info``): each
    side's mean seconds with its spread and rounds, and the ratio of means with the spread the two
    sides' give it (relative errors in quadrature; a side of one round adds none)."""
    ratio = baseline.mean / agora.mean
    rel = [t.sd / t.mean for t in (agora, baseline) if t.sd is not None]
    benchmark.extra_info.update(
        name=name, unit=unit, items=items, agora_s=round(agora.mean, 3), baseline_s=round(baseline.mean, 3),
        agora_sd=None if agora.sd is None else round(agora.sd, 3),
        baseline_sd=None if baseline.sd is None else round(baseline.sd, 3),
        agora_rounds=len(agora.seconds), baseline_rounds=len(baseline.seconds),
        agora_rate=round(items / agora.mean, 3), baseline_rate=round(items / baseline.mean, 3), baseline=baseline_is,
        ratio=round(ratio, 2), ratio_sd=round(ratio * math.sqrt(sum(r * r for r in rel)), 2) if rel else None,
        target=target, **extra)
    return ratio
