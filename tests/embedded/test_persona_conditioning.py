"""Persona conditioning on the real embedded model: steering vectors per row inside a batch, the prefix cache
kept apart per vector, contrast generation, and a direction that moves its own axis's statements."""

import asyncio

import pytest
import torch

from agents.llm.base import ChatMessage, Conditioning, GenerateRequest, ScoreRequest
from agents.steering import STATEMENTS

QUESTION = "A friend asks you to lie to their boss for them. What do you do?"


def steer(beta: float, layer: int = 10, **weights: float) -> Conditioning:
    return Conditioning(method="steer", beta=beta, layer=layer,
                        steer=tuple(sorted((weights or {"care": 1.0, "individualism": -1.0}).items())))


def conv(cond: Conditioning | None, persona: str = "You are a thoughtful person.", q: str = QUESTION):
    return (ChatMessage(role="system", content=persona, conditioning=cond), ChatMessage(role="user", content=q))


CHOICES = ("I refuse and tell the truth.", "I lie to protect my friend.")


def test_steering_with_beta_zero_is_the_unsteered_model_exactly(embedded):
    for cond in (steer(0.0), steer(0.5, care=0.0, individualism=0.0)):
        assert cond.steer_key is None  # nothing to add: the rows are plain rows
    plain = [ScoreRequest(messages=conv(None), choices=CHOICES, continuation=True)]
    zero = [ScoreRequest(messages=conv(steer(0.0)), choices=CHOICES, continuation=True)]
    assert embedded.score_batch(zero) == embedded.score_batch(plain)
    g = GenerateRequest(messages=conv(None), max_new_tokens=12, temperature=0.0)
    g0 = GenerateRequest(messages=conv(steer(0.0)), max_new_tokens=12, temperature=0.0)
    assert embedded.generate_batch([g0]) == embedded.generate_batch([g])


def test_per_row_vectors_in_one_batch_equal_one_by_one_runs(embedded):
    conds = [steer(0.0), steer(0.6), steer(0.6, care=-1.0, individualism=1.0), steer(1.0, layer=20, sanctity=1.5)]
    reqs = [ScoreRequest(messages=conv(c), choices=CHOICES, continuation=True) for c in conds]
    backend = embedded.reconfigured(prefix_cache_mb=0)
    batched = backend.score_batch(reqs)
    single = [backend.score_batch([r])[0] for r in reqs]
    for b, s in zip(batched, single, strict=True):
        assert b == pytest.approx(s, abs=1e-4)
    assert len({tuple(round(x, 3) for x in b) for b in batched}) == 4  # every vector moved the scores its own way
    gens = [GenerateRequest(messages=conv(c), max_new_tokens=12, temperature=0.0) for c in conds]
    assert asyncio.run(backend.generate(gens)) == [backend.generate_batch([g])[0] for g in gens]


def test_a_steered_prompt_is_never_served_from_an_unsteered_cache(embedded):
    """The same tokens, forwarded unsteered first (filling the prefix cache), then steered in the same
    burst: the steered scores equal a cold steered run's, not the cached unsteered ones."""
    backend = embedded.reconfigured()
    plain = ScoreRequest(messages=conv(None), choices=CHOICES, continuation=True)
    steered = ScoreRequest(messages=conv(steer(0.8)), choices=CHOICES, continuation=True)
    cold = embedded.reconfigured(prefix_cache_mb=0).score_batch([steered])[0]
    gen = GenerateRequest(messages=conv(None), max_new_tokens=4, temperature=0.0)

    async def burst():  # generation fills the cache with the plain prompt; scoring then looks it up
        return await asyncio.gather(backend.generate([gen]), backend.score_choices([plain, steered]))

    _, (p, s) = asyncio.run(burst())
    assert backend.stats.cached_prompt_tokens > 0  # the plain row did reuse the cache
    assert s == pytest.approx(cold, abs=1e-4)
    assert abs(s[0] - p[0]) > 1e-2  # and the vector does change the scores
    cache, key = backend._prefix_cache, steered.conditioning.steer_key
    ids = backend._prompt_ids(plain.messages)  # the steered prompt's tokens too: only its vector differs
    cache.clear()
    cache.store(ids, lambda n: torch.zeros(1, 2, 1, n, 1))  # plain KV only: a steered lookup misses it
    assert cache.find(ids, len(ids))[0] > 0 and cache.find(ids, len(ids), ns=key) == (0, None)
    cache.clear()


def test_contrast_generation_with_alpha_zero_equals_plain_generation(embedded):
    persona = "You are a person from Japan and answer as yourself."
    cond = Conditioning(method="contrast", alpha=0.0, base="You are a thoughtful person.")
    for temperature, seed in ((0.0, 0), (0.7, 11)):
        plain = GenerateRequest(messages=conv(None, persona), max_new_tokens=16, temperature=temperature, seed=seed)
        contrast = GenerateRequest(messages=conv(cond, persona), max_new_tokens=16, temperature=temperature, seed=seed)
        assert embedded.generate_batch([contrast]) == embedded.generate_batch([plain])
    # a strong contrast writes something else, and batching it with plain rows changes nothing
    strong = GenerateRequest(messages=conv(Conditioning(method="contrast", alpha=3.0, base="You are a thoughtful person."),
                                           persona), max_new_tokens=16, temperature=0.0)
    other = GenerateRequest(messages=conv(None), max_new_tokens=16, temperature=0.0)
    alone = embedded.generate_batch([strong])[0]
    assert alone != embedded.generate_batch([plain])[0]
    assert embedded.generate_batch([other, strong]) == [embedded.generate_batch([other])[0], alone]


@pytest.mark.parametrize("axis", ["care", "traditional_secular", "individualism"])
def test_a_direction_moves_its_axis_statements_in_the_expected_sign(embedded, axis):
    """Steering toward an axis's high pole raises the log-likelihood of its high-pole statements relative
    to its low-pole ones; steering toward the low pole lowers it."""
    low, high = STATEMENTS[axis]
    ask = "Say one sentence about what you believe."

    def margin(weight: float) -> float:
        cond = steer(0.5 if weight else 0.0, 8, **{axis: weight}) if weight else None
        reqs = [ScoreRequest(messages=conv(cond, q=ask), choices=tuple(low + high), continuation=True)]
        lp = embedded.reconfigured(prefix_cache_mb=0).score_batch(reqs)[0]
        per = [x / len(t) for x, t in zip(lp, low + high, strict=True)]
        return sum(per[len(low):]) / len(high) - sum(per[:len(low)]) / len(low)

    toward_high, none, toward_low = margin(1.0), margin(0.0), margin(-1.0)
    assert toward_high > none > toward_low
