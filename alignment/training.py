"""The optimiser loop the reward model and DPO share: AdamW, a warmup-then-decay learning-rate schedule
(``transformers.get_scheduler``), gradient clipping (``torch.nn.utils.clip_grad_norm_``), one tqdm bar,
a per-step log (``train_log.jsonl`` beside the saved model, and a log line every ``log_every`` steps),
and a checkpoint every ``save_every`` steps that a second call with the same arguments resumes from.

Why a loop of ours and not ``transformers.Trainer`` or TRL's trainers: ``benches/compare_trainers.py``
ran them on the same pairs (figures in ``benches/NOTES.md``): this loop keeps the plain loop's pairs/s,
and speed did not separate it from ``Trainer`` with ``compute_loss`` overridden. ``Trainer`` seeds
Python's, numpy's and torch's global RNGs (``set_seed``), prints each log as a raw dict, and needs a
dataset, collator and its own sampler round rows that are already a table; TRL's trainers have no
per-pair soft labels. This loop keeps the seed tree's order and the RNG isolation.

Across processes (``torchrun`` / ``accelerate launch``, see ``alignment/launch.py``) the same loop runs on
every rank: each takes its share of every global batch of the one seeded plan, gradients are averaged
across ranks, and rank 0 alone logs, checkpoints and saves. The ranks' losses are weighted so the update
is the one-process update of the same global batch (equal to float tolerance: the all-reduce sums in
another order).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from alignment.config import DPOConfig, RewardConfig
from alignment.ranks import Ranks, launched_processes, start_accelerator

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
STEP_LOG = "train_log.jsonl"

# A batch's per-pair losses and signed preferences (> 0: the model prefers A), from the model to run (under
# several processes, the DDP/FSDP wrapper whose forward and backward synchronise the ranks) and the rows.
PairStep = Callable[[torch.nn.Module, pl.DataFrame], tuple[torch.Tensor, torch.Tensor]]


LoopConfig = RewardConfig | DPOConfig


@dataclass(frozen=True)
class Trained:
    """What the loop reports: every step's loss (a resumed run's earlier ones too), and the pairs and
    wall-clock seconds of this call's steps."""

    losses: list[float]
    pairs: int
    seconds: float
    resumed_at: int
    main: bool = True  # this process saves and reports (rank 0, or the only one)
    # Under FSDP, rank 0's whole trained state dict: the model it trained is sharded across the ranks, so the
    # caller loads this into a fresh copy to evaluate and save. None otherwise (the model itself is trained).
    state: dict[str, torch.Tensor] | None = None

    @property
    def pairs_per_s(self) -> float | None:
        return self.pairs / self.seconds if self.seconds else None


def training_device(device: str) -> str:
    """Where this process trains: ``device`` as configured in one process; under several, this rank's own
    (the launch's accelerator starts first, so ``auto``/``cuda`` is the rank's GPU, ``cuda:LOCAL_RANK``)."""
    if launched_processes() == 1:
        return device
    from agents.llm.embedded import pick_device

    return str(start_accelerator(pick_device(device)).device)


def batch_size(cfg: LoopConfig, device: torch.device) -> int:
    """Pairs per forward: ``cuda_batch_size`` on a GPU (bf16 leaves room), ``batch_size`` elsewhere."""
    return cfg.cuda_batch_size if device.type == "cuda" else cfg.batch_size


def plan_steps(n: int, cfg: LoopConfig, size: int) -> list[list[list[int]]]:
    """Row indices of every optimiser step (a list of up to ``grad_accum`` batches, never across an epoch):
    the epochs' orders come from one generator seeded with ``cfg.seed``, all drawn up front so a resumed
    run takes the same order from any step."""
    rng = np.random.default_rng(cfg.seed)
    steps = []
    for _ in range(cfg.epochs):
        order = rng.permutation(n).tolist()
        batches = [order[s:s + size] for s in range(0, n, size)]
        steps += [batches[s:s + cfg.grad_accum] for s in range(0, len(batches), cfg.grad_accum)]
    return steps


def warmup_steps(cfg: LoopConfig, steps: int) -> int:
    """Rounded down: transformers' warmup spends its first step at rate 0, which a run of a few steps
    cannot spare (at 0.1, a run under 10 steps has no warmup)."""
    return int(cfg.warmup_ratio * steps)


