"""The embedded engine's shared core: tokenisation, left padding, and the prefill that starts
each prompt from the prefix cache. :class:`~agents.llm.embedded.decode.Decoder` and
:class:`~agents.llm.embedded.score.Scorer` build on it; the backend combines the two.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from agents.llm.base import BackendStats, ChatMessage, Conditioning
from agents.llm.embedded.prefix import PrefixCache


@functools.cache
def cache_kwarg(model_class: type) -> str:
    """The forward's name for a KV cache: ``cache`` since transformers 5.24, ``past_key_values`` before (an
    unknown keyword would be swallowed by ``**kwargs`` and the cache silently not used)."""
    params = inspect.signature(model_class.forward).parameters
    return "past_key_values" if "past_key_values" in params and "cache" not in params else "cache"


class ForwardEngine:
    """Forward passes of one loaded causal LM; the state is set by
    :class:`~agents.llm.embedded.backend.EmbeddedBackend`, which documents its settings."""

    tokenizer: Any
    model: Any
    device: torch.device
    model_path: Path
    stop_ids: list[int]
    max_batch_size: int
    max_batch_tokens: int
    max_context_tokens: int
    prefix_sharing: bool
    prefix_cache_mb: int
    stats: BackendStats
    _prefix_cache: PrefixCache

    @property
    def _cache(self) -> PrefixCache | None:
        return self._prefix_cache if self.prefix_sharing and self.prefix_cache_mb > 0 else None

    def _on_idle(self) -> None:
        """Called after each direct batch call; the backend empties the prefix cache there."""

    def _forward(self, cache, **kwargs: Any):
        """The model's forward with ``cache`` as its KV cache, under the name this transformers uses."""
        return self.model(**kwargs, **{cache_kwarg(type(self.model)): cache})

    # -- steering (agents/steering.py): a vector per row added to one decoder layer's output -----------
    def _steer_vector(self, cond: Conditioning) -> torch.Tensor:
        """The steering vector of ``cond`` (directions loaded once per model, from the disk cache)."""
        from agents.llm.embedded.weights import cache_root
        from agents.steering import load_bank, steering_vector

        memo = self.model.__dict__.setdefault("_agora_steer_vectors", {})
        key = cond.steer_key
        if key not in memo:
            bank = self.model.__dict__.get("_agora_steer_bank")
            if bank is None:
                bank = load_bank(self.model, self.tokenizer, self.device, self.model_path.name, cache_root() / "steering")
                self.model.__dict__["_agora_steer_bank"] = bank
            memo[key] = steering_vector(bank, cond).to(self.device, self.model.dtype)
        return memo[key]

    def _vectors(self, conds: Sequence[Conditioning | None] | None) -> dict[int, torch.Tensor] | None:
        """Per layer, the ``[rows, hidden]`` vectors to add (zero rows unsteered); None when no row is steered."""
        if not conds or all(c is None or c.steer_key is None for c in conds):
            return None
        out: dict[int, torch.Tensor] = {}
        for i, c in enumerate(conds):
            if c is not None and c.steer_key is not None:
                rows = out.get(c.layer)
                if rows is None:
                    rows = out[c.layer] = torch.zeros((len(conds), self.model.config.hidden_size),
                                                      dtype=self.model.dtype, device=self.device)
                rows[i] = self._steer_vector(c)
        return out

    @contextmanager
    def _steering(self, vectors: dict[int, torch.Tensor] | None) -> Iterator[None]:
        """Forwards inside add ``vectors[layer][row]`` to every position of ``row`` at ``layer``'s output.
        The hooks live on the model (shared by :meth:`reconfigured` copies) and do nothing outside."""
        if vectors is None:
            yield
            return
        state = self.model.__dict__.get("_agora_steer_state")
        if state is None:
            state = self.model.__dict__["_agora_steer_state"] = {"now": None}

            def hook(module: Any, args: Any, output: Any, layer: int = 0) -> Any:
                v = state["now"].get(layer) if state["now"] else None
                if v is None:
                    return None
                if isinstance(output, tuple):
                    return (output[0] + v[:, None, :].to(output[0].dtype), *output[1:])
                return output + v[:, None, :].to(output.dtype)
            for k, block in enumerate(self.model.model.layers):
                block.register_forward_hook(lambda m, a, o, k=k: hook(m, a, o, k))
        state["now"] = vectors
        try:
            yield
        finally:
            state["now"] = None

    @staticmethod
    def _rows_of(vectors: dict[int, torch.Tensor] | None, index: Sequence[int] | torch.Tensor) -> dict[int, torch.Tensor] | None:
        """``vectors`` for a subset of the rows (in ``index`` order)."""
        if vectors is None:
            return None
        idx = torch.as_tensor(index, device=next(iter(vectors.values())).device)
        return {layer: v[idx] for layer, v in vectors.items()}

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

    def _new_cache(self, layers: Sequence[tuple[torch.Tensor, torch.Tensor]] = ()):
        """A KV cache shaped for this model (as its forward would make one), its first layers filled
        with ``layers``' ``(keys, values)``, each ``[batch, kv_heads, tokens, head_dim]``."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for i, (keys, values) in enumerate(layers):
            cache.update(keys, values, i)
        return cache

    def _prefill(self, seqs: list[list[int]], limits: list[int], keep: int = 1,
                 conds: Sequence[Conditioning | None] | None = None):
        """Forward ``seqs`` as one left-padded batch, each starting from the KV of its longest
        prefix in the prefix cache (at most ``limits[i]`` tokens: positions whose logits are needed
        are always forwarded), and store the new prompts' KV in the cache. A row steered by
        ``conds[i]`` finds and stores KV only under its vector's identity (a prefix computed without
        the vector is never reused for it, nor the other way round).

        Returns ``(output, cache, mask)``; ``output`` (the logits) is None unless every sequence was
        forwarded, i.e. unless some were cached whole (possible only where ``limits[i] == len(seqs[i])``).
        """
        dev, n, store = self.device, len(seqs), self._cache
        ns = [c.steer_key if c is not None else None for c in conds] if conds else [None] * n
        hits = [store.find(s, lim, ns=k) if store is not None else (0, None)
                for s, lim, k in zip(seqs, limits, ns, strict=True)]
        width = max(h for h, _ in hits)
        p_mask = torch.zeros((n, width), dtype=torch.long, device=dev)
        if width:
            shape = next(t.shape for h, t in hits if h)
            past = torch.zeros((shape[0], 2, n, shape[2], width, shape[4]), dtype=self.model.dtype, device=dev)
            for i, (h, t) in enumerate(hits):
                if h:
                    past[:, :, i, :, width - h:] = t[:, :, :, :h]
                    p_mask[i, width - h:] = 1
            cache = self._new_cache([(past[layer, 0], past[layer, 1]) for layer in range(shape[0])])
            self.stats.cached_prompt_tokens += sum(h for h, _ in hits)
        else:
            cache = self._new_cache()
        rest = [s[h:] for s, (h, _) in zip(seqs, hits, strict=True)]
        run = [i for i, r in enumerate(rest) if r]  # rows cached whole are not forwarded (no padded rows)
        if not run:
            return None, cache, p_mask
        sub, sub_mask = cache, p_mask
        if len(run) < n:
            index = torch.tensor(run, device=dev)
            sub = self._new_cache([(layer.keys[index], layer.values[index]) for layer in cache.layers] if width else ())
            sub_mask = p_mask[index]
        self.stats.prompt_tokens += sum(len(rest[i]) for i in run)
        ids, r_mask = self._left_pad([rest[i] for i in run])
        pos = torch.tensor([hits[i][0] for i in run], device=dev)[:, None] + (r_mask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([sub_mask, r_mask], dim=1)
        with self._steering(self._rows_of(self._vectors(conds), run)):
            out = self._forward(sub, input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=keep)
        if store is not None:
            for b, i in enumerate(run):
                store.store(seqs[i], lambda k, b=b: self._row_kv(sub, mask, b, k), ns=ns[i])
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
        return None, self._new_cache(layers), full_mask

    @staticmethod
    def _row_kv(cache, mask: torch.Tensor, row: int, n: int) -> torch.Tensor:
        """Row ``row``'s first ``n`` real tokens' KV as ``[layers, 2, kv_heads, n, head_dim]``."""
        cols = torch.nonzero(mask[row]).flatten()[:n]
        first = cache.layers[0].keys
        out = torch.empty((len(cache.layers), 2, first.shape[1], len(cols), first.shape[3]), dtype=first.dtype,
                          device=first.device)
        for k, layer in enumerate(cache.layers):  # gathered straight into place: one copy (stacking copied three times)
            torch.index_select(layer.keys[row], 1, cols, out=out[k, 0])
            torch.index_select(layer.values[row], 1, cols, out=out[k, 1])
        return out
