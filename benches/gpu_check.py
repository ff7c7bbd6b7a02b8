"""The GPU check: AI-feedback and training throughput on one accelerator, each against a naive baseline
measured in the same run, in one command that fits a 10-minute call (``benches/gpu_check.sh``).

    python -m benches.gpu_check [--dry-run] [--out gpu_check.json] [--models 135m,1b] [--budget-s 480]

It needs torch and transformers only (the device image has torch 2.11 and transformers 5.17, no
internet): the models are random-initialised ``LlamaConfig`` s of the default model's architecture
(SmolLM2-135M) and of a ~1B configuration (Llama-3.2-1B's shape), since throughput does not depend on
the weights' values, and the prompts are token ids with the society's shape (a shared template, one
of a few personas, one of a few dilemmas, two answers), so no tokenizer is needed. agora's side is
the embedded engine's own scoring path (:class:`agents.llm.embedded.score.Scorer`: prefix tree, prefix
cache, chunking) on these rows, and the training steps use agora's losses (``alignment.losses``).

Figures, per model (bf16 on CUDA; fp32 on CPU):

- ``judge``: letter readings of debiased pairs (both orders, one read at the last position) —
  preferences/s of agora's engine, of the naive loop (per option, one batch-1 full-sequence forward
  with full logits, as ``benches/workloads.naive_judge``) and of a batched padded forward without
  prefix sharing (last-position logits), with MFU = 2 × non-embedding parameters × tokens forwarded/s ÷
  the card's peak dense bf16 FLOP/s;
- ``likelihood``: likelihood judgments (each answer scored as the continuation): agora against the
  naive loop and an lm-evaluation-harness-style batched forward (right-padded full sequences, full
  log-softmax, as ``HFLM._loglikelihood_tokens``), with MFU and max |Δ log-likelihood| against the naive loop;
- ``reward_model``: Bradley–Terry training steps (sequence classifier, AdamW, bf16 autocast) at a
  large batch against batch 1, pairs/s and training MFU (6 × parameters × tokens/s);
- ``dpo``: soft-label DPO steps (policy + frozen reference, full fine-tuning) at a large batch against
  batch 1, pairs/s.

``--dry-run`` runs every section on the CPU with a tiny configuration in well under a minute (the test
suite runs it), so the command is known to work before a GPU is lent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# Peak dense bf16 FLOP/s by card name (vendor data sheets, without sparsity).
PEAK_BF16 = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
             "A10": 125e12}

CONFIGS: dict[str, dict[str, Any]] = {
    # SmolLM2-135M-Instruct (the embedded default's config.json)
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rope_theta=100000.0,
                 tie_word_embeddings=True, rms_norm_eps=1e-5),
    # Llama-3.2-1B's shape: 1.24B parameters
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
               tie_word_embeddings=True, rms_norm_eps=1e-5),
    # --dry-run: seconds on a CPU
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 vocab_size=512, max_position_embeddings=1024, tie_word_embeddings=True, rms_norm_eps=1e-5,
                 initializer_range=0.5),  # wide weights: log-probs far from uniform, so the checks compare something
}


@dataclass(frozen=True)
class Sizes:
    """Workload sizes: ``pairs`` judged pairs; token lengths of the prompt's parts; training batches."""

    pairs: int = 256
    personas: int = 8
    dilemmas: int = 4
    persona_len: int = 90
    dilemma_len: int = 120
    answer_len: int = 50
    train_pairs: int = 256
    train_len: int = 256
    rm_batch: int = 64
    dpo_batch: int = 16
    naive_pairs: int = 64  # the batch-1 baselines run on the first pairs only (rates are per pair)
    rounds: int = 3


DRY = Sizes(pairs=6, personas=2, dilemmas=2, persona_len=12, dilemma_len=16, answer_len=6, train_pairs=8, train_len=24,
            rm_batch=4, dpo_batch=4, naive_pairs=4, rounds=2)


@dataclass
class Report:
    """Everything the check measured, written as JSON."""

    environment: dict[str, Any]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, rounds: int, warm_up: bool = True) -> tuple[Any, list[float]]:
    """``fn``'s last output and the seconds of each of ``rounds`` calls, after one untimed call if ``warm_up``
    (a baseline run after agora's side on the same model is warm already)."""
    out = fn() if warm_up else None
    secs = []
    for _ in range(rounds):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        secs.append(time.perf_counter() - t0)
    return out, secs


