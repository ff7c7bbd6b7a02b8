"""Likelihood readings against the tools a researcher would otherwise use.

A default society reads every stance and every judgment by likelihood: each option's own text is
scored as the continuation of the reading's prompt (``agents/scoring.py``; lm-evaluation-harness's
``acc_norm``). Each test here takes the society's own requests (the default personas, MoralChoice and
DailyDilemmas items, rendered by the readers' request builders) and scores them three ways in one
process, on the same loaded model, with the same torch threads:

- agora's embedded backend, every request submitted on its own as a society submits them;
- lm-evaluation-harness's ``HFLM.loglikelihood`` (the reference implementation of ``acc_norm``) on the
  same (context, continuation) pairs: context = the chat template applied with the assistant turn
  opened, continuation = the option's text; its own batching, batch size ``HFLM_BATCH``;
- the naive loop: one batch-1 forward of prompt + option per option.

Answers are checked equal: every log-likelihood within 1e-4 of the naive loop's; against lm-eval, the gap
between a request's two options within 1e-4 and each log-likelihood within 1e-2 (lm-eval moves the context's
trailing newline into the continuation, so its sums also hold that newline's log-prob, the same for both
options of a request: ~1e-5 to 1e-3 here); and the same option chosen per character by all three.
"""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

from agents.scoring import per_char
from benches.conftest import bench, measure, record
from benches.workloads import (
    QUICK,
    chat_context,
    judge_likelihood_requests,
    naive_judge,
    rounds,
    size,
    stance_likelihood_requests,
)

# HFLM's batch size: a stated value, since its "auto" probes a full 8,192-token batch, minutes on this CPU.
# 8 was its fastest of 1/4/8/16/32 on the stance workload here (benches/NOTES.md).
HFLM_BATCH = int(os.environ.get("AGORA_BENCH_HFLM_BATCH", "8"))
TOL = 1e-4  # |log-likelihood| against the naive loop; a request's option a minus option b against lm-eval
TOL_HFLM = 1e-2  # |log-likelihood| against lm-eval, whose sums include the newline that opens the reply


@pytest.fixture(scope="module")
def hflm(backend):
    try:
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        pytest.fail("lm-eval is not installed: `make bench` installs it (pip install -c constraints.txt -e '.[bench]')")
    return HFLM(pretrained=backend.model, tokenizer=backend.tokenizer, batch_size=HFLM_BATCH)


def hflm_scores(lm, contexts: list[str], reqs) -> list[list[float]]:
    """``HFLM.loglikelihood`` of every (context, option) pair, grouped back per request."""
    from lm_eval.api.instance import Instance

    insts = [Instance(request_type="loglikelihood", doc={}, arguments=(ctx, c), idx=k)
             for ctx, r in zip(contexts, reqs, strict=True) for k, c in enumerate(r.choices)]
    flat = [lp for lp, _greedy in lm.loglikelihood(insts, disable_tqdm=True)]
    out, at = [], 0
    for r in reqs:
        out.append(flat[at:at + len(r.choices)])
        at += len(r.choices)
    return out


def _check(got: list[list[float]], want: list[list[float]], reqs) -> tuple[float, float]:
    """Max |Δ log-likelihood| and max |Δ (option a − option b)|; asserts the same per-character choice."""
    g, w = np.array(got), np.array(want)
    for a, b, r in zip(got, want, reqs, strict=True):
        pa, pb = per_char(a, r.choices), per_char(b, r.choices)
        if abs((pa[0] - pa[1]) - (pb[0] - pb[1])) > 1e-6:  # an exact tie either way would be a coin flip
            assert (pa[0] > pa[1]) == (pb[0] > pb[1])
    return float(np.abs(g - w).max()), float(np.abs((g[:, 0] - g[:, 1]) - (w[:, 0] - w[:, 1])).max())


def _likelihood(benchmark, backend, hflm, *, name: str, unit: str, reqs, target: float) -> None:
    model, tok = backend.model, backend.tokenizer
    contexts = [chat_context(tok, r) for r in reqs]
    naive_judge(model, tok, reqs[0]), hflm_scores(hflm, contexts[:1], reqs[:1]), backend.score_batch(reqs[:1])  # warm-up
    (ref, *_), hflm_t = measure(lambda: hflm_scores(hflm, contexts, reqs), rounds(2))
    (naive, *_), naive_t = measure(lambda: [naive_judge(model, tok, r) for r in reqs], rounds(1))
    before = backend.stats.prompt_tokens

    async def engine():
        return await backend.score_choices(reqs)  # every request submitted on its own, as a society does

    outs, agora_t = bench(benchmark, lambda: asyncio.run(engine()), rounds(3))
    d_hflm = [_check(got, ref, reqs) for got in outs]
    d_naive = [_check(got, naive, reqs) for got in outs]
    diff, diff_ab = max(d[0] for d in d_hflm), max(d[1] for d in d_hflm)
    diff_naive = max(d[0] for d in d_naive)
    assert diff_naive < TOL and diff_ab < TOL and diff < TOL_HFLM
    prompt_tokens = [len(tok(c, add_special_tokens=False)["input_ids"]) for c in contexts]
    option_tokens = [len(tok(c, add_special_tokens=False)["input_ids"]) for r in reqs for c in r.choices]
    naive_ratio = naive_t.mean / agora_t.mean
    rel = [t.sd / t.mean for t in (agora_t, naive_t) if t.sd is not None]
    ratio = record(benchmark, name=name, unit=unit, items=len(reqs), agora=agora_t, baseline=hflm_t,
                   baseline_is=f"lm-evaluation-harness HFLM.loglikelihood (batch {HFLM_BATCH}), same model and threads",
                   target=target, hflm_batch=HFLM_BATCH, naive_s=round(naive_t.mean, 3), naive_rounds=len(naive_t.seconds),
                   naive_rate=round(len(reqs) / naive_t.mean, 3), ratio_vs_naive=round(naive_ratio, 2),
                   ratio_vs_naive_sd=round(naive_ratio * float(np.sqrt(sum(x * x for x in rel))), 2) if rel else None,
                   max_abs_logprob_diff=diff, max_abs_option_gap_diff=diff_ab, max_abs_logprob_diff_naive=diff_naive,
                   tokens_forwarded=(backend.stats.prompt_tokens - before) // len(outs),
                   baseline_tokens=sum(2 * p for p in prompt_tokens) + sum(option_tokens),
                   distinct_tokens=sum(prompt_tokens) + sum(option_tokens))
    assert QUICK or ratio > 1.0  # smoke size is too small to promise a speed-up


def test_likelihood_stances(benchmark, backend, hflm):
    """Every agent of a population reads each dilemma: 2 MoralChoice + 2 DailyDilemmas items."""
    reqs = stance_likelihood_requests(size(16, 2), size(4, 2))
    _likelihood(benchmark, backend, hflm, name="likelihood stances", unit="readings/s", reqs=reqs, target=3.0)


def test_likelihood_judgments(benchmark, backend, hflm):
    """Judgments as a society makes them: a judge's persona, a principle, two stance-length answers."""
    reqs = judge_likelihood_requests(size(32, 4), size(4, 2))
    _likelihood(benchmark, backend, hflm, name="likelihood judge", unit="preferences/s", reqs=reqs, target=3.0)
