"""Seeds: one root seed, spawned into child seeds by purpose.

Every LLM call's seed is a pure function of (root seed, generation, step, phase, agent, k), so a
call's output never depends on the order calls were made in or on which batch it landed in.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")
PHASES = {"stance": 1, "debate": 2, "critique": 3, "revision": 4, "judge": 5, "population": 6, "network": 7,
          "schedule": 8, "model": 9}


def child_seed(root: int, *path: int | str) -> int:
    """A 63-bit seed for ``path`` under ``root`` (strings hashed with CRC32, stable across runs)."""
    words = [int(root)] + [PHASES.get(p, zlib.crc32(p.encode())) if isinstance(p, str) else int(p) for p in path]
    return int(np.random.SeedSequence(words).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


def child_rng(root: int, *path: int | str) -> np.random.Generator:
    return np.random.default_rng(child_seed(root, *path))


def sample_dilemmas(dilemmas: Sequence[T], n: int, seed: int, *path: int | str) -> list[T]:
    """``n`` dilemmas in a seeded order (all of them when the pool is smaller)."""
    order = child_rng(seed, "sample_dilemmas", *path).permutation(len(dilemmas))[:n]
    return [dilemmas[int(i)] for i in order]