def agreement(pref: torch.Tensor, p: torch.Tensor) -> tuple[int, int]:
    """(pairs whose preference points the label's way, pairs with a non-tied label)."""
    keep = p != 0.5
    return int(((pref > 0) == (p > 0.5))[keep].sum()), int(keep.sum())


def _save(path: Path, run, model, opt, sched, step: int, losses: list[float], seen: int, cfg: LoopConfig,
          ranks: Ranks) -> None:
    """Rank 0 writes the checkpoint: the trained tensors only (a LoRA run's adapter, not the frozen base),
    optimizer, schedule and every rank's RNG (each draws its own dropout masks). Every rank calls it: under
    several processes the RNGs, and under FSDP the tensors, are gathered."""
    params, optimizer = ranks.trained_state(run, model), ranks.optimizer_state(run, opt)
    rngs = ranks.gather(torch.get_rng_state())
    if not ranks.main:
        return
    state = {"step": step, "params": params, "optimizer": optimizer, "scheduler": sched.state_dict(),
             "torch_rng": rngs[0], "losses": losses, "seen": seen, "config": _identity(cfg)}
    if ranks.world > 1:
        state["rank_rngs"] = rngs
    if ranks.sharded:
        state["sharded"] = True  # the optimizer's state by parameter name (torch.distributed.checkpoint's form)
    if torch.cuda.is_available() and ranks.world == 1:
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write leaves the previous checkpoint whole


def _identity(cfg: LoopConfig) -> dict[str, Any]:
    """The settings a checkpoint must match to be resumed (all but the display-only ones)."""
    return {k: v for k, v in asdict(cfg).items() if k not in ("log_every", "save_every")}


