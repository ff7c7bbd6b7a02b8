"""The conditions' answers to a dilemma that pluralism and overton both measure: one model alone (``single``), the
model told to weigh the clusters (``contextual``), a panel of agents from different clusters merged by a
synthesiser (``panel``), and the panel's members."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from agents import prompts
from agents.llm.base import GenerateRequest, LLMBackend
from agents.worldview import cluster_centre, cluster_label
from scenarios.dilemma import Dilemma
from sim.config import AgoraConfig
from sim.run.seeding import child_rng, child_seed

if TYPE_CHECKING:
    from sim.run.lifecycle import Run

log = logging.getLogger(__name__)


class Bar(Protocol):
    """A progress bar (``tqdm``, or a run's :class:`~sim.run.lifecycle.Progress`)."""

    def update(self, n: int = 1) -> Any: ...


def panel_members(clusters: list[str], size: int, rng: np.random.Generator) -> list[int]:
    """``size`` agents, cycling through the clusters so that the panel spans as many as it can."""
    names = list(dict.fromkeys(clusters))
    by_cluster = {c: [i for i, x in enumerate(clusters) if x == c] for c in names}
    out: list[int] = []
    for k in range(size):
        pool = [i for i in by_cluster[names[k % len(names)]] if i not in out] or [i for i in range(len(clusters)) if i not in out]
        if not pool:
            break
        out.append(int(pool[int(rng.integers(len(pool)))]))
    return out


async def condition_answers(cfg: AgoraConfig, backend: LLMBackend, dilemmas: list[Dilemma], bar: Bar, *,
                            tag: str, panel_size: int, answer_tokens: int,
                            synthesis_tokens: int) -> list[dict[str, Any]]:
    """Per dilemma, the ``single``, ``contextual`` and ``panel`` answers and the panel's ``member`` answers
    (rows of ``dilemma_id, condition, agent_id, cluster, text``); seeds drawn under ``tag`` (the experiment
    that asks, which passes its own name: its seeds are in its bytes)."""
    from sim.society.model import population  # here: experiment folders stay light to import (the CLI imports them all)

    temp, top_p = cfg.llm.temperature, cfg.llm.top_p
    worldviews = population(cfg)
    clusters = [w.cluster for w in worldviews]
    names = list(dict.fromkeys(clusters))
    views = [(cluster_label(c), cluster_centre(c).persona) for c in names]

    async def gen(messages, tokens: int, *path: int | str) -> str:
        (text,) = await backend.generate([GenerateRequest(messages=messages, max_new_tokens=tokens, temperature=temp,
                                                          top_p=top_p, seed=child_seed(cfg.seed, tag, *path))])
        bar.update(1)
        return text

    async def one(j: int, d: Dilemma) -> list[dict[str, Any]]:
        members = panel_members(clusters, panel_size, child_rng(cfg.seed, tag, "panel", j))
        single, contextual, *said = await asyncio.gather(
            gen(prompts.stance_messages(d, None), answer_tokens, "single", j),
            gen(prompts.multiplex_messages(d, views), answer_tokens, "contextual", j),
            *(gen(prompts.stance_messages(d, worldviews[m]), answer_tokens, "member", j, m) for m in members))
        merged = await gen(prompts.synthesis_messages(d, [(cluster_label(clusters[m]), t) for m, t in zip(members, said,
                                                                                                       strict=True)]),
                           synthesis_tokens, "panel", j)
        base = {"dilemma_id": d.id}
        rows = [base | {"condition": "single", "agent_id": None, "cluster": None, "text": single},
                base | {"condition": "contextual", "agent_id": None, "cluster": None, "text": contextual},
                base | {"condition": "panel", "agent_id": None, "cluster": None, "text": merged}]
        rows += [base | {"condition": "member", "agent_id": m, "cluster": clusters[m], "text": t}
                 for m, t in zip(members, said, strict=True)]
        return rows

    out = await asyncio.gather(*(one(j, d) for j, d in enumerate(dilemmas)))
    return [r for rows in out for r in rows]


class AnswerSettings(Protocol):
    panel_size: int
    answer_tokens: int
    synthesis_tokens: int


def answers_stage(run: Run, dilemmas: list[Dilemma], settings: AnswerSettings, tag: str) -> tuple[list[dict[str, Any]], int]:
    """The run's ``answers`` stage of :func:`condition_answers` (``tag``: the experiment, whose settings are
    ``study.<tag>``), and the panel size used: ``settings.panel_size``, at most the population (said once)."""
    cfg = run.cfg
    panel = min(settings.panel_size, cfg.population.size)
    if panel < settings.panel_size:
        log.warning("study.%s.panel_size %d > population.size %d: panels of %d", tag, settings.panel_size,
                    cfg.population.size, panel)
    rows = run.stage("answers", condition_answers(cfg, run.backend, dilemmas, run.progress, tag=tag,
                                                  panel_size=settings.panel_size, answer_tokens=settings.answer_tokens,
                                                  synthesis_tokens=settings.synthesis_tokens),
                     total=len(dilemmas) * (3 + panel), unit="answer")
    return rows, panel
