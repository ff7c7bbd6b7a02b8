"""Which training loop for the reward model and DPO? Pairs/s of the candidates on the same known-rule
pairs, in one process, rounds interleaved (issue 21; figures and reading in ``benches/NOTES.md``):

- ``plain``: the loop before issue 21 (AdamW at a constant rate, nothing else), written out here;
- ``agora``: ``alignment.training.train_pairs`` (schedule, clipping, per-step log, checkpoints);
- ``trainer``: ``transformers.Trainer`` with ``compute_loss`` overridden, same loss, schedule and clipping;
- ``trl`` (DPO only, if ``trl`` imports): TRL's ``DPOTrainer`` (hard labels: it has no soft ones) with
  bf16 and gradient checkpointing off, and ``trl_defaults`` with TRL's own defaults, one step.

Every candidate runs the same per-pair step (``alignment.reward.pair_step``/``alignment.dpo.pair_step``)
but TRL's, and the rate is pairs over the training loop's own seconds (loading and evaluation excluded).

    python -m benches.compare_trainers [--rounds 2] [--rm-pairs 64] [--dpo-pairs 16] [--trl-defaults] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import polars as pl
import torch

from alignment.config import DPOConfig, RewardConfig
from alignment.sanity import known_rule_preferences
from alignment.training import PairStep, plan_steps, train_pairs

Candidate = Callable[[pl.DataFrame, Path], float]  # seconds of the training loop


def plain(model, train: pl.DataFrame, cfg, step: PairStep, out: Path) -> float:
    """The pre-issue-21 loop: a seeded order, AdamW, one update per batch."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for batches in plan_steps(len(train), cfg, cfg.batch_size):
            model.train()
            for idx in batches:
                step(model, train[idx])[0].mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def agora(model, train: pl.DataFrame, cfg, step: PairStep, out: Path) -> float:
    return train_pairs("compare", model, train, cfg, step, out, progress=False).seconds


def trainer(model, train: pl.DataFrame, cfg, step: PairStep, out: Path) -> float:
    """``transformers.Trainer`` over row indices; ``compute_loss`` runs the same per-pair step."""
    from transformers import Trainer, TrainingArguments

    class PairTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = step(model, train[inputs["idx"]])[0].mean()
            return (loss, None) if return_outputs else loss

    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=cfg.batch_size, num_train_epochs=cfg.epochs,
                             learning_rate=cfg.lr, lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_ratio,
                             max_grad_norm=cfg.max_grad_norm, logging_steps=1, save_strategy="no", report_to="none",
                             use_cpu=True, seed=cfg.seed, disable_tqdm=True, dataloader_pin_memory=False)
    t = PairTrainer(model=model, args=args, train_dataset=list(range(len(train))), data_collator=lambda idx: {"idx": idx})
    t0 = time.perf_counter()
    t.train()
    return time.perf_counter() - t0


def trl_dpo(policy_path: Path, train: pl.DataFrame, cfg: DPOConfig, out: Path, defaults: bool) -> tuple[float, int]:
    """TRL's DPOTrainer with a LoRA adapter like agora's; ``defaults`` keeps TRL's bf16 and gradient
    checkpointing (and its 1024-token limit), else they are set as agora runs on CPU."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig as TRLConfig
    from trl import DPOTrainer

    tok = AutoTokenizer.from_pretrained(policy_path)
    model = AutoModelForCausalLM.from_pretrained(policy_path, dtype=torch.float32)
    a_wins = [p > 0.5 for p in train["p_a"].to_list()]
    data = Dataset.from_dict({
        "prompt": [[{"role": "user", "content": p}] for p in train["prompt"].to_list()],
        "chosen": [[{"role": "assistant", "content": a if w else b}] for a, b, w in
                   zip(train["response_a"].to_list(), train["response_b"].to_list(), a_wins, strict=True)],
        "rejected": [[{"role": "assistant", "content": b if w else a}] for a, b, w in
                     zip(train["response_a"].to_list(), train["response_b"].to_list(), a_wins, strict=True)]})
    kw = dict(max_steps=1) if defaults else dict(bf16=False, gradient_checkpointing=False, max_length=cfg.max_length,
                                                 num_train_epochs=cfg.epochs)
    args = TRLConfig(output_dir=str(out), per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.lr, beta=cfg.beta,
                     save_strategy="no", report_to="none", use_cpu=True, seed=cfg.seed, disable_tqdm=True,
                     dataloader_pin_memory=False, **kw)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, lora_dropout=0.0,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    t = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok, peft_config=lora)
    t0 = time.perf_counter()
    t.train()
    return time.perf_counter() - t0, t.state.global_step * cfg.batch_size


def measure(kind: str, n: int, rounds: int, with_trl: bool, trl_defaults: bool) -> dict[str, list[float]]:
    from alignment import dpo, reward

    train, _ = known_rule_preferences(n, 2, seed=0)
    rates: dict[str, list[float]] = {}
    if kind == "reward":
        cfg = RewardConfig(epochs=2, batch_size=16, lr=5e-5, seed=0, device="cpu", save_every=0)

        def load():
            model, tok = reward.load_reward_model(reward.backbone_path("minilm"), cfg.seed, "cpu")
            return model, reward.pair_step(tok, cfg)
    else:
        cfg = DPOConfig(epochs=1, batch_size=8, lr=5e-4, seed=0, device="cpu", save_every=0)

        def load():
            policy, tok = dpo.load_policy(None, cfg)
            return policy, dpo.pair_step(None, tok, cfg)
    pairs = cfg.epochs * n
    for r in range(rounds):
        for name, fn in (("plain", plain), ("agora", agora), ("trainer", trainer)):
            model, step = load()
            with tempfile.TemporaryDirectory() as tmp:
                seconds = fn(model, train, replace(cfg), step, Path(tmp))
            rates.setdefault(name, []).append(pairs / seconds)
            print(f"{kind} round {r} {name}: {pairs / seconds:.3f} pairs/s", flush=True)
        if with_trl and kind == "dpo":
            from agents.llm.embedded import prepare_default_model

            for name, flag in (("trl", False), ("trl_defaults", True))[: 2 if trl_defaults and r == 0 else 1]:
                with tempfile.TemporaryDirectory() as tmp:
                    seconds, seen = trl_dpo(prepare_default_model(), train, cfg, Path(tmp), flag)
                rates.setdefault(name, []).append(seen / seconds)
                print(f"{kind} round {r} {name}: {seen / seconds:.3f} pairs/s ({seconds:.1f} s)", flush=True)
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rm-pairs", type=int, default=64)
    ap.add_argument("--dpo-pairs", type=int, default=16)
    ap.add_argument("--dpo-rounds", type=int, default=1)
    ap.add_argument("--trl-defaults", action="store_true", help="also one step of TRL's DPOTrainer at its defaults")
    ap.add_argument("--out", type=Path, default=Path("benches/compare_trainers.json"))
    args = ap.parse_args()
    try:
        import trl  # noqa: F401
        with_trl = True
    except ImportError:
        with_trl = False
    result = {"torch_threads": torch.get_num_threads(), "reward": measure("reward", args.rm_pairs, args.rounds, False, False),
              "dpo": measure("dpo", args.dpo_pairs, args.dpo_rounds, with_trl, args.trl_defaults)}
    summary = {k: {c: {"median": statistics.median(v), "min": min(v), "max": max(v), "rounds": len(v)} for c, v in r.items()}
               for k, r in result.items() if isinstance(r, dict)}
    args.out.write_text(json.dumps({"rates": result, "summary": summary}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
