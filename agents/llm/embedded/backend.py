"""The embedded backend: a small instruct model run in-process with transformers + torch,
behind the :class:`~agents.llm.base.LLMBackend` protocol; concurrent requests are coalesced into
batches for the engine (:mod:`.decode`, :mod:`.score`)."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Sequence
from pathlib import Path

from agents.llm.base import BackendError, BackendStats, Coalescer, GenerateRequest, ScoreRequest
from agents.llm.embedded.decode import Decoder
from agents.llm.embedded.prefix import PrefixCache
from agents.llm.embedded.score import Scorer
from agents.llm.embedded.weights import DEFAULT_MODEL_NAME, load_model, pick_device, prepare_default_model


class EmbeddedBackend(Decoder, Scorer):
    """A local causal LM behind the :class:`~agents.llm.base.LLMBackend` protocol.

    Args:
        model_path: a local HF model folder; ``None`` uses the bundled SmolLM2 (converted on first use).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        dtype: ``"auto"`` (bf16 on CUDA, fp32 on CPU), ``"float32"`` or ``"bfloat16"``.
        max_batch_size: most rows in one forward batch.
        max_batch_tokens: most rows x padded length in one forward batch (bounds the KV cache).
        prefix_sharing: score a prefix shared by several requests once (see :func:`.prefix.plan_prefix_groups`)
            and start a prompt from the KV of an earlier one with the same opening (see :class:`.prefix.PrefixCache`).
        prefix_cache_mb: memory for that cache (0 turns it off).
        max_context_tokens: prompt + decoding budget; longer prompts are truncated by
            :meth:`_fit`'s rule and counted in ``stats.truncated_prompts``.
    """

    conditions_generation = True  # steers and contrasts decoding too (agents.persona.support_line)

    def __init__(self, model_path: str | Path | None = None, *, device: str = "auto", dtype: str = "auto",
                 max_batch_size: int = 32, max_batch_tokens: int = 16384, max_context_tokens: int = 2048,
                 prefix_sharing: bool = True, prefix_cache_mb: int = 512, name: str | None = None) -> None:
        path = Path(model_path) if model_path else prepare_default_model()
        if not (path / "config.json").is_file():
            raise BackendError(f"{path}: not a Hugging Face model folder (no config.json)")
        self.device = pick_device(device)
        t0 = time.perf_counter()
        self.tokenizer, self.model = load_model(path, self.device, dtype)
        self.load_seconds = time.perf_counter() - t0
        self.name = name or (DEFAULT_MODEL_NAME if model_path is None else path.name)
        self.model_path = path
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

    @property
    def layer_count(self) -> int:
        """Decoder layers (a steering layer must be below it)."""
        return int(self.model.config.num_hidden_layers)

    def _count_batch(self, n: int) -> None:
        self.stats.batches += 1

    # -- async protocol -------------------------------------------------------------------------
    async def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        return list(await asyncio.gather(*(self._gen.submit(r) for r in requests)))

    async def score_choices(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        return list(await asyncio.gather(*(self._score.submit(r) for r in requests)))
