"""Profile one default step (the shipped config, ``sim.steps=1``) end to end with cProfile and
sort its time into buckets, so the next optimisation is chosen by evidence.

    python -m benches.profile_step [--out benches/profile.json] [override ...]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# bucket -> (file suffix, function name); cumulative times of these do not nest in one another
# (tokenisation happens outside forward passes, sampling after them, Mesa/parquet outside the LLM).
BUCKETS = {
    "model forward (torch)": [("modeling_llama.py", "forward@LlamaForCausalLM")],
    "tokenisation + chat template": [("embedded/engine.py", "_prompt_ids"), ("tokenization_utils_base.py", "decode")],
    "sampling": [("embedded/decode.py", "_sample")],
    "prefix planning + padding": [("embedded/prefix.py", "plan_prefix_groups"), ("embedded/engine.py", "_left_pad")],
    "Mesa bookkeeping (DataCollector)": [("datacollection.py", "collect")],
    "society set-up (population, graph)": [("society.py", "__init__")],
    "parquet + json writing": [("store.py", "write_feedback"), ("store.py", "write_json")],
    "plots": [("plots.py", "*")],
}


def _cum(stats: pstats.Stats, suffix: str, func: str) -> float:
    total, best = 0.0, 0.0
    for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if not file.endswith(suffix):
            continue
        if func == "forward@LlamaForCausalLM":
            if name == "forward":
                best = max(best, ct)  # the outermost forward (the LM) has the largest cumulative time
        elif func == "*" or name == func:
            total += ct
    return best or total


def main(argv: list[str] | None = None) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import sim.cli  # noqa: F401  (registers the config schema)
    from sim.experiments import run_experiment as run
    from sim.run.lifecycle import make_backend

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("profile.json"))
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args(argv)
    overrides = ["sim.steps=1", "sim.progress=false", *a.overrides]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="config", overrides=overrides))
    backend = make_backend(cfg.llm)  # loading the model is not part of a step
    prof = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        prof.enable()
        run(cfg, Path(tmp), backend=backend)
        prof.disable()
        wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    buckets = {k: sum(_cum(stats, s, f) for s, f in v) for k, v in BUCKETS.items()}
    buckets["other (asyncio, autogen, prompts, metrics)"] = max(0.0, wall - sum(buckets.values()))
    top = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:8]  # type: ignore[attr-defined]
    notes = ["top own-time functions: " + "; ".join(f"{n} ({Path(f).name}) {tt:.1f} s" for (f, _l, n), (_c, _n, tt, _ct, _) in top)]
    out = {"command": "agora sim.steps=1 " + " ".join(a.overrides), "population": cfg.population.size, "wall_s": wall,
           "buckets": buckets, "notes": notes}
    a.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
