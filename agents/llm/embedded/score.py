"""Scoring on the embedded engine: log-probabilities of candidate continuations, with a prefix
shared by several rows run once (:func:`~agents.llm.embedded.prefix.plan_prefix_groups`)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch

from agents.llm.base import ChatMessage, Conditioning, ScoreRequest, conditioning_of
from agents.llm.embedded.engine import ForwardEngine
from agents.llm.embedded.prefix import plan_prefix_groups, sorted_common_prefixes


@dataclass
class _Row:
    """One sequence to score: ``reads`` are ``(position, token, candidate)``: the log-prob of
    ``token`` predicted at ``position`` is added to candidate ``candidate`` of request ``request``."""

    request: int
    ids: list[int]
    reads: list[tuple[int, int, int]]
    cond: Conditioning | None = None  # a steered row's conditioning

    @property
    def first_read(self) -> int:
        return min(p for p, _, _ in self.reads)

    @property
    def ns(self) -> Hashable | None:
        """The steering identity: rows share prefixes and cached KV only within one."""
        return self.cond.steer_key if self.cond is not None else None


class Scorer(ForwardEngine):
    """Batched scoring of candidates (:meth:`score_batch`) and per-token log-probs (:meth:`token_logprobs`)."""

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
            cond = requests[i].conditioning
            cond = cond if cond is not None and cond.steer_key is not None else None
            if all(len(c) == 1 for c in cs):
                rows.append(_Row(i, p, [(len(p) - 1, c[0], j) for j, c in enumerate(cs)], cond))
            else:
                rows += [_Row(i, p + c, [(len(p) - 1 + k, t, j) for k, t in enumerate(c)], cond) for j, c in enumerate(cs)]
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
            spaces = list(dict.fromkeys(r.ns for r in rows))
            if spaces == [None]:
                groups = plan_prefix_groups([r.ids for r in rows], [r.first_read for r in rows], max_rows)
            else:  # a prefix is shared only among rows steered alike
                groups = []
                for ns in spaces:
                    idx = [i for i, r in enumerate(rows) if r.ns == ns]
                    groups += [(length, [idx[k] for k in members]) for length, members in plan_prefix_groups(
                        [rows[i].ids for i in idx], [rows[i].first_read for i in idx], max_rows)]
            if self._cache is not None and len(self._cache):
                groups = self._regroup_cached(groups, rows)
        else:  # every row alone, whole sequence as "suffix"
            groups = [(0, [i]) for i in range(len(rows))]
        # Similar suffix lengths together: a chunk's suffix forward is as wide as its longest suffix.
        groups.sort(key=lambda g: (max(len(rows[i].ids) - g[0] for i in g[1]), max(len(rows[i].ids) for i in g[1])))
        results: list[list[float]] = [[] for _ in rows]
        for chunk in self._chunks(groups, rows):
            members = [i for _, ms in chunk for i in ms]
            if share and self._cache is not None and len(members) > 1:
                # Every prefix two of the chunk's rows share (a persona read on several dilemmas, one
                # prompt with two options, prompts alike up to a sentence) forwarded once into the cache,
                # then the chunk regrouped: each row starts from its longest such prefix.
                # Rows steered differently share nothing (their KV differs): one tree per steering identity.
                regrouped: list[tuple[int, list[int]]] = []
                for ns in dict.fromkeys(rows[i].ns for i in members):
                    ms = [i for i in members if rows[i].ns == ns]
                    if len(ms) > 1:
                        self._fill_shared(rows, ms)
                    sub = plan_prefix_groups([rows[i].ids for i in ms], [rows[i].first_read for i in ms], len(ms))
                    regrouped += [(n, [ms[k] for k in ks]) for n, ks in sub]
                chunk = self._regroup_cached(regrouped, rows)
            self._score_chunk(chunk, rows, results)
        return results

    def _fill_shared(self, rows: list[_Row], members: list[int]) -> None:
        """Forward into the prefix cache, once each, the prefixes that two or more of ``members`` share
        (in whole cache blocks, never past a row's first read), shallowest first so that each starts
        from the KV of the one before it: the rows' prefix tree, each branch forwarded once. ``members``
        share one steering identity; the prefixes are forwarded and stored under it."""
        store, ns, cond = self._cache, rows[members[0]].ns, rows[members[0]].cond
        seqs = [rows[i].ids for i in members]
        order, lcp = sorted_common_prefixes(seqs, [rows[i].first_read for i in members])
        nodes: dict[tuple[int, ...], int] = {}
        for k, length in enumerate(lcp):
            n = length // store.block * store.block
            if n:
                nodes.setdefault(tuple(seqs[order[k]][:n]), n)
        todo = sorted((key for key in nodes if store.find(key, len(key), touch=False, ns=ns)[0] < len(key)), key=len)
        wave: dict[tuple[int, ...], int] = {}
        for key in todo:  # a node's wave follows every shorter node that is its prefix
            wave[key] = 1 + max((wave[key[:m]] for m in range(store.block, len(key), store.block) if key[:m] in wave),
                                default=0)
        for w in sorted(set(wave.values())):
            level = [list(key) for key in todo if wave[key] == w]
            level.sort(key=lambda s: len(s) - store.find(s, len(s), touch=False, ns=ns)[0])  # similar lengths to forward together
            batch: list[list[int]] = []
            for s in level + [[]]:
                if batch and (not s or len(batch) == self.max_batch_size
                              or (len(batch) + 1) * max(len(s), *map(len, batch)) > self.max_batch_tokens):
                    self._prefill(batch, [len(x) for x in batch], conds=[cond] * len(batch))
                    batch = []
                batch.append(s)

    def _regroup_cached(self, groups: list[tuple[int, list[int]]], rows: list[_Row]) -> list[tuple[int, list[int]]]:
        """A row whose prompt the prefix cache holds further than its group's shared prefix runs
        alone, with the cached part as its prefix (e.g. a stance prompt its decoding forwarded)."""
        hit = [self._cache.find(r.ids, r.first_read, touch=False, ns=r.ns)[0] for r in rows]
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
        dev = self.device
        lens = [length for length, _ in chunk]
        row_ids = [i for _, members in chunk for i in members]
        seg_of = [s for s, (_, members) in enumerate(chunk) for _ in members]
        width = max(lens)
        if width:  # each group's prefix once (from the prefix cache where it can), then copied to its rows
            prefixes = [rows[members[0]].ids[:length] for length, members in chunk]
            _, cache, p_mask = self._prefill(prefixes, lens, conds=[rows[members[0]].cond for _, members in chunk])
            index = torch.tensor(seg_of, device=dev)
            cache.batch_select_indices(index)
            p_mask = p_mask[index]
        else:
            cache = self._new_cache()
            p_mask = torch.zeros((len(row_ids), 0), dtype=torch.long, device=dev)
        suffixes = [rows[i].ids[lens[s]:] for i, s in zip(row_ids, seg_of, strict=True)]
        self.stats.prompt_tokens += sum(len(x) for x in suffixes)
        s_ids, s_mask = self._left_pad(suffixes)
        pos = torch.tensor([lens[s] for s in seg_of], device=dev)[:, None] + (s_mask.cumsum(-1) - 1).clamp(min=0)
        # Rows end aligned (left padding), so the positions read lie in the last ``keep`` columns.
        keep = max(len(rows[i].ids) - rows[i].first_read for i in row_ids)
        mask = torch.cat([p_mask, s_mask], dim=1)
        store = self._cache
        with self._steering(self._vectors([rows[i].cond for i in row_ids])):
            logits = self._forward(cache, input_ids=s_ids, attention_mask=mask, position_ids=pos,
                                   use_cache=bool(width) or store is not None, logits_to_keep=keep).logits
        if store is not None:  # whole prompts too: a later decoding from the same prompt starts from them
            for b, i in enumerate(row_ids):
                store.store(rows[i].ids, lambda k, b=b: self._row_kv(cache, mask, b, k), ns=rows[i].ns)
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
        with self._steering(self._vectors([conditioning_of(messages)])):
            logp = torch.log_softmax(self.model(input_ids=ids).logits[0, len(prompt) - 1:-1].float(), -1)
        out = []
        for k, tok in enumerate(cont):
            alts = []
            if top:
                vals, idx = logp[k].topk(top)
                alts = [(self.tokenizer.decode([int(i)]), float(v)) for v, i in zip(vals, idx, strict=True)]
            out.append((self.tokenizer.decode([tok]), float(logp[k, tok]), alts))
        return out
