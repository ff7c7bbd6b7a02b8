"""A constitution the society writes for itself: proposals, network-weighted approval voting, versions.

Beyond Collective Constitutional AI (where people voted on statements once): here the agents vote
before every generation. Some agents draft a principle; every agent approves or not each candidate
(the principles in force and the drafts; P(yes) from scored tokens, both reply orders, never parsed
text; by default those at or above its own mean P(yes), approval voting's mean-threshold
strategy); an approval counts with the voter's weight in the social network; the ``keep``
candidates with the most weighted approval form the next version. Drafts are untrusted text: they are cleaned,
fenced in every prompt that shows them, and recorded verbatim.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from agents import prompts
from agents.llm.base import GenerateRequest, LLMBackend
from agents.scoring import p_yes
from agents.worldview import Worldview
from scenarios.constitution import Constitution, JudgePrinciple
from sim.config import CollectiveConfig
from sim.run.seeding import child_rng, child_seed

_WS = re.compile(r"\s+")


def clean_proposal(text: str, limit: int = 200) -> str | None:
    """The first sentence of a draft, whitespace collapsed, quotes and list marks stripped; None if empty."""
    t = _WS.sub(" ", prompts.fence(text, 2000)[3:-3]).strip().strip("\"'*-•0123456789. ")
    if not t:
        return None
    m = re.search(r"[.!?](\s|$)", t)
    t = t[: m.end()].strip() if m else t
    return t[:limit].rstrip() or None


def voter_weights(graph: nx.Graph, kind: str) -> np.ndarray:
    """One weight per node (mean 1): degree / mean degree, PageRank × N, or 1."""
    n = graph.number_of_nodes()
    if kind == "uniform" or n == 0:
        return np.ones(n)
    if kind == "pagerank":
        pr = nx.pagerank(graph)
        return np.array([pr[i] * n for i in range(n)])
    deg = np.array([graph.degree(i) for i in range(n)], float)
    return deg / deg.mean() if deg.mean() > 0 else np.ones(n)


@dataclass(frozen=True)
class Ballot:
    """The outcome of one vote: the new constitution and every candidate's tally."""

    constitution: Constitution
    candidates: list[dict[str, Any]]
    approvals: np.ndarray  # voters × candidates, 1 = approve


def tally(candidates: Sequence[dict[str, Any]], approve: np.ndarray, weights: np.ndarray, keep: int) -> list[int]:
    """Indices of the ``keep`` candidates with most weighted approval; ties go to the earlier candidate
    (principles in force come first, so a tie keeps the status quo)."""
    score = weights @ approve
    order = sorted(range(len(candidates)), key=lambda k: (-round(float(score[k]), 9), k))
    return order[:keep]


async def vote(citizens: Sequence[Worldview], graph: nx.Graph, current: Constitution, backend: LLMBackend,
               cfg: CollectiveConfig, *, seed: int, generation: int, temperature: float = 0.7,
               top_p: float = 0.95) -> Ballot:
    rng = child_rng(seed, "collective", generation)
    n = len(citizens)
    proposers = sorted(int(i) for i in rng.choice(n, size=min(cfg.proposers, n), replace=False))
    texts = [p.text for p in current.judge]
    drafts = await asyncio.gather(*(backend.generate([GenerateRequest(
        messages=prompts.proposal_messages(citizens[i], texts), max_new_tokens=48, temperature=temperature, top_p=top_p,
        seed=child_seed(seed, "collective", generation, "draft", i))]) for i in proposers))
    candidates: list[dict[str, Any]] = [{"id": p.id, "text": p.text, "proposer": None, "raw": None} for p in current.judge]
    seen = {c["text"].lower() for c in candidates}
    for i, (raw,) in zip(proposers, drafts, strict=True):
        text = clean_proposal(raw)
        if text and text.lower() not in seen:
            seen.add(text.lower())
            candidates.append({"id": f"g{generation}_a{i}", "text": text, "proposer": i, "raw": raw})
    p = await asyncio.gather(*(p_yes(backend, lambda no_first, w=w, t=c["text"]: prompts.approval_messages(
        w, t, no_first=no_first)) for w in citizens for c in candidates))
    p_approve = np.asarray(p, float).reshape(n, len(candidates))
    threshold = p_approve.mean(axis=1, keepdims=True) if cfg.rule == "relative" else cfg.approve_above
    approve = (p_approve >= threshold).astype(float)
    weights = voter_weights(graph, cfg.weight)
    winners = tally(candidates, approve, weights, min(cfg.keep, len(candidates)))
    score = weights @ approve
    for k, c in enumerate(candidates):
        c |= {"approval": float(score[k] / weights.sum()), "approvers": int(approve[:, k].sum()),
              "mean_p_yes": float(p_approve[:, k].mean()), "elected": k in winners}
    new = elected_constitution(current, generation, candidates, [candidates[k]["id"] for k in winners])
    return Ballot(constitution=new, candidates=candidates, approvals=approve)


def elected_constitution(current: Constitution, generation: int, candidates: Sequence[dict[str, Any]],
                         elected: Sequence[str]) -> Constitution:
    """``current`` with its judging principles replaced by the ``elected`` candidates (ids, in rank order)."""
    by_id = {c["id"]: c for c in candidates}
    return Constitution(name=current.name.split("+")[0] + "+collective", version=f"g{generation}",
                        critique=current.critique, description=current.description, direction=current.direction,
                        judge=tuple(JudgePrinciple(id=i, text=by_id[i]["text"]) for i in elected))