def _resume(path: Path, model, opt, sched, cfg: LoopConfig, ranks: Ranks) -> dict[str, Any] | None:
    """The saved state, loaded into model/optimizer/schedule, if ``path`` holds this config's checkpoint (every
    rank reads it, before the model is wrapped)."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["config"] != _identity(cfg) or state.get("sharded", False) != ranks.sharded:
        if ranks.main:
            log.warning("ignoring %s: written by a different training config (or with FSDP and now without, or "
                        "the reverse)", path)
        return None
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in state["params"].items():
            params[k].copy_(v)
    if not ranks.sharded:  # FSDP's is loaded into the sharded optimizer, once the model is wrapped
        opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    return state


def _restore_rng(state: dict[str, Any], device: torch.device, ranks: Ranks) -> None:
    """This rank's RNG as the checkpoint left it; a checkpoint of another process count gives a rank beyond its
    ranks the fresh seed (dropout then draws other masks, the data order is the same)."""
    rngs = state.get("rank_rngs") or [state["torch_rng"]]
    if ranks.rank < len(rngs):
        torch.set_rng_state(rngs[ranks.rank])
    if "cuda_rng" in state and device.type == "cuda" and ranks.world == 1:
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def train_pairs(name: str, model: torch.nn.Module, train: pl.DataFrame, cfg: LoopConfig, pair_step: PairStep,
                out_dir: Path, progress: bool = True) -> Trained:
    """Train ``model``'s trainable parameters on ``train`` with ``pair_step``'s per-pair losses (the soft
    labels are the step's business); the loop averages them, counts agreement with ``p_a`` for the log,
    and resumes from ``out_dir``'s checkpoint when one of this config is there. Under ``torchrun`` /
    ``accelerate launch`` every rank calls it with the same rows and config (see the module's docstring)."""
    device = next(model.parameters()).device
    ranks = Ranks.start(device)
    params = [p for p in model.parameters() if p.requires_grad]
    steps = plan_steps(len(train), cfg, batch_size(cfg, device))
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    from transformers import get_scheduler

    sched = get_scheduler(cfg.lr_scheduler, opt, num_warmup_steps=warmup_steps(cfg, len(steps)),
                          num_training_steps=len(steps))
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / CHECKPOINT
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # dropout: seeded, global RNG untouched
        torch.manual_seed(ranks.seed(cfg.seed))
        state = _resume(ckpt, model, opt, sched, cfg, ranks) or {"step": 0, "losses": [], "seen": 0}
        if state["step"]:
            _restore_rng(state, device, ranks)
            if ranks.main:
                log.info("%s: resuming at step %d/%d from %s", name, state["step"], len(steps), ckpt)
        run, opt = ranks.prepare(model, opt)  # after the resume: each rank loads the checkpoint into the plain model
        if state["step"] and ranks.sharded:
            ranks.load_optimizer_state(run, opt, state["optimizer"])
        losses, seen, t0 = state["losses"], state["seen"], time.perf_counter()
        with _step_log(out_dir / STEP_LOG, state["step"]) if ranks.main else nullcontext() as fh, \
                tqdm(total=len(steps), initial=state["step"], desc=name, unit="step", leave=False, mininterval=1.0,
                     disable=not progress or not ranks.main) as bar:
            for i in range(state["step"], len(steps)):
                rec = _one_step(run, train, steps[i], pair_step, params, opt, cfg, device, ranks)
                sched.step()
                losses.append(rec["loss"])
                seen += rec.pop("pairs")
                if fh is not None:
                    fh.write(json.dumps({"step": i + 1, "epoch": i * cfg.epochs // len(steps), **rec}) + "\n")
                    fh.flush()
                bar.set_postfix(loss=f"{rec['loss']:.4f}", acc=f"{rec['accuracy'] or 0:.2f}", refresh=False)
                bar.update(1)
                if ranks.main and ((i + 1) % cfg.log_every == 0 or i + 1 == len(steps)):
                    acc = "n/a" if rec["accuracy"] is None else f"{rec['accuracy']:.3f}"
                    log.info("%s step %d/%d  loss %.4f  accuracy %s  lr %.2e  grad norm %.3f", name, i + 1, len(steps),
                             rec["loss"], acc, rec["lr"], rec["grad_norm"])
                if cfg.save_every and (i + 1) % cfg.save_every == 0 and i + 1 < len(steps):
                    _save(ckpt, run, model, opt, sched, i + 1, losses, seen, cfg, ranks)
        seconds = time.perf_counter() - t0
    whole = ranks.full_state(run) if ranks.sharded else None  # FSDP: the trained model, gathered on rank 0
    if ranks.main:
        ckpt.unlink(missing_ok=True)  # the finished model supersedes it
    return Trained(losses, seen - state["seen"], seconds, state["step"], ranks.main, whole)  # the rate of this call's steps


@contextmanager
def _step_log(path: Path, keep: int) -> Iterator[TextIO]:
    """The per-step JSON-lines log, holding the first ``keep`` lines of an earlier, resumed run."""
    kept = path.read_text().splitlines(keepends=True)[:keep] if keep and path.is_file() else []
    with open(path, "w") as fh:
        fh.writelines(kept)
        yield fh


def _one_step(model, train: pl.DataFrame, step: list[list[int]], pair_step: PairStep, params, opt, cfg: LoopConfig,
              device: torch.device, ranks: Ranks) -> dict[str, Any]:
    """Forward/backward over the step's batches (this rank's share of each), clip, one optimiser update; the
    step's log record, summed over the ranks."""
    model.train()
    total, agree, counted, pairs = 0.0, 0, 0, 0
    lr = opt.param_groups[0]["lr"]  # the rate this update uses
    for j, idx in enumerate(step):
        mine = ranks.shard(idx)
        # a rank with no pair of this batch runs one at weight 0: its backward still joins the all-reduce
        rows = train[mine or idx[:1]]
        with ranks.sync(model, last=j + 1 == len(step)):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                per_pair, pref = pair_step(model, rows)
            # the batch mean's share of this rank, ×world as the all-reduce averages (one process: ×1, exactly)
            loss = per_pair.float().mean() * (len(mine) * ranks.world / len(idx))
            ranks.backward(loss / len(step))
        total += float(loss.detach()) / len(step) / ranks.world
        if mine:
            p = torch.tensor(rows["p_a"].to_list(), device=per_pair.device, dtype=per_pair.dtype)
            a, c = agreement(pref.detach(), p)
            agree, counted, pairs = agree + a, counted + c, pairs + len(rows)
    norm = ranks.clip(model, params, cfg.max_grad_norm)
    opt.step()
    opt.zero_grad(set_to_none=True)
    if ranks.world > 1:
        total, agree, counted, pairs = ranks.sum([total, agree, counted, pairs])
        agree, counted, pairs = round(agree), round(counted), round(pairs)
    return {"loss": total, "accuracy": agree / counted if counted else None, "lr": lr,
            "grad_norm": float(norm), "pairs": pairs}
