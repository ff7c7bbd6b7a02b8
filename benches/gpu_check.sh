#!/usr/bin/env bash
# The GPU check in one command (benches/gpu_check.py): judge and likelihood-reading preferences/s and MFU in bf16,
# reward-model and DPO pairs/s at large batch, each against the same run's naive baseline, on random-initialised
# SmolLM2-135M and ~1B Llama configurations. Needs torch and transformers only; fits a 10-minute call (sections
# not started within --budget-s, 480 s by default, are skipped and listed). Writes $OUT/gpu_check.json (or
# ./gpu_check.json) and prints one line per section.
#   bash benches/gpu_check.sh             # on a CUDA machine
#   bash benches/gpu_check.sh --dry-run   # a tiny configuration on the CPU, seconds: what the test suite runs
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-.}/gpu_check.json"
cd "$root"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" -m benches.gpu_check --out "$out" "$@"
