"""AI-feedback throughput of the embedded engine against what a user would otherwise write.

Each test times agora's path with pytest-benchmark's rounds and its baseline with the same clock and
round (``benches/conftest.py``: ``bench`` and ``measure``) in the same process on the same model and
inputs, checks both give the same answers, and records each side's mean, spread and rounds for
``benches/report.py``. Rounds per side are set by what a round costs (benches/NOTES.md):
agora's side 3, a baseline of minutes per round 1; ``AGORA_BENCH_ROUNDS=N`` sets every side to N.
"""

from __future__ import annotations

import asyncio

import numpy as np

from agents.scoring import p_first
from benches.conftest import bench, measure, record
from benches.workloads import (
    QUICK,
    distinct_prefix_tokens,
    judge_pairs,
    last_position_judge,
    naive_judge,
    rounds,
    size,
    stance_requests,
)


def _labels(scores: list[list[float]]) -> np.ndarray:
    """Order-debiased P(first answer better) per pair, from (seen, reversed) score pairs."""
    return np.array([(p_first(s1) + 1 - p_first(s2)) / 2 for s1, s2 in zip(scores[::2], scores[1::2], strict=True)])


def test_judge_preferences_per_second(benchmark, backend):
    pairs = judge_pairs(size(64, 4))
    reqs = [r for pair in pairs for r in pair]
    model, tok = backend.model, backend.tokenizer
    naive_judge(model, tok, reqs[0]), backend.score_batch(reqs[:2])  # warm-up: lazy initialisation
    (naive, *_), naive_t = measure(lambda: [naive_judge(model, tok, r) for r in reqs], rounds(1))  # ~4 min a round
    _, last_t = measure(lambda: [last_position_judge(model, tok, r) for r in reqs], rounds(1))
    before = backend.stats.prompt_tokens

    async def engine():
        return await backend.score_choices(reqs)  # every request submitted on its own, as a society does

    outs, agora_t = bench(benchmark, lambda: asyncio.run(engine()), rounds(3))
    diff = max(float(np.abs(np.array(got) - np.array(naive)).max()) for got in outs)
    assert diff < 1e-4
    assert all((_labels(got) > 0.5).tolist() == (_labels(naive) > 0.5).tolist() for got in outs)
    naive_s, last_s, agora_s = naive_t.mean, last_t.mean, agora_t.mean
    # The fp32 ceiling on this machine: every shared prefix forwarded once, at the batch-1 prefill
    # rate of the last-position baseline (batching does not speed prefill up on a CPU).
    prompts = [backend._prompt_ids(r.messages, r.assistant_prefix) for r in reqs]
    floor_tokens = distinct_prefix_tokens(prompts)
    ceiling = naive_s / (floor_tokens * last_s / sum(len(p) for p in prompts))
    ratio = record(benchmark, name="judge", unit="preferences/s", items=len(pairs), agora=agora_t, baseline=naive_t,
                   baseline_is="per option, one batch-1 full-sequence forward (transformers, full logits)", target=8.0,
                   max_abs_logprob_diff=diff, last_position_baseline_s=round(last_s, 3),
                   ratio_vs_last_position=round(last_s / agora_s, 2),
                   tokens_forwarded=(backend.stats.prompt_tokens - before) // len(outs),
                   naive_tokens=sum(2 * (len(p) + 1) for p in prompts), least_tokens=floor_tokens,
                   fp32_ceiling_ratio=round(ceiling, 2))
    assert QUICK or ratio > 1.0  # smoke size is too small to promise a speed-up


def test_stances_per_second(benchmark, backend):
    n = size(32, 4)
    gen, score = stance_requests(n, max_new_tokens=size(48, 8))
    one = backend.reconfigured(max_batch_size=1, prefix_sharing=False)
    one.generate_batch(gen[:1]), one.score_batch(score[:1])  # warm-up

    def one_by_one():
        texts = [one.generate_batch([g])[0] for g in gen]
        return texts, [one.score_batch([s])[0] for s in score]

    ((texts1, scores1), *_), base_t = measure(one_by_one, rounds(1))  # ~3 min a round

    async def engine():
        return await asyncio.gather(backend.generate(gen), backend.score_choices(score))

    outs, agora_t = bench(benchmark, lambda: asyncio.run(engine()), rounds(3))
    diff = max(float(np.abs(np.array(scores) - np.array(scores1)).max()) for _, scores in outs)
    assert diff < 1e-4
    texts = outs[-1][0]
    same = sum(a == b for a, b in zip(texts, texts1, strict=True))
    ratio = record(benchmark, name="stances", unit="stances/s", items=n, agora=agora_t, baseline=base_t,
                   baseline_is="same engine, one request at a time (batch 1, no prefix sharing)", target=4.0,
                   population=n, identical_greedy_texts=f"{same}/{n}", max_abs_logprob_diff=diff)
    assert same >= (n if QUICK else int(0.9 * n))  # greedy text equal, bar rare float near-ties over 48 tokens
    assert QUICK or ratio > 1.0  # smoke size is too small to promise a speed-up


def test_debate_messages_per_second(benchmark, backend):
    from scenarios.constitution import load_constitution
    from scenarios.dilemma import load_dilemmas
    from sim.config import AgoraConfig, LLMConfig, PopulationConfig, SimConfig, TokenBudget
    from sim.society.model import Society

    n = size(24, 6)
    cfg = AgoraConfig(name="bench", llm=LLMConfig(backend="embedded"), population=PopulationConfig(size=n),
                      sim=SimConfig(steps=1, group_size=3, progress=False,
                                    tokens=TokenBudget(stance=8, debate=size(32, 8), critique=8, revision=8)))
    d = load_dilemmas("default")[0]

    def debate(b):
        soc = Society(cfg, [d], load_constitution("harmlessness"), b, run_id="bench")
        answers = {a.index: f"{'AB'[a.index % 2]}. {d.action_a if a.index % 2 == 0 else d.action_b}" for a in soc.agents}
        soc.context = soc.make_context()
        said = asyncio.run(soc._debate(d, 0, answers))
        return [r.text for r in soc.transcripts], said

    one = backend.reconfigured(max_batch_size=1, prefix_sharing=False)
    ((texts1, _), *_), base_t = measure(lambda: debate(one), rounds(1))  # ~1.5 min a round
    outs, agora_t = bench(benchmark, lambda: debate(backend), rounds(3))
    texts = outs[-1][0]
    same = sum(a == b for a, b in zip(texts, texts1, strict=True))
    ratio = record(benchmark, name="debate", unit="messages/s", items=len(texts), agora=agora_t, baseline=base_t,
                   baseline_is="same autogen debaters, backend batch size 1 (no coalescing)", population=n,
                   teams=-(-n // 3), identical_sampled_texts=f"{same}/{len(texts)}")
    assert len(texts) == len(texts1) == n
    assert QUICK or ratio > 1.0  # smoke size is too small to promise a speed-up
