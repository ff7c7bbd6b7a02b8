"""Step wall time against population size: work per agent is constant, so time should grow ~N.

The exponent is the least-squares slope of log(time) on log(N). The embedded-model run is the
issue's target; the scripted-backend run isolates the framework (Mesa, graph, prompts, autogen,
bookkeeping) at larger N, where any quadratic term would show first.
"""

from __future__ import annotations

import numpy as np

from benches.conftest import Timing, bench, measure, timed
from benches.workloads import QUICK, rounds, size


def exponent(ns: list[int], seconds: list[float]) -> float:
    return float(np.polyfit(np.log(ns), np.log(seconds), 1)[0])


def _config(n: int, backend: str, tokens: int):
    from sim.config import AgoraConfig, LLMConfig, PopulationConfig, SimConfig, TokenBudget

    return AgoraConfig(name="scaling", llm=LLMConfig(backend=backend), population=PopulationConfig(size=n),
                       sim=SimConfig(steps=1, progress=False, tokens=TokenBudget(stance=tokens, debate=tokens,
                                                                                   critique=tokens, revision=tokens)))


def _step_seconds(cfg, backend) -> float:
    from scenarios.constitution import load_constitution
    from scenarios.dilemma import load_dilemmas
    from sim.society.model import Society

    soc = Society(cfg, load_dilemmas("default"), load_constitution(cfg.constitution.name), backend, run_id="scaling")
    _, seconds = timed(soc.step)
    assert len(soc.preferences) == cfg.population.size + cfg.population.size // 2
    return seconds


def _scaling(benchmark, ns: list[int], step, n_rounds: int) -> tuple[list[float], list[float | None]]:
    """Mean and spread of ``step(n)``'s seconds (the step alone, not building the society) per population,
    over ``n_rounds`` rounds; the largest population through pytest-benchmark's rounds."""
    outs = [measure(lambda n=n: step(n), n_rounds)[0] for n in ns[:-1]]
    outs.append(bench(benchmark, lambda: step(ns[-1]), n_rounds)[0])
    timings = [Timing(tuple(o)) for o in outs]
    return [t.mean for t in timings], [t.sd for t in timings]


def test_step_time_scales_linearly_with_population(benchmark, backend):
    ns = [4, 8] if QUICK else [8, 16, 32, 64]
    tokens = size(12, 4)
    if not QUICK:
        _step_seconds(_config(4, "embedded", tokens), backend)  # warm-up
    # one round by default: the four populations take ~12 minutes together
    means, sds = _scaling(benchmark, ns, lambda n: _step_seconds(_config(n, "embedded", tokens), backend), rounds(1))
    k = exponent(ns, means)
    benchmark.extra_info.update(name="scaling", unit="s/step", populations=ns, step_seconds=[round(s, 2) for s in means],
                                step_seconds_sd=[None if s is None else round(s, 2) for s in sds], rounds=rounds(1),
                                tokens_per_reply=tokens, exponent=round(k, 3), target=1.15)
    if not QUICK:
        assert k <= 1.15


def test_framework_overhead_scales_linearly(benchmark):
    from agents.llm.scripted import ScriptedBackend

    ns = [16, 32] if QUICK else [32, 64, 128, 256, 512]
    _step_seconds(_config(8, "scripted", 12), ScriptedBackend())  # warm-up: first autogen team, imports
    means, sds = _scaling(benchmark, ns, lambda n: _step_seconds(_config(n, "scripted", 12), ScriptedBackend()), rounds(5))
    k = exponent(ns, means)
    benchmark.extra_info.update(name="scaling_framework", unit="s/step", populations=ns,
                                step_seconds=[round(s, 3) for s in means],
                                step_seconds_sd=[None if s is None else round(s, 3) for s in sds], rounds=rounds(5),
                                exponent=round(k, 3), target=1.15)
    if not QUICK:
        assert k <= 1.15
