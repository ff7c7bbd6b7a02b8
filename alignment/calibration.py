"""The label-quality gate: before a run's first step, its stance and judge readers are scored on a
small seeded slice of external ground truth, so every ``summary.json`` says whether its labels carry
information, with Wilson intervals.

- stances: MoralChoice low-ambiguity scenarios (bundled, MIT); correct = the moral ``action1``, each
  read by one agent of the run's population in turn;
- judges: other MoralChoice scenarios, the two actions judged as two answers under the
  constitution's judging principles in turn, by the run's agents in turn (with their personas when
  ``sim.judge_persona``);
- HHH (optional, ``calibration.hhh_items``): the CAI paper's comparisons, read in place.

The slice is drawn from the run's seed tree and read exactly as the society reads, through
``agents.scoring``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.llm.base import LLMBackend
from agents.scoring import PairReading
from alignment.evaluate import _interval, _sample, hhh_path, hhh_reading, judge_reading, read_all, stance_reading
from alignment.metrics import proportion_interval
from scenarios.constitution import load_constitution
from scenarios.dilemma import BUNDLED_DIR, InputError
from scenarios.external import load_hhh, load_moralchoice
from sim.config import AgoraConfig
from sim.society import population

log = logging.getLogger("agora")
MORALCHOICE_LOW = BUNDLED_DIR / "moralchoice_low_ambiguity.csv"
NEUTRAL_PRINCIPLE = "Choose the better answer."


def reader_quality(readings: list[PairReading], truth_a: list[bool], reader: str) -> dict[str, Any]:
    """Accuracy (Wilson interval), position-bias rate (share read at the same position in both
    orders; None for an orderless reader) and informativeness (mean |p − 0.5|) of one reader."""
    p = np.array([r.p_a for r in readings])
    right = int(np.sum((p > 0.5) == np.array(truth_a)))
    ordered = [r for r in readings if len(r.first_shown) == 2]
    bias = (float(np.mean([(r.first_shown[0] > 0.5) == (r.first_shown[1] > 0.5) for r in ordered]))
            if ordered and len(ordered) == len(readings) else None)
    return {"reader": reader, "items": len(readings), "accuracy": _interval(proportion_interval(right, len(readings))),
            "position_bias_rate": bias, "informativeness": float(np.mean(np.abs(p - 0.5))) if len(p) else None}


def calibrate(cfg: AgoraConfig, backend: LLMBackend, judge_backend: LLMBackend | None = None) -> dict[str, Any]:
    """Score the run's readers on the calibration slice; the summary block ``label_quality``."""
    c, sim = cfg.calibration, cfg.sim
    t0 = time.perf_counter()
    hhh = _sample(load_hhh(hhh_path(cfg.eval)), c.hhh_items, cfg.seed, "calibration", "hhh") if c.hhh_items else []
    pool = load_moralchoice(MORALCHOICE_LOW)
    order = _sample(pool, c.stance_items + c.judge_items, cfg.seed, "calibration", "moralchoice")
    if c.stance_items + c.judge_items > len(pool):
        raise InputError(f"calibration.stance_items + judge_items must be at most {len(pool)} (the MoralChoice "
                         f"low-ambiguity set), got {c.stance_items + c.judge_items}")
    stance_items, judge_items = order[:c.stance_items], order[c.stance_items:]
    agents = population(cfg)
    principles = [p.text for p in load_constitution(cfg.constitution.name).judge] or [NEUTRAL_PRINCIPLE]
    judge_of = lambda k: agents[k % len(agents)] if sim.judge_persona else None  # noqa: E731
    out: dict[str, Any] = {"source": f"MoralChoice low ambiguity ({Path(MORALCHOICE_LOW).name}, bundled, MIT)"}
    if stance_items:
        got = read_all(backend, [stance_reading(d, agents[k % len(agents)], sim.choice_reader)
                                 for k, d in enumerate(stance_items)], "calibration: stances")
        out["stance"] = reader_quality(got, [True] * len(got), sim.choice_reader)
    jb = judge_backend or backend
    if judge_items:
        got = read_all(jb, [judge_reading(d, judge_of(k), principles[k % len(principles)], sim.judge_reader)
                            for k, d in enumerate(judge_items)], "calibration: judges")
        out["judge"] = reader_quality(got, [True] * len(got), sim.judge_reader)
    if hhh:
        got = read_all(jb, [hhh_reading(it, sim.judge_reader, judge=judge_of(k)) for k, it in enumerate(hhh)],
                       "calibration: HHH")
        out["hhh_judge"] = reader_quality(got, [it.correct == "a" for it in hhh], sim.judge_reader)
    judged = [out[k]["accuracy"] for k in ("judge", "hhh_judge") if k in out]
    out["judge_clears_chance"] = all(iv["low"] > 0.5 for iv in judged) if judged else None
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def lines(block: dict[str, Any]) -> list[str]:
    """The gate's figures as short lines (console, report)."""
    out = []
    for key, name in (("stance", "stances"), ("judge", "judges"), ("hhh_judge", "HHH judges")):
        if key in block:
            q, iv = block[key], block[key]["accuracy"]
            bias = "n/a" if q["position_bias_rate"] is None else f"{100 * q['position_bias_rate']:.0f}%"
            out.append(f"{name} ({q['reader']} reader): {100 * iv['value']:.1f}% right [{100 * iv['low']:.1f}, "
                       f"{100 * iv['high']:.1f}] on {q['items']} items; position bias {bias}; "
                       f"mean |p - 0.5| {q['informativeness']:.3f}")
    return out


def warn_if_uninformative(block: dict[str, Any] | None, require: bool, what: str) -> None:
    """Before training on labels: one prominent line when the judge's interval does not clear
    chance; an :class:`InputError` (the run stops) when ``require``."""
    if not block or block.get("judge_clears_chance") is not False:
        return
    msg = (f"LABELS NOT SHOWN INFORMATIVE: the judge's calibration accuracy interval does not clear chance "
           f"({'; '.join(lines({k: v for k, v in block.items() if k in ('judge', 'hhh_judge')}))}), yet {what}")
    if require:
        raise InputError(msg + " (alignment.require_informative_labels=true stops here)")
    log.warning(msg + " (set alignment.require_informative_labels=true to stop instead)")


def start(cfg: AgoraConfig, backend: LLMBackend, ckpt: Any) -> dict[str, Any] | None:
    """What every run does before its first step: refuse, in one line, a server that cannot serve the
    configured readers, then run the gate once (a checkpointed stage, replayed on resume)."""
    import asyncio

    check = getattr(backend, "check_continuation_support", None)
    if check and "likelihood" in (cfg.sim.choice_reader, cfg.sim.judge_reader) and not ckpt.done("calibration"):
        asyncio.run(check())
    if not cfg.calibration.enabled:
        return None
    block = ckpt.stage("calibration", lambda: calibrate(cfg, backend))
    for line in lines(block):
        log.info("label quality: %s", line)
    return block
