"""Readings of external ground truth (HHH, MoralChoice) that both the label-quality gate and
``agora-eval`` make: where the data is, seeded samples of it, and one reading per item, each read
through ``agents.scoring`` exactly as the society reads."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Coroutine, Sequence
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
from sim.run import aio
from sim.run.seeding import child_rng

ROOT = Path(__file__).resolve().parents[1]


HHH_FILE = Path("cai") / "438HHHEvaluations.jsonl"


MC_FILES = {"low": "moralchoice_low_ambiguity.csv", "high": "moralchoice_high_ambiguity_dev.csv"}


def data_dir(cfg: EvalConfig) -> Path:
    """``eval.data_dir``, else ``$AGORA_SHARED_DATA``, else ``../shared/data`` beside the checkout; a folder the
    user named (setting or variable) that does not exist is an error, never passed over."""
    named = [(cfg.data_dir, "eval.data_dir"), (os.environ.get("AGORA_SHARED_DATA", ""), "AGORA_SHARED_DATA")]
    for value, where in named:
        if value:
            if not Path(value).is_dir():
                raise InputError(f"{where}={value}: no such folder")
            return Path(value)
    return ROOT.parent / "shared" / "data"


def hhh_path(cfg: EvalConfig) -> Path:
    path = Path(cfg.hhh_path) if cfg.hhh_path else data_dir(cfg) / HHH_FILE
    if not path.is_file():
        raise InputError(f"{path}: HHH file not found; the hhh suite needs the Constitutional AI paper's "
                         f"438HHHEvaluations.jsonl, which agora does not ship (its repository, "
                         f"anthropics/ConstitutionalHarmlessnessPaper, has no licence): pass eval.hhh_path=/path/to/it")
    return path


def moralchoice_path(cfg: EvalConfig, which: str) -> Path:
    """A MoralChoice file: from ``eval.moralchoice_dir`` when given (it must hold it), else the data folder's
    ``moralchoice/`` when it holds it, else the copy bundled with agora (the authors' files, MIT)."""
    folder = Path(cfg.moralchoice_dir) if cfg.moralchoice_dir else data_dir(cfg) / "moralchoice"
    path = folder / MC_FILES[which]
    bundled = BUNDLED_DIR / MC_FILES[which]
    if not path.is_file() and not cfg.moralchoice_dir and bundled.is_file():
        return bundled
    if not path.is_file():
        raise InputError(f"{path}: MoralChoice file not found; pass eval.moralchoice_dir=/path/to/moralchoice "
                         f"(or leave it empty for the copy bundled with agora)")
    return path


def eval_paths(cfg: EvalConfig, suites: Sequence[str]) -> None:
    """The files and folders the ``suites`` read, checked (one :class:`InputError` line) without loading them."""
    if cfg.reward_model and "hhh" not in suites:
        raise InputError(f"eval.reward_model={cfg.reward_model} is scored on the HHH comparisons, but the suites are "
                         f"{list(suites)}: add hhh (eval.suites=[hhh] eval.hhh_path=...)")
    if "hhh" in suites:
        hhh_path(cfg)
    if "moralchoice" in suites:
        moralchoice_path(cfg, "low")
    if {"moralchoice", "steerability"} & set(suites):
        moralchoice_path(cfg, "high")
    reward_model_path(cfg)


REWARD_MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                        "pytorch_model.bin.index.json")


def reward_model_path(cfg: EvalConfig) -> Path | None:
    """``eval.reward_model`` checked before any model loads: a folder holding what a trained reward model's
    ``save_pretrained`` writes (``config.json`` naming a sequence-classification model with one output, its
    weights, its tokenizer); None when not set. A base model's folder would load with a freshly initialised
    head and score at random, so it is refused too."""
    if not cfg.reward_model:
        return None
    path, where = Path(cfg.reward_model), f"eval.reward_model={cfg.reward_model}"
    if not path.is_dir():
        raise InputError(f"{where}: {'not a folder' if path.exists() else 'no such folder'} (give a trained reward "
                         "model's folder, e.g. outputs/evolve/<timestamp>/generation_0/reward_model)")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{where}: no config.json: not a saved reward model") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{where}: config.json is not readable JSON ({exc})") from None
    archs = config.get("architectures") if isinstance(config, dict) else None
    if not (isinstance(archs, list) and any(str(a).endswith("ForSequenceClassification") for a in archs)):
        raise InputError(f"{where}: config.json names no sequence-classification model (architectures: {archs}): "
                         "a base model, not a trained reward model")
    if len(config.get("id2label") or {"0": ""}) != 1:
        raise InputError(f"{where}: a classifier with {len(config['id2label'])} outputs, not a reward model (one)")
    if not any((path / f).is_file() for f in REWARD_MODEL_WEIGHTS):
        raise InputError(f"{where}: no weights ({', '.join(REWARD_MODEL_WEIGHTS)})")
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise InputError(f"{where}: no tokenizer (tokenizer.json or tokenizer_config.json)")
    return path


def sample(items: Sequence[Any], n: int, seed: int, *path: str, setting: str = "") -> list[Any]:
    """``n`` of ``items`` (a seeded draw in file order; all of them for n <= 0). More than there are is an
    :class:`InputError` naming ``setting`` when given (a draw of all would silently be fewer than asked)."""
    if setting and n > len(items):
        raise InputError(f"{setting}={n} is more than the {len(items)} items there are")
    if n <= 0 or n >= len(items):
        return list(items)
    idx = np.sort(child_rng(seed, "eval", *path).choice(len(items), size=n, replace=False))
    return [items[int(i)] for i in idx]


def read_all(backend: LLMBackend, readings: Sequence[Callable[[Callable], Awaitable[PairReading]]],
             what: str, progress: bool = True, run_async: Callable[[Coroutine[Any, Any, Any]], Any] = aio.run
             ) -> list[PairReading]:
    """Run every reading concurrently (so the backend's coalescer batches them as it batches a
    society); each is ``reading(score)``. A progress bar counts finished readings. ``run_async`` runs the
    readings to their end: a run's one event loop (``Run.run_async``), or by default a loop of their own."""
    from sim.run.progress import bar as progress_bar

    bar = progress_bar(total=len(readings), desc=what, unit="reading", mininterval=1.0, leave=False, disable=not progress)
    score = scorer(backend)

    async def one(reading: Callable[[Callable], Awaitable[PairReading]]) -> PairReading:
        out = await reading(score)
        bar.update(1)
        return out

    async def main() -> list[PairReading]:
        return list(await asyncio.gather(*(one(r) for r in readings)))

    try:
        return run_async(main())
    finally:
        bar.close()


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
