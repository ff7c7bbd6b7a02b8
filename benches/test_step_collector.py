"""The framework's CPU per agent-step and what the step's garbage-collector policy saves, scripted backend.

Two measurements, both of the default config with ``llm=scripted`` (no model: the framework alone):

- ``collector_ratio``: one society step of ``AGORA_COLLECTOR_AGENTS`` agents (default 3,000) in this process,
  rounds alternating between the baseline policy (``StepCollector(young=None, freeze_survivors=False)``: the
  pre-step heap frozen, CPython's thresholds, as before) and the one ``Society.step`` uses; the step's process
  CPU time (``time.process_time``) per side, the ratio of medians, and the rows checked equal across all rounds.
- ``agent_step_cpu``: whole ``agora llm=scripted population.size=N sim.steps=1`` runs (one process each,
  checkpointed, every output written) at 1,000, 3,000 and 10,000 agents, ``AGORA_COLLECTOR_REPEATS`` (3) times
  each; CPU per agent-step = (the run's CPU − a 10-agent run's CPU) / N, median and range over repeats; the
  exponent of that CPU against N from 3,000 to 10,000, and a projection to 100,000 agents from it.

Not in ``make bench`` (marked slow, ~6 min on 2 cores)::

    python -m pytest benches/test_step_collector.py -m slow --benchmark-json=benches/collector.json
    python -m benches.report benches/results.json --profile benches/profile.json --collector benches/collector.json
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from benches.test_population_scale import measure

ROOT = Path(__file__).resolve().parents[1]
SIZES = (1_000, 3_000, 10_000)
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _environment(request):
    """Overrides ``benches/conftest.py``'s: these runs load no model."""
    import platform

    request.getfixturevalue("benchmark").extra_info["environment"] = {
        "python": platform.python_version(), "cpus": os.cpu_count(), "backend": "scripted"}


def _config(n: int):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import sim.cli  # noqa: F401  (registers the config schema)

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="config", overrides=[
            "llm=scripted", f"population.size={n}", "sim.steps=1", "sim.progress=false"]))


def _spread(xs: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(xs), 4), "min": round(min(xs), 4), "max": round(max(xs), 4)}


def test_collector_ratio(benchmark):
    import sim.society.model
    from scenarios.constitution import load_constitution
    from scenarios.dilemma import load_dilemmas
    from sim.run.lifecycle import make_backend
    from sim.society.model import Society, StepCollector

    n = int(os.environ.get("AGORA_COLLECTOR_AGENTS", "3000"))
    rounds = int(os.environ.get("AGORA_COLLECTOR_ROUNDS", "3"))
    cfg = _config(n)
    dilemmas, constitution = load_dilemmas(cfg.scenario.dilemmas), load_constitution(cfg.constitution.name)
    policies = {"baseline": StepCollector(young=None, freeze_survivors=False), "agora": sim.society.model.STEP_COLLECTOR}
    cpu: dict[str, list[float]] = {k: [] for k in policies}
    rows: list[tuple[Any, ...]] = []

    def one(policy: str) -> None:
        soc = Society(cfg, dilemmas, constitution, make_backend(cfg.llm), run_id="collector")
        sim.society.model.STEP_COLLECTOR = policies[policy]
        try:
            t0 = time.process_time()
            soc.step()
            cpu[policy].append(time.process_time() - t0)
        finally:
            sim.society.model.STEP_COLLECTOR = policies["agora"]
        rows.append((soc.stances, soc.transcripts, soc.preferences))

    def both() -> None:  # alternating, so a change of machine load falls on both sides alike
        for _ in range(rounds):
            one("baseline")
            one("agora")

    warm = _config(10)  # imports and first-call costs (autogen is imported by the first debate) off the clock
    Society(warm, dilemmas, constitution, make_backend(warm.llm), run_id="warm-up").step()
    benchmark.pedantic(both, rounds=1, iterations=1)
    assert all(r == rows[0] for r in rows[1:]), "a collector policy changed the step's rows"
    base, ours = statistics.median(cpu["baseline"]), statistics.median(cpu["agora"])
    benchmark.extra_info.update(
        name="collector_ratio", agents=n, rounds=rounds, policy=str(policies["agora"]),
        baseline_ms_per_agent=_spread([1e3 * s / n for s in cpu["baseline"]]),
        agora_ms_per_agent=_spread([1e3 * s / n for s in cpu["agora"]]),
        ratio=round(base / ours, 3), load=os.getloadavg()[0], rows_equal=True)


def test_agent_step_cpu(benchmark):
    repeats = int(os.environ.get("AGORA_COLLECTOR_REPEATS", "3"))
    runs: list[dict[str, Any]] = []

    def all_sizes() -> None:
        for _ in range(repeats):  # sizes interleaved, so load changes spread over all of them
            for n in (10, *SIZES):
                runs.append(measure(n, timeout_s=900) | {"load": os.getloadavg()[0]})

    benchmark.pedantic(all_sizes, rounds=1, iterations=1)
    assert all(r["finished"] for r in runs), [r for r in runs if not r["finished"]]
    benchmark.extra_info.update(name="agent_step_cpu", repeats=repeats, runs=runs, **per_agent_step(runs))


def per_agent_step(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU per agent-step by size (median and range over repeats), the exponent of the framework's CPU against N
    between the two largest sizes, and 100,000 agents projected with it. The smallest size is left out of the
    fit: a 1,000-agent run still carries fixed costs a 10-agent one does not (the social-graph plot lays out
    ``MAX_DRAWN`` = 500 agents), which bend a fit from it below 1."""
    base = statistics.median(r["cpu_s"] for r in runs if r["agents"] == 10)
    per = {n: [1e3 * (r["cpu_s"] - base) / n for r in runs if r["agents"] == n] for n in SIZES}
    cpu = {n: statistics.median(r["cpu_s"] for r in runs if r["agents"] == n) - base for n in SIZES}
    a, b = SIZES[-2], SIZES[-1]
    k = math.log(cpu[b] / cpu[a]) / math.log(b / a)
    return {"base_cpu_s": round(base, 2), "ms_per_agent_step": {n: _spread(v) for n, v in per.items()},
            "cpu_exponent": round(k, 3), "exponent_sizes": [a, b],
            "projected_100k_ms": round(cpu[b] * (100_000 / b) ** k / 100_000 * 1e3, 3),
            "load": [round(r["load"], 2) for r in runs]}
