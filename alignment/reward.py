"""Reward model: a transformer backbone with a scalar head, trained Bradley–Terry on soft labels.

The model is a stock ``AutoModelForSequenceClassification`` with ``num_labels=1`` (BERT for
all-MiniLM-L6-v2, Llama for the policy backbone), so the saved folder reloads with
``from_pretrained`` anywhere. The training loop is hand-written (about 40 lines) rather than TRL's
``RewardTrainer`` because TRL has no soft-label Bradley–Terry loss and we want the loss to be the one
pure function in ``alignment/losses.py``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import torch

from agents.llm.embedded import minilm_path, pick_device, prepare_default_model
from alignment.config import RewardConfig
from alignment.losses import LOSSES
from alignment.metrics import expected_calibration_error, log_loss, pairwise_accuracy


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
        return {"accuracy": float("nan"), "log_loss": float("nan"), "ece": float("nan"), "pairs": 0}
    prompts = pairs["prompt"].to_list()
    r_a = score_texts(model, tok, prompts, pairs["response_a"].to_list(), max_length)
    r_b = score_texts(model, tok, prompts, pairs["response_b"].to_list(), max_length)
    p_hat = 1 / (1 + np.exp(-(r_a - r_b)))
    p = pairs["p_a"].to_numpy()
    return {"accuracy": pairwise_accuracy(p_hat, p), "log_loss": log_loss(p_hat, p),
            "ece": expected_calibration_error(p_hat, (p > 0.5).astype(float)), "pairs": len(pairs)}


def train_reward_model(train: pl.DataFrame, eval_pairs: pl.DataFrame, cfg: RewardConfig, out_dir: str | Path,
                       policy_path: str | Path | None = None) -> dict:
    """Train, evaluate on held-out pairs, save an HF folder to ``out_dir``; return the report."""
    device = pick_device(cfg.device)
    model, tok = load_reward_model(backbone_path(cfg.backbone, policy_path), cfg.seed, cfg.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    loss_fn = LOSSES["bradley_terry"]
    losses: list[float] = []
    t0 = time.perf_counter()
    seen = 0
    with torch.random.fork_rng(devices=[]):  # dropout draws from torch's RNG: seed it without touching the global one
        torch.manual_seed(cfg.seed)
        model.train()
        for _ in range(cfg.epochs):
            order = rng.permutation(len(train))
            for k, start in enumerate(range(0, len(order), cfg.batch_size)):
                rows = train[order[start:start + cfg.batch_size].tolist()]
                prompts = rows["prompt"].to_list() * 2
                enc = tok(prompts, rows["response_a"].to_list() + rows["response_b"].to_list(), truncation="only_first",
                          max_length=cfg.max_length, padding=True, return_tensors="pt").to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    r = model(**enc).logits[:, 0].float()
                n = len(rows)
                p = torch.tensor(rows["p_a"].to_list(), device=device, dtype=torch.float32)
                loss = loss_fn(r[:n], r[n:], p).mean()
                (loss / cfg.grad_accum).backward()
                if (k + 1) % cfg.grad_accum == 0 or start + cfg.batch_size >= len(order):
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                seen += n
    train_seconds = time.perf_counter() - t0
    report = {"config": asdict(cfg), "train_pairs": len(train), "train_loss_first": losses[0] if losses else None,
              "train_loss_last": losses[-1] if losses else None, "pairs_per_s": seen / train_seconds if train_seconds else None,
              "eval": evaluate(model, tok, eval_pairs, cfg.max_length), "train": evaluate(model, tok, train, cfg.max_length)}
    out = Path(out_dir)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return report
