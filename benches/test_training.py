"""Training throughput: reward-model pairs/s batched vs per pair; DPO pairs/s batched vs per pair
(LoRA, the default), with full fine-tuning's rate recorded beside it.

Rates come from the trainers' own clocks (the training loop, not loading or evaluation), one per
round: agora's side runs through pytest-benchmark's rounds (its wall time, evaluation included, is
what ``results.json`` holds), the baseline through the same rounds by hand (``benches/conftest.py``).
"""

from __future__ import annotations

from alignment.config import DPOConfig, RewardConfig
from alignment.dpo import train_dpo
from alignment.reward import train_reward_model
from alignment.sanity import known_rule_preferences
from benches.conftest import Timing, bench, measure, record
from benches.workloads import QUICK, rounds, size


def _loop_seconds(results: list[dict], n: int) -> Timing:
    return Timing(tuple(n / r["pairs_per_s"] for r in results))


def test_reward_model_pairs_per_second(benchmark, tmp_path):
    train, held = known_rule_preferences(size(64, 8), 4, seed=0)
    n = len(train)
    per_pair, base_wall = measure(lambda: train_reward_model(train, held, RewardConfig(epochs=1, batch_size=1),
                                                             tmp_path / "a"), rounds(3))  # ~25 s a round
    batched, agora_wall = bench(benchmark, lambda: train_reward_model(train, held, RewardConfig(epochs=1, batch_size=16),
                                                                      tmp_path / "b"), rounds(3))
    agora, base = _loop_seconds(batched, n), _loop_seconds(per_pair, n)
    record(benchmark, name="reward_model", unit="pairs/s", items=n, agora=agora, baseline=base,
           baseline_is="batch size 1", backbone="minilm", batch_size=16,
           wall_with_eval_s=round(agora_wall.mean, 2), baseline_wall_with_eval_s=round(base_wall.mean, 2))
    assert QUICK or agora.mean < base.mean


def test_dpo_pairs_per_second(benchmark, tmp_path):
    train, held = known_rule_preferences(size(16, 4), 2, seed=0)
    n = len(train)
    per_pair, _ = measure(lambda: train_dpo(train, held, DPOConfig(batch_size=1), tmp_path / "a"), rounds(1))  # ~50 s
    (full, *_), _ = measure(lambda: train_dpo(train, held, DPOConfig(batch_size=8, lora=False), tmp_path / "c"), 1)
    lora, _ = bench(benchmark, lambda: train_dpo(train, held, DPOConfig(batch_size=8), tmp_path / "b"), rounds(3))
    agora = _loop_seconds(lora, n)
    record(benchmark, name="dpo", unit="pairs/s", items=n, agora=agora, baseline=_loop_seconds(per_pair, n),
           baseline_is="LoRA, batch size 1", batch_size=8,
           full_finetune_pairs_per_s=round(full["pairs_per_s"], 3),
           lora_vs_full_ratio=round(n / agora.mean / full["pairs_per_s"], 2))
    assert all(r["pairs_per_s"] > 0 for r in lora) and full["pairs_per_s"] > 0
