"""Policy fine-tuning with confidence-weighted DPO on the society's soft labels.

Trained in the loop shared with the reward model (``alignment/training.py``) rather than TRL's
``DPOTrainer``: TRL has no per-pair soft-label weighting of both directions, and on this CPU its
defaults cost ~204 s/step against ~15 s for this loop (``benches/NOTES.md`` says why). Reference
log-probs come from a frozen copy (full fine-tuning) or from the same weights with the LoRA adapter
disabled, computed once per batch under ``no_grad``.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import torch

from agents.llm.embedded import pick_device, prepare_default_model, quiet_load
from alignment.config import DPOConfig
from alignment.losses import LOSSES
from alignment.ranks import is_main_process
from alignment.training import PairStep, batch_size, train_pairs, training_device


def _encode(tok, prompt: str, response: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of chat(prompt) + response + end-of-turn, and where the response starts."""
    p_ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True,
                                    return_dict=False)
    p_ids = list(p_ids["input_ids"] if isinstance(p_ids, dict) else p_ids)
    r_ids = tok(response + (tok.eos_token or ""), add_special_tokens=False)["input_ids"][: max_length // 2]
    p_ids = p_ids[-(max_length - len(r_ids)):]
    return p_ids + r_ids, len(p_ids)


def sequence_logprobs(model, tok, prompts: list[str], responses: list[str], max_length: int) -> torch.Tensor:
    """Sum of log π(response tokens | prompt) per pair (right padding, response tokens only)."""
    device = next(model.parameters()).device
    enc = [_encode(tok, p, r, max_length) for p, r in zip(prompts, responses, strict=True)]
    width = max(len(ids) for ids, _ in enc)
    ids = torch.full((len(enc), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(enc), width), dtype=torch.long)
    target = torch.zeros((len(enc), width), dtype=torch.bool)
    for i, (row, start) in enumerate(enc):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
        target[i, start:len(row)] = True
    ids, mask, target = ids.to(device), mask.to(device), target.to(device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    logp = torch.log_softmax(logits, -1).gather(2, ids[:, 1:, None])[..., 0]
    return (logp * target[:, 1:]).sum(-1)


def load_policy(path: str | Path | None, cfg: DPOConfig, device: str | None = None):
    """The policy (with a fresh LoRA adapter if ``cfg.lora``) on ``device`` (default ``cfg.device``), and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path) if path else prepare_default_model()
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        with quiet_load():
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(pick_device(device or cfg.device))
            if cfg.lora:
                from peft import LoraConfig, get_peft_model

                model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=2 * cfg.lora_r, lora_dropout=0.0,
                                                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if cfg.lora:
            model.enable_input_require_grads()
    return model, tok


def _pair_logps(policy, ref, tok, rows: pl.DataFrame, max_length: int, lora: bool) -> tuple[torch.Tensor, ...]:
    """Policy and reference log-probs of both answers. ``policy`` may be the DDP/FSDP wrapper: the reference of a
    LoRA run is the same weights with the adapter off (switched on the peft model inside), run through it too."""
    prompts = rows["prompt"].to_list() * 2
    responses = rows["response_a"].to_list() + rows["response_b"].to_list()
    n = len(rows)
    with torch.no_grad(), (_peft(policy).disable_adapter() if lora else nullcontext()):
        ref_lp = sequence_logprobs(ref if ref is not None else policy, tok, prompts, responses, max_length)
    pi = sequence_logprobs(policy, tok, prompts, responses, max_length)
    return pi[:n], pi[n:], ref_lp[:n], ref_lp[n:]


def _peft(model):
    """The peft model inside a DDP/FSDP wrapper (``.module``), or the model itself."""
    return getattr(model, "module", model)


def implicit_margins(policy, ref, tok, pairs: pl.DataFrame, cfg: DPOConfig) -> np.ndarray:
    """β·((π−π_ref)(preferred) − (π−π_ref)(other)) per pair with a non-tied label (DPO's implicit reward margin)."""
    pairs = pairs.filter(pl.col("p_a") != 0.5)
    out = []
    policy.eval()
    device = next(policy.parameters()).device
    size = batch_size(cfg, device)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for start in range(0, len(pairs), size):
            rows = pairs[start:start + size]
            pa, pb, ra, rb = _pair_logps(policy, ref, tok, rows, cfg.max_length, cfg.lora)
            sign = torch.tensor([1.0 if p > 0.5 else -1.0 for p in rows["p_a"].to_list()], device=pa.device)
            out.append((cfg.beta * sign * ((pa - ra) - (pb - rb))).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def pair_step(ref, tok, cfg: DPOConfig) -> PairStep:
    """A batch's per-pair soft DPO losses, and each pair's log-ratio difference (> 0: the policy moved toward A).
    ``ref``: the frozen reference of full fine-tuning (never wrapped in DDP), None for LoRA."""
    loss_fn = LOSSES["dpo_soft"]

    def step(policy, rows: pl.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        pa, pb, ra, rb = _pair_logps(policy, ref, tok, rows, cfg.max_length, cfg.lora)
        p = torch.tensor(rows["p_a"].to_list(), device=pa.device, dtype=torch.float32)
        return loss_fn(pa, pb, ra, rb, p, cfg.beta), (pa - ra) - (pb - rb)

    return step


def train_dpo(train: pl.DataFrame, eval_pairs: pl.DataFrame, cfg: DPOConfig, out_dir: str | Path,
              base_path: str | Path | None = None, progress: bool = True) -> dict:
    """Fine-tune the policy at ``base_path`` (default: the embedded model); save a full HF folder. Under
    ``torchrun`` / ``accelerate launch`` every rank trains its share; rank 0 alone measures margins and saves
    (the others return {})."""
    device = training_device(cfg.device)
    policy, tok = load_policy(base_path, cfg, device)
    ref = None if cfg.lora else copy.deepcopy(policy).eval().requires_grad_(False)
    main = is_main_process()
    margins_before = implicit_margins(policy, ref, tok, eval_pairs, cfg) if main else None
    out = Path(out_dir)
    done = train_pairs("DPO", policy, train, cfg, pair_step(ref, tok, cfg), out, progress)
    if not done.main:
        return {}
    if done.state is not None:  # FSDP: the trained weights, gathered from the ranks' shards
        policy, tok = load_policy(base_path, cfg, device)
        policy.load_state_dict(done.state)
    margins_after = implicit_margins(policy, ref, tok, eval_pairs, cfg)
    train_margins = implicit_margins(policy, ref, tok, train, cfg)
    model = policy.merge_and_unload() if cfg.lora else policy
    model.save_pretrained(out)
    tok.save_pretrained(out)
    mean = lambda a: float(a.mean()) if len(a) else float("nan")  # noqa: E731
    return {"config": asdict(cfg), "train_pairs": len(train), "steps": len(done.losses), "pairs_per_s": done.pairs_per_s,
            "train_loss_first": done.losses[0] if done.losses else None,
            "train_loss_last": done.losses[-1] if done.losses else None,
            "eval_margin_before": mean(margins_before), "eval_margin_after": mean(margins_after),
            "eval_margin_accuracy": float((margins_after > 0).mean()) if len(margins_after) else float("nan"),
            "train_margin_after": mean(train_margins), "seconds": done.seconds}
