"""Scored questions the research experiments ask the model: yes/no ratings and k-way classification.

Every read is a ``score_choices`` over label tokens, never parsed text, and each is asked in every
label order (both orders for yes/no, every rotation for k options) and averaged, so a model's bias
toward the first-named label cannot pass for a judgment.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence

import numpy as np

from agents.llm.base import ChatMessage, LLMBackend, ScoreRequest
from agents.prompts import YES_NO
from agents.scoring import distribution, read_rotations, scorer


async def p_yes(backend: LLMBackend, messages: Callable[[bool], tuple[ChatMessage, ...]]) -> float:
    """P(yes) normalised over {Yes, No}, averaged over both orders the replies are named in
    (``messages(no_first)`` renders the prompt)."""
    score = scorer(backend)
    a, b = await asyncio.gather(score(ScoreRequest(messages=messages(False), choices=YES_NO)),
                                score(ScoreRequest(messages=messages(True), choices=YES_NO)))
    return float((distribution(a, "yes/no rating")[0] + distribution(b, "yes/no rating")[0]) / 2)


async def classify(backend: LLMBackend, labels: Sequence[str],
                   messages: Callable[[Sequence[str]], tuple[ChatMessage, ...]]) -> np.ndarray:
    """A distribution over ``labels``: the model picks one of the numbered options ``"1".."K"``, read
    in every rotation of the list (:func:`agents.scoring.read_rotations`)."""
    choices = tuple(str(i) for i in range(1, len(labels) + 1))
    return await read_rotations(scorer(backend), labels, lambda order: ScoreRequest(messages=messages(order), choices=choices),
                                "perspective classification")


def finite(x: float | None, digits: int = 6) -> float | None:
    """JSON-ready: NaN/None -> None, else rounded."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), digits)


def interval(mean_low_high: tuple[float, float, float]) -> dict[str, float | None]:
    m, lo, hi = mean_low_high
    return {"value": finite(m), "low": finite(lo), "high": finite(hi)}
