"""Reward model: a transformer backbone with a scalar head, trained Bradley–Terry on soft labels.

The model is a stock ``AutoModelForSequenceClassification`` with ``num_labels=1`` (BERT for
all-MiniLM-L6-v2, Llama for the policy backbone), so the saved folder reloads with
``from_pretrained`` anywhere. It trains in the loop shared with DPO (``alignment/training.py``:
schedule, clipping, progress, per-step log, checkpoints) rather than TRL's ``RewardTrainer``, because
TRL has no soft-label Bradley–Terry loss and we want the loss to be the one pure function in
``alignment/losses.py``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import torch

from agents.llm.embedded import minilm_path, pick_device, prepare_default_model, quiet_load
from alignment.config import RewardConfig
from alignment.losses import LOSSES
from alignment.metrics import NA, expected_calibration_error, log_loss, pairwise_accuracy
from alignment.training import PairStep, train_pairs, training_device


def backbone_path(name: str, policy_path: str | Path | None = None) -> Path:
    if name == "minilm":
        return minilm_path()
    if name == "policy":
        return Path(policy_path) if policy_path else prepare_default_model()
    return Path(name)


def load_reward_model(path: str | Path, seed: int = 0, device: str = "auto"):
    """A sequence-classification model with one output; the new head is initialised from ``seed``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with quiet_load():
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    return model.to(pick_device(device)), tok


def score_texts(model, tok, prompts: list[str], responses: list[str], max_length: int, batch_size: int = 32) -> np.ndarray:
    """Scalar rewards for (prompt, response) pairs."""
    out = []
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            enc = tok(prompts[i:i + batch_size], responses[i:i + batch_size], truncation="only_first",
                      max_length=max_length, padding=True, return_tensors="pt").to(device)
            out.append(model(**enc).logits[:, 0].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def evaluate(model, tok, pairs: pl.DataFrame, max_length: int) -> dict[str, float]:
    """Accuracy against the label's direction, log-loss and ECE against the soft label."""
    if not len(pairs):
        none = NA("no held-out pairs")
        return {"accuracy": none, "log_loss": none, "ece": none, "pairs": 0}
    prompts = pairs["prompt"].to_list()
    r_a = score_texts(model, tok, prompts, pairs["response_a"].to_list(), max_length)
    r_b = score_texts(model, tok, prompts, pairs["response_b"].to_list(), max_length)
    p_hat = 1 / (1 + np.exp(-(r_a - r_b)))
    p = pairs["p_a"].to_numpy()
    return {"accuracy": pairwise_accuracy(p_hat, p), "log_loss": log_loss(p_hat, p),
            "ece": expected_calibration_error(p_hat, (p > 0.5).astype(float)), "pairs": len(pairs)}


def pair_step(tok, cfg: RewardConfig) -> PairStep:
    """A batch's per-pair Bradley–Terry losses against the soft labels, and r_a − r_b (both answers in one forward)."""
    loss_fn = LOSSES["bradley_terry"]

    def step(model, rows: pl.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        device = next(model.parameters()).device
        enc = tok(rows["prompt"].to_list() * 2, rows["response_a"].to_list() + rows["response_b"].to_list(),
                  truncation="only_first", max_length=cfg.max_length, padding=True, return_tensors="pt").to(device)
        r = model(**enc).logits[:, 0].float()
        n = len(rows)
        p = torch.tensor(rows["p_a"].to_list(), device=device, dtype=torch.float32)
        return loss_fn(r[:n], r[n:], p), r[:n] - r[n:]

    return step


def train_reward_model(train: pl.DataFrame, eval_pairs: pl.DataFrame, cfg: RewardConfig, out_dir: str | Path,
                       policy_path: str | Path | None = None, progress: bool = True) -> dict:
    """Train, evaluate on held-out pairs, save an HF folder to ``out_dir``; return the report. Under ``torchrun`` /
    ``accelerate launch`` every rank trains its share; rank 0 alone evaluates and saves (the others return {})."""
    device = training_device(cfg.device)
    model, tok = load_reward_model(backbone_path(cfg.backbone, policy_path), cfg.seed, device)
    out = Path(out_dir)
    done = train_pairs("reward model", model, train, cfg, pair_step(tok, cfg), out, progress)
    if not done.main:
        return {}
    if done.state is not None:  # FSDP: the trained weights, gathered from the ranks' shards
        model, tok = load_reward_model(backbone_path(cfg.backbone, policy_path), cfg.seed, device)
        model.load_state_dict(done.state)
    report = {"config": asdict(cfg), "train_pairs": len(train), "steps": len(done.losses),
              "train_loss_first": done.losses[0] if done.losses else None,
              "train_loss_last": done.losses[-1] if done.losses else None, "pairs_per_s": done.pairs_per_s,
              "eval": evaluate(model, tok, eval_pairs, cfg.max_length), "train": evaluate(model, tok, train, cfg.max_length)}
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return report
