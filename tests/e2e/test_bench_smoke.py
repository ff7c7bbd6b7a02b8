"""The benchmark suite runs end to end at smoke size and renders its report (the full suite is `make bench`)."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.slow  # ~2.5 min: every benchmark once at smoke size; CI runs it with the other slow tests
def test_benchmarks_run_and_render_a_report(tmp_path):
    results, out = tmp_path / "results.json", tmp_path / "RESULTS.md"
    # smoke size and one round per side: what is checked is that every benchmark runs and renders, not its spread
    env = {**os.environ, "AGORA_BENCH_QUICK": "1", "AGORA_BENCH_ROUNDS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "benches", "-q", "-p", "no:cacheprovider",
                           f"--benchmark-json={results}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    bench = json.loads(results.read_text())
    names = {b["extra_info"]["name"] for b in bench["benchmarks"]}
    assert names == {"judge", "stances", "debate", "reward_model", "dpo", "scaling", "scaling_framework",
                     "likelihood stances", "likelihood judge", "debate_framework"}
    for b in bench["benchmarks"]:
        info = b["extra_info"]
        if "ratio" in info:
            assert info["ratio"] > 0 and info["agora_rate"] > 0 and info["baseline_rate"] > 0
    subprocess.run([sys.executable, "-m", "benches.report", str(results), "--out", str(out), "--notes", ""],
                   cwd=ROOT, check=True, capture_output=True)
    text = out.read_text()
    assert "| judge (preferences/s) | 4 |" in text and "Fitted exponent" in text
    assert "| likelihood judge (preferences/s) | 4 |" in text and "lm-eval HFLM" in text
