"""A scripted backend for unit tests of logic: deterministic, instant, no model."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence

from agents.llm.base import BackendStats, GenerateRequest, ScoreRequest


def _unit(text: str) -> float:
    """A stable number in [0, 1) from text (not Python's salted ``hash``)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


class ScriptedBackend:
    """Answers from functions of the request.

    Args:
        reply: ``request -> text``; the default starts with A or B chosen from the request's text and
            seed, so runs are reproducible and different seeds differ.
        scores: ``request -> log-probs``; the default prefers each choice by a stable hash.
        record: keep every request in ``seen_generate`` / ``seen_score`` (for tests that inspect them).
            Off for runs: a 100,000-agent step sends ~850,000 requests, each holding its prompts.
    """

    def __init__(self, reply: Callable[[GenerateRequest], str] | None = None,
                 scores: Callable[[ScoreRequest], list[float]] | None = None, name: str = "scripted",
                 record: bool = True) -> None:
        self.name = name
        self.stats = BackendStats()
        self._reply = reply or self.default_reply
        self._scores = scores or self.default_scores
        self._record = record
        self.seen_generate: list[GenerateRequest] = []
        self.seen_score: list[ScoreRequest] = []

    @staticmethod
    def default_reply(r: GenerateRequest) -> str:
        u = _unit(r.messages[-1].content + str(r.seed))
        letter = "A" if u < 0.5 else "B"
        return f"{letter}. Because it matters (scripted {u:.3f})."

    @staticmethod
    def default_scores(r: ScoreRequest) -> list[float]:
        raw = [_unit(r.messages[-1].content + c) for c in r.choices]
        z = math.log(sum(math.exp(x) for x in raw))
        return [x - z for x in raw]

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        self.stats.generate_calls += len(requests)
        if self._record:
            self.seen_generate.extend(requests)
        return [self._reply(r) for r in requests]

    async def score_choices(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        self.stats.score_calls += len(requests)
        if self._record:
            self.seen_score.extend(requests)
        return [list(self._scores(r)) for r in requests]
