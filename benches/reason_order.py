"""What ``sim.reason=after_choice`` costs against ``before_choice``: one society step, the same config otherwise.

``python -m benches.reason_order [N] [REPS]``: the framework's cost on the scripted backend (CPU seconds of a
step of N agents, median of REPS, the two modes alternated). ``--embedded``: wall seconds of a default step
(12 agents) on the embedded model, the same loaded weights for both modes. Both modes make the same calls (one
reason generation and the same readings per agent); after_choice only orders them (readings first).
"""

from __future__ import annotations

import statistics
import sys
import time

from agents.llm.base import LLMBackend
from scenarios.constitution import load_constitution
from scenarios.dilemma import load_dilemmas
from sim.config import AgoraConfig, LLMConfig, PopulationConfig, SimConfig
from sim.society.model import Society

MODES = ("before_choice", "after_choice")


def step_seconds(cfg: AgoraConfig, backend: LLMBackend) -> tuple[float, float, dict[str, float]]:
    """(CPU seconds, wall seconds, phase seconds) of one step."""
    soc = Society(cfg, load_dilemmas("default"), load_constitution("harmlessness"), backend, run_id="bench")
    c0, w0 = time.process_time(), time.perf_counter()
    soc.step()
    return time.process_time() - c0, time.perf_counter() - w0, dict(soc.clock.seconds)


def main(argv: list[str]) -> None:
    embedded = "--embedded" in argv
    args = [int(a) for a in argv if not a.startswith("--")]
    n, reps = (args + [300, 5])[:2] if not embedded else (12, (args + [1])[0])
    if embedded:
        from agents.llm.embedded import EmbeddedBackend

        shared: LLMBackend = EmbeddedBackend()
    out: dict[str, list[tuple[float, float, dict[str, float]]]] = {m: [] for m in MODES}
    for rep in range(reps):
        for mode in MODES if rep % 2 == 0 else MODES[::-1]:
            if embedded:
                cfg = AgoraConfig(sim=SimConfig(steps=1, progress=False, reason=mode))
                backend = shared
            else:
                from agents.llm.scripted import ScriptedBackend

                cfg = AgoraConfig(llm=LLMConfig(backend="scripted"), population=PopulationConfig(size=n),
                                  sim=SimConfig(steps=1, progress=False, reason=mode))
                backend = ScriptedBackend(record=False)
            out[mode].append(step_seconds(cfg, backend))
    for mode, xs in out.items():
        cpu, wall = statistics.median(x[0] for x in xs), statistics.median(x[1] for x in xs)
        phases = " ".join(f"{k} {statistics.median(x[2][k] for x in xs):.2f}" for k in xs[0][2])
        print(f"{mode}: {n} agents, {reps} reps: CPU {cpu:.3f} s ({1000 * cpu / n:.3f} ms per agent-step), wall {wall:.2f} s;"
              f" phases (s): {phases}")
    key = 1 if embedded else 0  # wall on the model (it waits on nothing else), CPU for the framework
    b, a = (statistics.median(x[key] for x in out[m]) for m in MODES)
    print(f"after_choice / before_choice ({'wall' if embedded else 'CPU'}): {a / b:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
