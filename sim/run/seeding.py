"""Seeds: one root seed, spawned into child seeds by purpose.

Every LLM call's seed is a pure function of (root seed, generation, step, phase, agent, k), so a
call's output never depends on the order calls were made in or on which batch it landed in.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")
PHASES = {"stance": 1, "debate": 2, "critique": 3, "revision": 4, "judge": 5, "population": 6, "network": 7,
          "schedule": 8, "model": 9}


def child_seed(root: int, *path: int | str) -> int:
    """A 63-bit seed for ``path`` under ``root`` (strings hashed with CRC32, stable across runs): the first 64 bits
    of ``np.random.SeedSequence([root, *path]).generate_state``, shifted right by one."""
    words: list[int] = []
    for w in (int(root), *((PHASES[p] if p in PHASES else zlib.crc32(p.encode())) if isinstance(p, str) else int(p)
                           for p in path)):
        if 0 <= w <= _M32:
            words.append(w)
        elif w < 0:
            raise ValueError(f"seed words must be non-negative, got {w}")
        else:
            words += _uint32_words(w)
    return _seed_sequence_state(words) >> 1


# SeedSequence's mixing (numpy/random/bit_generator.pyx), by hand: a step makes ~10 seeds per agent (950,000 at
# 100,000 agents) and numpy's object costs ~17 µs a seed, mostly its own set-up. Here the pool after a path's first
# words but the last two (root, generation, step, phase, dilemma: shared by a whole phase) is computed once and
# cached, and the rest is a few dozen integer operations. tests/unit/test_seeding.py checks it against numpy.
_M32 = 0xFFFFFFFF
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R, _POOL = 0xCA01F9DD, 0x4973F715, 4


def _uint32_words(n: int) -> list[int]:
    """``n`` as SeedSequence reads an int: 32-bit words, least significant first (0 is one word)."""
    out = [n & _M32]
    while n := n >> 32:
        out.append(n & _M32)
    return out


def _mix_in(pool: list[int], h: int, w: int) -> int:
    """Mix entropy word ``w`` into every pool word (in place); the new hash constant."""
    for dst in range(_POOL):
        v = w ^ h
        h = (h * _MULT_A) & _M32
        v = (v * h) & _M32
        r = (_MIX_L * pool[dst] - _MIX_R * (v ^ (v >> 16))) & _M32
        pool[dst] = r ^ (r >> 16)
    return h


@functools.lru_cache(maxsize=4096)
def _pool_after(head: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """The pool and hash constant once ``head`` is mixed in (fewer than four words: padded with zeros)."""
    if len(head) > _POOL:
        pool_t, h = _pool_after(head[:-1])
        pool = list(pool_t)
        h = _mix_in(pool, h, head[-1])
        return tuple(pool), h
    h, pool = _INIT_A, []
    for i in range(_POOL):
        v = (head[i] if i < len(head) else 0) ^ h
        h = (h * _MULT_A) & _M32
        v = (v * h) & _M32
        pool.append(v ^ (v >> 16))
    for src in range(_POOL):
        for dst in range(_POOL):
            if src != dst:
                v = pool[src] ^ h
                h = (h * _MULT_A) & _M32
                v = (v * h) & _M32
                r = (_MIX_L * pool[dst] - _MIX_R * (v ^ (v >> 16))) & _M32
                pool[dst] = r ^ (r >> 16)
    return tuple(pool), h


def _seed_sequence_state(words: list[int]) -> int:
    """``SeedSequence(words).generate_state(2, np.uint32).view(np.uint64)[0]``."""
    # the path's words but the last two are shared by many calls (a phase's dilemma): cached
    cut = max(_POOL, len(words) - 2)
    pool_t, h = _pool_after(tuple(words[:cut]))
    pool = list(pool_t)
    for w in words[cut:]:
        h = _mix_in(pool, h, w)
    out, h = [], _INIT_B
    for v in pool[:2]:
        v ^= h
        h = (h * _MULT_B) & _M32
        v = (v * h) & _M32
        out.append(v ^ (v >> 16))
    return out[0] | out[1] << 32


def child_rng(root: int, *path: int | str) -> np.random.Generator:
    return np.random.default_rng(child_seed(root, *path))


def sample_dilemmas(dilemmas: Sequence[T], n: int, seed: int, *path: int | str) -> list[T]:
    """``n`` dilemmas in a seeded order (all of them when the pool is smaller)."""
    order = child_rng(seed, "sample_dilemmas", *path).permutation(len(dilemmas))[:n]
    return [dilemmas[int(i)] for i in order]
