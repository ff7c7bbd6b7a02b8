"""Decoding on the embedded engine: a hand-written decode loop rather than ``model.generate``.

``generate`` draws samples from torch's global RNG, so a batched row's text would depend on its
batch-mates; here every row samples from its own ``torch.Generator`` seeded by its request, and
stops on its own EOS.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from agents.llm.base import Conditioning, GenerateRequest, with_system
from agents.llm.embedded.engine import ForwardEngine


class Decoder(ForwardEngine):
    """Batched decoding (:meth:`generate_batch`), one seeded decode loop per chunk of rows.

    A request whose persona carries a ``contrast`` conditioning decodes as two rows in the same batch,
    its own and the same conversation with the no-persona system text (each with its own KV cache):
    at every step the persona row's next-token logits become ``(1 + α)·ℓ(persona) − α·ℓ(base)``
    (context-aware decoding, Shi et al. 2023), the token is drawn from those, and the base row is fed the
    same token. A ``steer`` conditioning adds its vector to the row's activations (:meth:`_steering`).
    """

    @torch.inference_mode()
    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """Decode for a batch: left padding, KV cache, per-row seed, per-row stop."""
        self.stats.generate_calls += len(requests)
        prompts = [self._fit(self._prompt_ids(r.messages), self.max_context_tokens - r.max_new_tokens)
                   for r in requests]
        conds = [r.conditioning for r in requests]
        # a unit is a request's rows: its own, and the no-persona row of a contrast
        units: list[list[int]] = [[i] for i in range(len(requests))]
        rows_p, rows_r, rows_c = list(prompts), list(requests), list(conds)
        base_of: dict[int, int] = {}
        for i, c in enumerate(conds):
            if c is not None and c.method == "contrast":
                base_of[i] = len(rows_p)
                units[i].append(len(rows_p))
                rows_p.append(self._fit(self._prompt_ids(with_system(requests[i].messages, c.base)),
                                        self.max_context_tokens - requests[i].max_new_tokens))
                rows_r.append(requests[i])
                rows_c.append(None)
        order = sorted(range(len(requests)), key=lambda i: len(prompts[i]))  # similar lengths together
        out: list[str] = [""] * len(requests)
        chunk: list[int] = []  # rows
        for i in order + [-1]:
            unit = units[i] if i >= 0 else []
            if chunk and (i < 0 or len(chunk) + len(unit) > self.max_batch_size or (len(chunk) + len(unit)) * max(
                    len(rows_p[k]) + rows_r[k].max_new_tokens for k in chunk + unit) > self.max_batch_tokens):
                where = {k: b for b, k in enumerate(chunk)}
                pairs = [(where[k], where[base_of[k]], rows_c[k].alpha) for k in chunk if k in base_of]
                texts = self._decode_rows([rows_p[k] for k in chunk], [rows_r[k] for k in chunk],
                                          [rows_c[k] for k in chunk], pairs)
                for k, t in zip(chunk, texts, strict=True):
                    if k < len(requests):
                        out[k] = t
                chunk = []
            chunk += unit
        self._on_idle()
        return out

    def _decode_rows(self, prompts: list[list[int]], reqs: list[GenerateRequest],
                     conds: Sequence[Conditioning | None] | None = None,
                     pairs: Sequence[tuple[int, int, float]] = ()) -> list[str]:
        """Decode rows together; ``pairs`` are ``(persona row, base row, α)`` of contrast requests (a
        base row's text is not a result: it is returned but its tokens are the persona row's)."""
        n = len(prompts)
        # The last prompt position is always forwarded: its logits give the first token.
        out, cache, mask = self._prefill(prompts, [len(p) - 1 for p in prompts], conds=conds)
        vectors = self._vectors(conds)
        pos = mask.sum(-1, keepdim=True) - 1
        gens = [torch.Generator(device=self.device).manual_seed(int(r.seed) & 0x7FFF_FFFF_FFFF_FFFF) for r in reqs]
        temps = torch.tensor([max(r.temperature, 0.0) for r in reqs], device=self.device)
        top_p = torch.tensor([r.top_p for r in reqs], device=self.device)
        budget = torch.tensor([r.max_new_tokens for r in reqs], device=self.device)
        stop = torch.tensor(self.stop_ids, device=self.device)
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        produced: list[list[int]] = [[] for _ in range(n)]
        bases = {b for _, b, _ in pairs}
        for t in range(int(budget.max())):
            logits = out.logits[:, -1, :].float()
            if pairs:
                logits = logits.clone()
                for i, b, alpha in pairs:
                    logits[i] = (1 + alpha) * logits[i] - alpha * logits[b]
            nxt = self._sample(logits, temps, top_p, max(r.top_k for r in reqs), gens)
            for i, b, _ in pairs:
                nxt[b] = nxt[i]  # the base row follows the text the persona row writes
            nxt = torch.where(done, torch.full_like(nxt, self.tokenizer.pad_token_id), nxt)
            for i in torch.nonzero(~done).flatten().tolist():
                produced[i].append(int(nxt[i]))
            done = done | torch.isin(nxt, stop) | (t + 1 >= budget)
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=self.device)], dim=1)
            pos = pos[:, -1:] + 1
            with self._steering(vectors):
                out = self._forward(cache, input_ids=nxt[:, None], attention_mask=mask, position_ids=pos, use_cache=True)
        self.stats.generated_tokens += sum(len(p) for k, p in enumerate(produced) if k not in bases)
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