def rate(items: int, secs: list[float]) -> dict[str, Any]:
    """Items/s from the mean seconds, with the seconds' sample standard deviation."""
    mean = sum(secs) / len(secs)
    sd = math.sqrt(sum((s - mean) ** 2 for s in secs) / (len(secs) - 1)) if len(secs) > 1 else None
    return {"per_s": round(items / mean, 3), "seconds": round(mean, 4), "sd": None if sd is None else round(sd, 4),
            "rounds": len(secs)}


def peak_flops(device: torch.device) -> tuple[float | None, str]:
    if device.type != "cuda":
        return None, "cpu (no peak)"
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAK_BF16.items():  # "H100 PCIe" before "H100"
        if key in name:
            return peak, name
    return None, name


def build_model(name: str, device: torch.device, dtype: torch.dtype, seed: int = 0, classifier: bool = False):
    """A random-initialised model of configuration ``name`` (seeded: the same weights on every call)."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    cfg = LlamaConfig(**CONFIGS[name], pad_token_id=0, bos_token_id=1, eos_token_id=2, num_labels=1)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = (LlamaForSequenceClassification if classifier else LlamaForCausalLM)(cfg)
    return model.to(device=device, dtype=dtype)


def non_embedding_params(model) -> int:
    emb = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - emb


class Prompts:
    """Token-id prompts with the society's shape: the judge's template, one of ``personas`` personas,
    one of ``dilemmas`` dilemmas, two answers; seeded."""

    def __init__(self, s: Sizes, vocab: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.s, self.g, self.vocab = s, g, vocab

        def ids(n: int) -> list[int]:
            return torch.randint(3, vocab, (n,), generator=g).tolist()

        self.ids = ids
        self.head, self.role, self.tail = ids(6), ids(12), ids(24)
        self.personas = [ids(s.persona_len) for _ in range(s.personas)]
        self.dilemmas = [ids(s.dilemma_len) for _ in range(s.dilemmas)]
        self.labels = ids(2)  # the two option letters

    def pair(self, k: int) -> tuple[list[int], list[int], list[int], list[int]]:
        """Pair ``k``'s judge context (template, persona, dilemma) and two answers, and a principle."""
        pick = lambda n: int(torch.randint(n, (1,), generator=self.g))  # noqa: E731
        ctx = self.head + self.personas[pick(self.s.personas)] + self.role + self.dilemmas[k % self.s.dilemmas]
        return ctx, self.ids(self.s.answer_len), self.ids(self.s.answer_len), self.ids(16)


