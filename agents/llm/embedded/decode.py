"""Decoding on the embedded engine: a hand-written decode loop rather than ``model.generate``.

``generate`` draws samples from torch's global RNG, so a batched row's text would depend on its
batch-mates; here every row samples from its own ``torch.Generator`` seeded by its request, and
stops on its own EOS.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from agents.llm.base import GenerateRequest
from agents.llm.embedded.engine import ForwardEngine


class Decoder(ForwardEngine):
    """Batched decoding (:meth:`generate_batch`), one seeded decode loop per chunk of rows."""

    @torch.inference_mode()
    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """Decode for a batch: left padding, KV cache, per-row seed, per-row stop."""
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
            out = self._forward(cache, input_ids=nxt[:, None], attention_mask=mask, position_ids=pos, use_cache=True)
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
