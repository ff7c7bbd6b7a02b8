"""Training throughput: reward-model pairs/s batched vs per pair; DPO pairs/s batched vs per pair
(LoRA, the default), with full fine-tuning's rate recorded beside it."""

from __future__ import annotations

from alignment.config import DPOConfig, RewardConfig
from alignment.dpo import train_dpo
from alignment.reward import train_reward_model
from alignment.sanity import known_rule_preferences
from benches.conftest import record, timed
from benches.workloads import QUICK, size


def test_reward_model_pairs_per_second(benchmark, tmp_path):
    train, held = known_rule_preferences(size(64, 8), 4, seed=0)
    per_pair, base_s = timed(lambda: train_reward_model(train, held, RewardConfig(epochs=1, batch_size=1), tmp_path / "a"))
    batched, agora_s = timed(lambda: benchmark.pedantic(
        lambda: train_reward_model(train, held, RewardConfig(epochs=1, batch_size=16), tmp_path / "b"),
        rounds=1, iterations=1))
    # rates from the trainers' own clocks (training loop only, not loading or evaluation)
    n = len(train)
    record(benchmark, name="reward_model", unit="pairs/s", items=n, agora_s=n / batched["pairs_per_s"],
           baseline_s=n / per_pair["pairs_per_s"], baseline="batch size 1", backbone="minilm", batch_size=16,
           wall_with_eval_s=round(agora_s, 2), baseline_wall_with_eval_s=round(base_s, 2))
    assert QUICK or batched["pairs_per_s"] > per_pair["pairs_per_s"]


def test_dpo_pairs_per_second(benchmark, tmp_path):
    train, held = known_rule_preferences(size(16, 4), 2, seed=0)
    per_pair = train_dpo(train, held, DPOConfig(batch_size=1), tmp_path / "a")
    full = train_dpo(train, held, DPOConfig(batch_size=8, lora=False), tmp_path / "c")
    lora = benchmark.pedantic(lambda: train_dpo(train, held, DPOConfig(batch_size=8), tmp_path / "b"),
                              rounds=1, iterations=1)
    n = len(train)
    record(benchmark, name="dpo", unit="pairs/s", items=n, agora_s=n / lora["pairs_per_s"],
           baseline_s=n / per_pair["pairs_per_s"], baseline="LoRA, batch size 1", batch_size=8,
           full_finetune_pairs_per_s=round(full["pairs_per_s"], 3),
           lora_vs_full_ratio=round(lora["pairs_per_s"] / full["pairs_per_s"], 2))
    assert lora["pairs_per_s"] > 0 and full["pairs_per_s"] > 0
