"""The GPU check (benches/gpu_check.sh) passes its CPU dry run, so it is known to work before a GPU is lent."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run_measures_every_section_with_answers_equal(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "new"), "PYTHON": sys.executable}  # a folder not made yet: made at the end
    done = subprocess.run(["bash", str(ROOT / "benches" / "gpu_check.sh"), "--dry-run"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "new" / "gpu_check.json").read_text())
    assert report["skipped"] == []
    assert set(report["results"]) == {"tiny/judge", "tiny/likelihood", "tiny/reward_model", "tiny/dpo"}
    for key, r in report["results"].items():
        assert r["agora"]["per_s"] > 0 and r["naive"]["per_s"] > 0 and r["ratio_vs_naive"] > 0, key
        assert key in done.stdout
    for key in ("tiny/judge", "tiny/likelihood"):
        r = report["results"][key]
        assert r["max_abs_logprob_diff_vs_naive"] < 1e-4 and r["max_abs_logprob_diff_vs_batched"] < 1e-4
        assert r["tokens_forwarded"] < r["tokens_in_rows"]  # shared prefixes forwarded once
    assert report["environment"]["device"].startswith("cpu")


def test_gpu_check_needs_torch_and_transformers_only():
    """The device image has torch and transformers and nothing else of ours: the check imports no other
    third-party package (polars, autogen, mesa, hydra, lm-eval...)."""
    code = ("import sys, benches.gpu_check as g; g.run(['tiny'], g.Sizes(pairs=2, personas=1, dilemmas=1, persona_len=4, "
            "dilemma_len=4, answer_len=3, train_pairs=2, train_len=8, rm_batch=2, dpo_batch=2, naive_pairs=1, rounds=1), "
            "g.torch.device('cpu'), g.torch.float32, 60); print(sorted({m.split('.')[0] for m in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = set(eval(done.stdout.strip().splitlines()[-1]))
    assert not loaded & {"polars", "autogen_agentchat", "mesa", "hydra", "omegaconf", "lm_eval", "peft", "networkx", "pyarrow"}
