"""Inputs shared by the benchmarks, so agora's engine and each baseline do exactly the same work.

``AGORA_BENCH_QUICK=1`` shrinks every workload to a smoke-test size (the CI smoke test uses it).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from agents import prompts, scoring
from agents.llm.base import GenerateRequest, ScoreRequest
from agents.llm.embedded import sorted_common_prefixes
from agents.worldview import PopulationSpec, Worldview, sample_population
from scenarios.constitution import load_constitution
from scenarios.dilemma import Dilemma, load_dilemmas

QUICK = os.environ.get("AGORA_BENCH_QUICK") == "1"
CLUSTERS = ("protestant_europe", "english_speaking", "confucian", "islamic")


def size(full: int, quick: int) -> int:
    return quick if QUICK else full


def rounds(full: int) -> int:
    """Timed rounds for one side of a workload: ``AGORA_BENCH_ROUNDS`` when set, else ``full`` (chosen per
    workload by what a round costs: see benches/NOTES.md), 2 at smoke size so the spread is computed."""
    env = os.environ.get("AGORA_BENCH_ROUNDS")
    return max(1, int(env)) if env else size(full, 2)


def population(n: int, seed: int = 0) -> list[Worldview]:
    return sample_population(PopulationSpec(size=n, clusters=CLUSTERS), np.random.default_rng(seed))


def answer(d: Dilemma, which: str) -> str:
    """A stance-length answer (~40 tokens) built from the dilemma's own option and value tags."""
    action, values = (d.action_a, d.values_a) if which == "a" else (d.action_b, d.values_b)
    why = ", ".join(values[:3]) or "what matters most here"
    return f"{which.upper()}. I would {action[0].lower()}{action[1:]} This respects {why}, and I can live with the cost."


def judge_pairs(n_pairs: int, seed: int = 0) -> list[tuple[ScoreRequest, ScoreRequest]]:
    """``n_pairs`` debiased judgments as a society makes them: a judge with a persona, a principle,
    and the pair presented in both orders (two requests per pair)."""
    rng = np.random.default_rng(seed)
    dilemmas = load_dilemmas("default")
    judges = population(32, seed)
    principles = load_constitution("harmlessness").judge
    out = []
    for k in range(n_pairs):
        d = dilemmas[k % len(dilemmas)]
        w = judges[int(rng.integers(len(judges)))]
        principle = principles[int(rng.integers(len(principles)))].text
        a, b = answer(d, "a"), answer(d, "b")
        out.append((ScoreRequest(messages=prompts.judge_messages(d, w, principle, a, b), choices=prompts.CHOICE_LABELS),
                    ScoreRequest(messages=prompts.judge_messages(d, w, principle, b, a), choices=prompts.CHOICE_LABELS)))
    return out


def stance_requests(n_agents: int, max_new_tokens: int, seed: int = 0) -> tuple[list[GenerateRequest], list[ScoreRequest]]:
    """One dilemma's stance phase for a population: a greedy reason per agent and both option orders scored."""
    d = load_dilemmas("default")[0]
    ws = population(n_agents, seed)
    gen = [GenerateRequest(messages=prompts.stance_messages(d, w), max_new_tokens=max_new_tokens, temperature=0.0,
                           seed=i) for i, w in enumerate(ws)]
    score = [ScoreRequest(messages=prompts.stance_messages(d, w, swap=s), choices=prompts.CHOICE_LABELS)
             for w in ws for s in (False, True)]
    return gen, score


def likelihood_dilemmas(n: int) -> list[Dilemma]:
    """``n`` of the default scenario's dilemmas, MoralChoice and DailyDilemmas items alternately."""
    ds = load_dilemmas("default")
    by_source = [[d for d in ds if d.source.startswith(s)] for s in ("MoralChoice", "DailyDilemmas")]
    return [by_source[k % 2][k // 2] for k in range(n)]


def stance_likelihood_requests(n_agents: int, n_dilemmas: int, seed: int = 0) -> list[ScoreRequest]:
    """Every agent's likelihood stance reading of each dilemma (each action's own text after the
    situation), rendered by the society's reader (:func:`agents.scoring.stance_likelihood_request`)."""
    ws = population(n_agents, seed)
    return [scoring.stance_likelihood_request(d, w) for d in likelihood_dilemmas(n_dilemmas) for w in ws]


def judge_likelihood_requests(n: int, n_dilemmas: int, seed: int = 0) -> list[ScoreRequest]:
    """``n`` likelihood judgments as a society makes them (:func:`agents.scoring.judge_likelihood_request`):
    a judge with its persona, a sampled principle, two stance-length answers scored after the dilemma."""
    rng = np.random.default_rng(seed)
    ds = likelihood_dilemmas(n_dilemmas)
    judges = population(32, seed)
    principles = load_constitution("harmlessness").judge
    out = []
    for k in range(n):
        d = ds[k % len(ds)]
        w = judges[int(rng.integers(len(judges)))]
        principle = principles[int(rng.integers(len(principles)))].text
        out.append(scoring.judge_likelihood_request(d, w, principle, answer(d, "a"), answer(d, "b")))
    return out


def chat_context(tokenizer, req: ScoreRequest) -> str:
    """A request's prompt as the text a likelihood reading continues: the chat template applied,
    the assistant turn opened (what lm-evaluation-harness calls the context)."""
    chat = [{"role": m.role, "content": m.content} for m in req.messages]
    return tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) + req.assistant_prefix


@torch.inference_mode()
def naive_judge(model, tokenizer, req: ScoreRequest) -> list[float]:
    """The loop a user writes with ``transformers``: per option, tokenise prompt + option and run one
    batch-1 forward of the full sequence; sum the option tokens' log-probs (a label or a whole reply)."""
    prompt = tokenizer(chat_context(tokenizer, req), add_special_tokens=False)["input_ids"]
    out = []
    for c in req.choices:
        cand = tokenizer(c, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + cand], device=model.device)
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        out.append(sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(cand)))
    return out


@torch.inference_mode()
def last_position_judge(model, tokenizer, req: ScoreRequest) -> list[float]:
    """A stronger hand-written baseline: one batch-1 forward per prompt, only the last position's
    logits (valid because the options are single tokens)."""
    chat = [{"role": m.role, "content": m.content} for m in req.messages]
    text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) + req.assistant_prefix
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]], device=model.device)
    logp = torch.log_softmax(model(input_ids=ids, logits_to_keep=1).logits[0, -1].float(), -1)
    return [float(logp[tokenizer(c, add_special_tokens=False)["input_ids"][0]]) for c in req.choices]



def distinct_prefix_tokens(seqs: list[list[int]]) -> int:
    """Tokens an engine must forward at the least to read every sequence's last position: the size
    of the prefix tree of ``seqs`` (each shared prefix once), i.e. the sum of lengths minus each
    sequence's common prefix with its predecessor in sorted order."""
    return sum(len(s) for s in seqs) - sum(sorted_common_prefixes(seqs)[1])