def judge_rows(p: Prompts, n: int):
    """Letter readings: each pair in both orders, one row each, read at the last position."""
    from agents.llm.embedded.score import _Row

    rows = []
    for k in range(n):
        ctx, a, b, principle = p.pair(k)
        for first, second in ((a, b), (b, a)):
            ids = ctx + first + second + principle + p.tail
            rows.append(_Row(len(rows) // 2, ids, [(len(ids) - 1, t, j) for j, t in enumerate(p.labels)]))
    return rows


def likelihood_rows(p: Prompts, n: int):
    """Likelihood judgments: per pair, the prompt + each answer as a row, every answer token read."""
    from agents.llm.embedded.score import _Row

    rows = []
    for k in range(n):
        ctx, a, b, principle = p.pair(k)
        prompt = ctx + principle + p.tail
        for j, ans in enumerate((a, b)):
            rows.append(_Row(k, prompt + ans, [(len(prompt) - 1 + i, t, j) for i, t in enumerate(ans)]))
    return rows


def engine_for(model, device: torch.device, max_batch_size: int):
    """agora's embedded engine around ``model``, without a tokenizer (rows are token ids already)."""
    from agents.llm.base import BackendStats
    from agents.llm.embedded.backend import EmbeddedBackend

    eng = EmbeddedBackend.__new__(EmbeddedBackend)
    eng.model, eng.device, eng.name = model, device, "gpu-check"
    eng.tokenizer = type("PadOnly", (), {"pad_token_id": 0})()
    eng.max_batch_size, eng.max_batch_tokens, eng.max_context_tokens = max_batch_size, 64 * 1024, 4096
    eng.prefix_sharing, eng.prefix_cache_mb, eng.stats, eng.stop_ids = True, 4096, BackendStats(), [2]
    eng._make_coalescers()
    return eng


@torch.inference_mode()
def agora_scores(eng, rows) -> list[list[float]]:
    out = eng._score_rows(rows, share=True)
    eng._prefix_cache.clear()  # rounds independent, as the backend empties it when idle
    return out


@torch.inference_mode()
def naive_scores(model, rows, device: torch.device) -> list[list[float]]:
    """Per row, one batch-1 forward of the whole sequence with full logits; the read positions' log-probs."""
    out = []
    for r in rows:
        logp = torch.log_softmax(model(input_ids=torch.tensor([r.ids], device=device)).logits[0].float(), -1)
        out.append([float(logp[pos, tok]) for pos, tok, _ in r.reads])
    return out


@torch.inference_mode()
def batched_scores(model, rows, device: torch.device, batch: int, full_logits: bool) -> list[list[float]]:
    """Rows sorted by length, ``batch`` at a time, right-padded, no sharing: with ``full_logits`` every
    position's log-softmax (lm-evaluation-harness's ``HFLM``), else only the read positions' logits."""
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].ids))
    out: list[list[float]] = [[] for _ in rows]
    for c in range(0, len(order), batch):
        chunk = [rows[i] for i in order[c:c + batch]]
        width = max(len(r.ids) for r in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        for b, r in enumerate(chunk):
            ids[b, :len(r.ids)] = torch.tensor(r.ids)
        ids = ids.to(device)
        if full_logits:
            logp = torch.log_softmax(model(input_ids=ids).logits.float(), -1)
        else:
            first = min(p for r in chunk for p, _, _ in r.reads)
            hidden = model.model(input_ids=ids).last_hidden_state[:, first:]
            logp = torch.log_softmax(model.lm_head(hidden).float(), -1)
        for b, (i, r) in enumerate(zip(order[c:c + batch], chunk, strict=True)):
            shift = 0 if full_logits else first
            out[i] = logp[b, [p - shift for p, _, _ in r.reads], [t for _, t, _ in r.reads]].tolist()
    return out


def per_pair(rows, scores: list[list[float]]) -> dict[int, list[float]]:
    """Row scores summed into per-request option scores."""
    out: dict[int, list[float]] = {}
    for r, s in zip(rows, scores, strict=True):
        acc = out.setdefault(r.request, [0.0, 0.0])
        for (_, _, j), lp in zip(r.reads, s, strict=True):
            acc[j] += lp
    return out


def reading_section(kind: str, model, device: torch.device, s: Sizes, peak: float | None) -> dict[str, Any]:
    """One reading workload: agora's engine against the naive loop and a batched baseline."""
    p = Prompts(s, model.config.vocab_size)
    rows = (judge_rows if kind == "judge" else likelihood_rows)(p, s.pairs)
    eng = engine_for(model, device, max_batch_size=64 if device.type == "cuda" else 32)
    before = eng.stats.prompt_tokens
    got, a_secs = timed(lambda: agora_scores(eng, rows), device, s.rounds)
    forwarded = (eng.stats.prompt_tokens - before) // (s.rounds + 1)
    naive_rows = rows[:2 * s.naive_pairs]  # two rows per pair: two orders, or two answers
    if kind == "judge":  # the naive loop forwards prompt + option per option: one row per label
        from agents.llm.embedded.score import _Row

        naive_rows = [_Row(r.request, r.ids + [t], [(len(r.ids) - 1, t, j)]) for r in naive_rows for (_, t, j) in r.reads]
    naive_scores(model, naive_rows[:1], device)
    naive, n_secs = timed(lambda: naive_scores(model, naive_rows, device), device, 1, warm_up=False)
    batched, b_secs = timed(lambda: batched_scores(model, rows, device, 32, full_logits=kind == "likelihood"), device,
                            max(1, s.rounds - 1))
    g, nv, bt = per_pair(rows, got), per_pair(naive_rows, naive), per_pair(rows, batched)
    diff_naive = max(abs(a - b) for k in nv for a, b in zip(g[k], nv[k], strict=True))
    diff_batched = max(abs(a - b) for k in bt for a, b in zip(g[k], bt[k], strict=True))
    agora, base, batch_rate = rate(s.pairs, a_secs), rate(s.naive_pairs, n_secs), rate(s.pairs, b_secs)
    tokens_per_s = forwarded / agora["seconds"]
    mfu = None if peak is None else round(2 * non_embedding_params(model) * tokens_per_s / peak, 4)
    return {"unit": "preferences/s", "pairs": s.pairs, "agora": agora, "naive": base, "batched": batch_rate,
            "batched_is": "batch 32, right-padded, no prefix sharing" + (", full log-softmax (HFLM)" if kind == "likelihood"
                                                                         else ", read positions' logits"),
            "ratio_vs_naive": round(agora["per_s"] / base["per_s"], 2),
            "ratio_vs_batched": round(agora["per_s"] / batch_rate["per_s"], 2),
            "tokens_forwarded": forwarded, "tokens_in_rows": sum(len(r.ids) for r in rows),
            "agora_tokens_per_s": round(tokens_per_s, 1), "mfu": mfu,
            "max_abs_logprob_diff_vs_naive": diff_naive, "max_abs_logprob_diff_vs_batched": diff_batched}


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def _train_batches(s: Sizes, vocab: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``train_pairs`` pairs of (prompt + answer a, prompt + answer b) token rows and soft labels; the
    prompt is the first half of each row (the response mask's start)."""
    g = torch.Generator().manual_seed(seed)
    half = s.train_len // 2
    prompt = torch.randint(3, vocab, (s.train_pairs, half), generator=g)
    a = torch.cat([prompt, torch.randint(3, vocab, (s.train_pairs, s.train_len - half), generator=g)], 1)
    b = torch.cat([prompt, torch.randint(3, vocab, (s.train_pairs, s.train_len - half), generator=g)], 1)
    return a, b, torch.rand(s.train_pairs, generator=g), torch.tensor(half)


def reward_section(name: str, device: torch.device, dtype: torch.dtype, s: Sizes, peak: float | None) -> dict[str, Any]:
    """Bradley–Terry steps with agora's loss at batch ``rm_batch`` against batch 1 (pairs/s)."""
    from alignment.losses import bradley_terry

    model = build_model(name, device, torch.float32, classifier=True).train()  # fp32 master weights, bf16 autocast
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    a, b, p, _ = _train_batches(s, model.config.vocab_size)

    def steps(batch: int, n: int) -> float:
        loss = torch.zeros(())
        for i in range(0, n, batch):
            ids = torch.cat([a[i:i + batch], b[i:i + batch]]).to(device)
            with _autocast(device):
                r = model(input_ids=ids).logits[:, 0].float()
            k = len(r) // 2
            loss = bradley_terry(r[:k], r[k:], p[i:i + batch].to(device)).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    big = (s.train_pairs // s.rm_batch) * s.rm_batch
    _, secs = timed(lambda: steps(s.rm_batch, big), device, max(1, s.rounds - 1))
    steps(1, 1)
    _, one = timed(lambda: steps(1, s.naive_pairs), device, 1, warm_up=False)
    agora, base = rate(big, secs), rate(s.naive_pairs, one)
    params = non_embedding_params(model)
    tokens_per_s = agora["per_s"] * 2 * s.train_len

    return {"unit": "pairs/s", "batch": s.rm_batch, "agora": agora, "naive": base, "naive_is": "batch 1",
            "ratio_vs_naive": round(agora["per_s"] / base["per_s"], 2), "tokens_per_pair": 2 * s.train_len,
            "mfu": None if peak is None else round(6 * params * tokens_per_s / peak, 4)}


def _seq_logps(model, ids: torch.Tensor, start: int) -> torch.Tensor:
    """Sum of the response tokens' log-probs per row (tokens from ``start`` on)."""
    logits = model(input_ids=ids).logits[:, start - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(2, ids[:, start:, None])[..., 0].sum(-1)


def dpo_section(name: str, device: torch.device, dtype: torch.dtype, s: Sizes, peak: float | None) -> dict[str, Any]:
    """Soft-label DPO steps with agora's loss (policy + frozen reference) at ``dpo_batch`` against batch 1."""
    from alignment.losses import dpo_soft

    policy = build_model(name, device, torch.float32).train()
    ref = build_model(name, device, dtype).eval().requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-6)
    a, b, p, start = _train_batches(s, policy.config.vocab_size)
    start = int(start)

    def steps(batch: int, n: int) -> float:
        loss = torch.zeros(())
        for i in range(0, n, batch):
            ids = torch.cat([a[i:i + batch], b[i:i + batch]]).to(device)
            k = len(ids) // 2
            with torch.no_grad(), _autocast(device):
                r = _seq_logps(ref, ids, start)
            with _autocast(device):
                pi = _seq_logps(policy, ids, start)
            loss = dpo_soft(pi[:k], pi[k:], r[:k], r[k:], p[i:i + batch].to(device), 0.1).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    big = (s.train_pairs // s.dpo_batch) * s.dpo_batch
    _, secs = timed(lambda: steps(s.dpo_batch, big), device, max(1, s.rounds - 1))
    steps(1, 1)
    _, one = timed(lambda: steps(1, s.naive_pairs), device, 1, warm_up=False)
    agora, base = rate(big, secs), rate(s.naive_pairs, one)
    params = non_embedding_params(policy)
    tokens_per_s = agora["per_s"] * 2 * s.train_len

    # policy forward + backward (6 N per token) and the reference's forward (2 N)
    return {"unit": "pairs/s", "batch": s.dpo_batch, "agora": agora, "naive": base, "naive_is": "batch 1",
            "ratio_vs_naive": round(agora["per_s"] / base["per_s"], 2), "tokens_per_pair": 2 * s.train_len,
            "mfu": None if peak is None else round(8 * params * tokens_per_s / peak, 4)}


def run(models: list[str], sizes: Sizes, device: torch.device, dtype: torch.dtype, budget_s: float) -> Report:
    import transformers

    peak, card = peak_flops(device)
    rep = Report(environment={"torch": torch.__version__, "transformers": transformers.__version__, "device": card,
                              "dtype": str(dtype).removeprefix("torch."), "peak_bf16_flops": peak, "python": platform.python_version(),
                              "threads": torch.get_num_threads(), "sizes": vars(sizes)})
    t0 = time.perf_counter()
    sections: list[tuple[str, Callable[[], dict[str, Any]]]] = []
    for name in models:
        def reading(kind: str, name: str = name) -> dict[str, Any]:
            model = build_model(name, device, dtype).eval()
            try:
                return reading_section(kind, model, device, sizes, peak) | {"params": sum(q.numel() for q in model.parameters())}
            finally:
                del model
        sections += [(f"{name}/judge", lambda r=reading: r("judge")), (f"{name}/likelihood", lambda r=reading: r("likelihood")),
                     (f"{name}/reward_model", lambda n=name: reward_section(n, device, dtype, sizes, peak)),
                     (f"{name}/dpo", lambda n=name: dpo_section(n, device, dtype, sizes, peak))]
    for key, fn in sections:
        if time.perf_counter() - t0 > budget_s:
            rep.skipped.append(f"{key}: the {budget_s:.0f} s budget was spent")
            continue
        try:
            rep.results[key] = fn()
        except torch.OutOfMemoryError as exc:  # a batch too large for the card: recorded, the rest goes on
            rep.skipped.append(f"{key}: out of memory ({str(exc).splitlines()[0][:120]})")
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if key in rep.results:
            rep.results[key]["section_s"] = round(time.perf_counter() - t0, 1)
            print(line(key, rep.results[key]), flush=True)
    rep.environment["wall_s"] = round(time.perf_counter() - t0, 1)
    return rep


def line(key: str, r: dict[str, Any]) -> str:
    extra = f", MFU {100 * r['mfu']:.1f}%" if r.get("mfu") is not None else ""
    batched = f", {r['ratio_vs_batched']}x a batched forward" if "ratio_vs_batched" in r else ""
    return (f"{key}: {r['agora']['per_s']} {r['unit']} ({r['ratio_vs_naive']}x the naive loop{batched}{extra})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="a tiny configuration on the CPU (seconds)")
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    ap.add_argument("--models", default="135m,1b")
    ap.add_argument("--budget-s", type=float, default=480.0, help="sections not started after this many seconds are skipped")
    a = ap.parse_args(argv)
    if a.dry_run:
        device, dtype, models, sizes = torch.device("cpu"), torch.float32, ["tiny"], DRY
    else:
        if not torch.cuda.is_available():
            print("agora: error: no CUDA device (use --dry-run on a CPU)", file=sys.stderr)
            return 2
        device, dtype, sizes = torch.device("cuda"), torch.bfloat16, Sizes()
        models = [m.strip() for m in a.models.split(",") if m.strip()]
        unknown = [m for m in models if m not in CONFIGS]
        if unknown:
            print(f"agora: error: unknown --models {unknown}; choose from {sorted(CONFIGS)}", file=sys.stderr)
            return 2
    rep = run(models, sizes, device, dtype, a.budget_s)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"environment": rep.environment, "results": rep.results, "skipped": rep.skipped}, indent=2))
    print(f"wrote {a.out} ({len(rep.results)} sections, {len(rep.skipped)} skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
