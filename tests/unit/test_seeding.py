"""child_seed mixes by hand what numpy's SeedSequence mixes: it must give numpy's seeds exactly (every run id,
sampled text and draw depends on them)."""

import random
import zlib

import numpy as np
import pytest

from sim.run.seeding import PHASES, child_seed


def numpy_seed(root, *path):
    words = [int(root)] + [PHASES.get(p, zlib.crc32(p.encode())) if isinstance(p, str) else int(p) for p in path]
    return int(np.random.SeedSequence(words).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


def test_child_seed_equals_numpys_seed_sequence_over_random_paths():
    r = random.Random(0)
    for _ in range(20_000):
        root = r.choice([0, 1, 7, 2**32 - 1, 2**32, 2**63 - 1, r.randrange(2**64), r.randrange(100)])
        path = [r.choice([0, 1, 2**31, 2**32 + 5, r.randrange(10**6), r.randrange(2**70), np.int64(r.randrange(99)),
                          "debate", "stance", "population", "calibration", ""]) for _ in range(r.randrange(10))]
        assert child_seed(root, *path) == numpy_seed(root, *path), (root, path)


def test_child_seed_of_a_steps_calls_equals_numpys():
    """The shape of a step's call seeds (root, generation, step, phase, dilemma, agent, turn), cached prefixes reused."""
    for agent in range(300):
        for k in range(3):
            assert child_seed(0, 0, 1, "debate", 2, agent, k) == numpy_seed(0, 0, 1, "debate", 2, agent, k)


def test_a_negative_seed_word_is_refused_as_numpy_refuses_it():
    with pytest.raises(ValueError):
        numpy_seed(1, -3)
    with pytest.raises(ValueError, match="non-negative"):
        child_seed(1, -3)
