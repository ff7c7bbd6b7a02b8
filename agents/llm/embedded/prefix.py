"""Prefix sharing for the embedded engine: which rows share a prompt prefix (planned once per
scoring call), and a cache of recent prompts' KV states (reused across calls within a burst).

Hand-written: serving engines (vLLM, SGLang) do both inside their servers (a radix tree), which we
cannot run in-process on a CPU.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import torch


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
    spans one burst of concurrent work, e.g. a stance phase's decoding and its scoring of the
    same prompts, and never outlives the weights, or a checkpoint (a resumed run starts a step
    with an empty cache, as the uninterrupted run did). Hand-written for the reason given in
    :func:`plan_prefix_groups`: vLLM's and SGLang's prefix caches live inside their servers.
    """

    # 8-token blocks: a prompt's KV is reused up to at most 7 tokens short of what it shares (16 forwarded 8% more
    # tokens on the likelihood stance benchmark, benches/NOTES.md); its index costs ~L/8 keys per cached prompt.
    def __init__(self, max_bytes: int, block: int = 8) -> None:
        self.max_bytes, self.block = max_bytes, block
        self._entries: OrderedDict[int, tuple[torch.Tensor, list[Hashable]]] = OrderedDict()
        self._index: dict[Hashable, int] = {}  # block-aligned prefix (under its namespace) -> entry holding its KV
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

    @staticmethod
    def _key(ids: Sequence[int], ns: Hashable | None) -> Hashable:
        """An index key: the tokens, under a namespace when the KV depends on more than them (a
        steering vector's identity)."""
        return tuple(ids) if ns is None else (ns, tuple(ids))

    def find(self, ids: Sequence[int], limit: int, touch: bool = True,
             ns: Hashable | None = None) -> tuple[int, torch.Tensor | None]:
        """Longest cached prefix of ``ids`` (stored under ``ns``) no longer than ``limit``: ``(length, kv)``,
        where ``kv`` is ``[layers, 2, kv_heads, >= length, head_dim]``; ``(0, None)`` on a miss."""
        for k in range(min(limit, len(ids)) // self.block, 0, -1):
            entry = self._index.get(self._key(ids[: k * self.block], ns))
            if entry is not None:
                if touch:
                    self._entries.move_to_end(entry)
                return k * self.block, self._entries[entry][0]
        return 0, None

    def store(self, ids: Sequence[int], kv: Callable[[int], torch.Tensor], ns: Hashable | None = None) -> None:
        """Keep the KV of ``ids``' whole blocks under ``ns``; ``kv(n)`` returns that of its first ``n`` tokens
        (called only when some block is new)."""
        n = len(ids) // self.block * self.block
        if not n or self._key(ids[:n], ns) in self._index:  # its longest block is held: so are the shorter ones
            return
        keys = [self._key(ids[:k], ns) for k in range(self.block, n + 1, self.block)]
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
