"""What a citizen reads of its society during one step, built once per step by the society."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from agents.llm.base import ChatMessage, GenerateRequest, LLMBackend
from scenarios.constitution import Constitution
from sim.config import AgoraConfig
from sim.run.seeding import child_seed
from sim.society.progress import Counted, StepBar


@dataclass(frozen=True, kw_only=True)
class StepContext:
    """A society step as its citizens see it (:meth:`sim.society.model.Society.step` makes one per step).

    Attributes:
        cfg: the run's configuration (citizens read ``seed``, ``sim`` and ``llm``).
        run_id: recorded on every row.
        generation: recorded on every row; part of every seed.
        step: the step (1-based, Mesa's ``steps``); part of every seed.
        constitution: the principles critics and judges use this step.
        judge_backend: the model every judge speaks with.
        clusters: each agent's cluster, by agent index.
        graph: the agents' network (node = agent index).
        population: how many agents there are.
        rng: the society's generator (critic draws take from it in agent order).
        bar: the step's progress bar (every model call is counted on it).
    """

    cfg: AgoraConfig
    run_id: str
    generation: int
    step: int
    constitution: Constitution
    judge_backend: LLMBackend
    clusters: Sequence[str]
    graph: nx.Graph
    population: int
    rng: np.random.Generator
    bar: StepBar

    def call_seed(self, phase: str, *path: int) -> int:
        """The seed of one model call: (run seed, generation, step, phase, *path)."""
        return child_seed(self.cfg.seed, self.generation, self.step, phase, *path)

    def counted(self, backend: LLMBackend) -> Counted:
        return Counted(backend, self.bar)

    async def generate(self, backend: LLMBackend, messages: Sequence[ChatMessage], budget: str, seed: int) -> str:
        """One reply, ``sim.tokens.<budget>`` tokens at most."""
        req = GenerateRequest(messages=messages, max_new_tokens=getattr(self.cfg.sim.tokens, budget),
                              temperature=self.cfg.llm.temperature, top_p=self.cfg.llm.top_p, seed=seed)
        # one task per request, as the coalescer has always been sent them (batches follow task order)
        ((text,),) = await asyncio.gather(self.counted(backend).generate([req]))
        return text
