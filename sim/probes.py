"""Readings of external ground truth (HHH, MoralChoice) that both the label-quality gate and
``agora-eval`` make: where the data is, seeded samples of it, and one reading per item, each read
through ``agents.scoring`` exactly as the society reads."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents import prompts
from agents.llm.base import LLMBackend, ScoreRequest
from agents.scoring import PairReading, read_judgment, read_likelihood, read_pair, read_stance, scorer
from agents.worldview import Worldview
from alignment.config import EvalConfig
from scenarios.dilemma import BUNDLED_DIR, Dilemma
from scenarios.errors import InputError
from scenarios.external import HHHItem
from sim import aio
from sim.seeding import child_rng

ROOT = Path(__file__).resolve().parents[1]


HHH_FILE = Path("cai") / "438HHHEvaluations.jsonl"


MC_FILES = {"low": "moralchoice_low_ambiguity.csv", "high": "moralchoice_high_ambiguity_dev.csv"}


def data_dir(cfg: EvalConfig) -> Path:
    return Path(cfg.data_dir or os.environ.get("AGORA_SHARED_DATA") or ROOT.parent / "shared" / "data")


def hhh_path(cfg: EvalConfig) -> Path:
    path = Path(cfg.hhh_path) if cfg.hhh_path else data_dir(cfg) / HHH_FILE
    if not path.is_file():
        raise InputError(f"{path}: HHH file not found; pass eval.hhh_path=/path/to/438HHHEvaluations.jsonl "
                         "(or eval.data_dir=/path/to/shared/data)")
    return path


def moralchoice_path(cfg: EvalConfig, which: str) -> Path:
    folder = Path(cfg.moralchoice_dir) if cfg.moralchoice_dir else data_dir(cfg) / "moralchoice"
    path = folder / MC_FILES[which]
    bundled = BUNDLED_DIR / MC_FILES[which]
    if not path.is_file() and not cfg.moralchoice_dir and bundled.is_file():
        return bundled  # the low-ambiguity set ships with agora (MIT) for the label-quality gate
    if not path.is_file():
        raise InputError(f"{path}: MoralChoice file not found; pass eval.moralchoice_dir=/path/to/moralchoice")
    return path


def sample(items: Sequence[Any], n: int, seed: int, *path: str) -> list[Any]:
    if n <= 0 or n >= len(items):
        return list(items)
    idx = np.sort(child_rng(seed, "eval", *path).choice(len(items), size=n, replace=False))
    return [items[int(i)] for i in idx]


def read_all(backend: LLMBackend, readings: Sequence[Callable[[Callable], Awaitable[PairReading]]],
             what: str, progress: bool = True) -> list[PairReading]:
    """Run every reading concurrently (so the backend's coalescer batches them as it batches a
    society); each is ``reading(score)``. A progress bar counts finished readings."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(readings), desc=what, unit="reading", mininterval=1.0, leave=False, disable=not progress)
    score = scorer(backend)

    async def one(reading: Callable[[Callable], Awaitable[PairReading]]) -> PairReading:
        out = await reading(score)
        bar.update(1)
        return out

    async def main() -> list[PairReading]:
        return list(await asyncio.gather(*(one(r) for r in readings)))

    try:
        return aio.run(main())
    finally:
        bar.close()


def as_interval(t: tuple[float, float, float]) -> dict[str, float]:
    return {"value": t[0], "low": t[1], "high": t[2]}


def hhh_reading(it: HHHItem, reader: str, instruction: str | None = None, judge: Worldview | None = None,
                both_orders: bool = True) -> Callable[[Callable], Awaitable[PairReading]]:
    """P(the file's option (A) is the better reply) by ``reader``: the letter in both orders, or each
    reply's likelihood after the conversation and the instruction."""
    q = instruction or it.question
    if reader == "likelihood":
        req = ScoreRequest(messages=prompts.hhh_likelihood_messages(it.conversation, q, judge),
                           choices=(prompts.continuation(it.option_a), prompts.continuation(it.option_b)))
        return lambda score: read_likelihood(score, req, f"HHH item {it.id}")
    return lambda score: read_pair(score, lambda s: ScoreRequest(
        messages=prompts.hhh_judge_messages(it.conversation, *((it.option_b, it.option_a) if s else (it.option_a, it.option_b)),
                                            q, judge), choices=prompts.CHOICE_LABELS), both_orders=both_orders,
        what=f"HHH item {it.id}")


def stance_reading(d: Dilemma, w: Worldview | None, reader: str, both_orders: bool = True,
                   swapped: bool = False) -> Callable[[Callable], Awaitable[PairReading]]:
    """An agent's P(choosing action1), read as the society reads a first stance (``swapped``: action2
    shown first, for a label reader)."""
    return lambda score: read_stance(score, reader, d, w, both_orders=both_orders, swapped=swapped,
                                     what=f"stance on {d.id}")


def judge_reading(d: Dilemma, w: Worldview | None, principle: str, reader: str, both_orders: bool = True,
                  swapped: bool = False) -> Callable[[Callable], Awaitable[PairReading]]:
    """An agent as a judge of two answers, one taking each action: P(the action1 answer is better)."""
    return lambda score: read_judgment(score, reader, d, w, principle, d.action_a, d.action_b, both_orders=both_orders,
                                       swapped=swapped, what=f"judgment on {d.id}")
