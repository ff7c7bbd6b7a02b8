"""The society's agent: a worldview, the model it speaks with, its memory, and its half of every phase.

Each phase method is one agent's part; :class:`sim.society.model.Society` runs it over all agents at once
(``asyncio.gather(*model.agents.map(...))``) so the backend batches their requests. Every method that
calls a model returns a record (:mod:`sim.society.records`) built here, so each record has one constructor site.
What an agent reads of its society is the step's :class:`~sim.society.context.StepContext` (``self.ctx``), not the model.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from agents import prompts
from agents.llm.base import LLMBackend
from agents.scoring import PairReading, check_probability, read_judgment, read_stance, scorer
from agents.worldview import Worldview
from scenarios.constitution import CritiquePrinciple
from scenarios.dilemma import Dilemma
from sim.run.seeding import child_rng
from sim.society.abm import mesa
from sim.society.records import JudgePlan, Message, Preference, Stance

if TYPE_CHECKING:
    from autogen_agentchat.agents import AssistantAgent

    from sim.society.context import StepContext
    from sim.society.model import Society

# what an agent has seen since its first stance: a heading and (speaker, text) lines
Seen = Callable[["Citizen"], tuple[str, Sequence[tuple[str, str]]]]


def _choice(p_a: float, u: float | None) -> str:
    """``argmax`` when ``u`` is None (exact ties abstain), else a draw: a if ``u < p_a``."""
    if u is not None:
        return "a" if u < p_a else "b"
    return "a" if p_a > 0.5 else "b" if p_a < 0.5 else "abstain"


class Citizen(mesa.Agent):
    """An agent of the society.

    Args:
        model: the society.
        index: 0-based position in the population and node id in the graph.
        worldview: its values and persona.
        backend: the model it speaks with (the society's unless replaced, e.g. by a tuned policy).
    """

    model: Society

    def __init__(self, model: Society, index: int, worldview: Worldview, backend: LLMBackend) -> None:
        super().__init__(model)
        self.index = index
        self.worldview = worldview
        self.backend = backend
        self.memory: list[Stance] = []  # this agent's stances, newest last

    @property
    def ctx(self) -> StepContext:
        """This step as the agent sees it: all it reads of its society."""
        return self.model.context

    @property
    def name(self) -> str:
        return f"agent_{self.index}"

    @property
    def cluster(self) -> str:
        return self.worldview.cluster

    def mean_p_a(self, phase: str, step: int) -> float:
        """Mean P(a) over step ``step``'s stances in ``phase`` (NaN if none): an agent reporter."""
        ps = []
        for s in reversed(self.memory):  # newest last: stop at an earlier step, not at the first stance
            if s.step < step:
                break
            if s.step == step and s.phase == phase:
                ps.append(s.p_a)
        ps.reverse()  # summed in the order they were taken
        return sum(ps) / len(ps) if ps else math.nan

    def message(self, d: Dilemma, phase: str, text: str, seed: int, *, group_id: int | None = None, turn: int = 0,
                target_id: int | None = None, principle_id: str | None = None) -> Message:
        """A transcript row of this agent speaking."""
        m = self.ctx
        return Message(run_id=m.run_id, generation=m.generation, step=m.step, dilemma_id=d.id, phase=phase,
                       group_id=group_id, turn=turn, agent_id=self.index, cluster=self.cluster, target_id=target_id,
                       principle_id=principle_id, text=text, seed=seed)

    # -- 1. stance ---------------------------------------------------------------------------------
    async def answer(self, d: Dilemma, j: int, choice: str | None = None) -> Message:
        """The free-text stance (its reason): beside the reading (``choice`` None: the prompt lists both options),
        or written for a ``choice`` already read (``agents.prompts.reason_messages``; an abstention has none)."""
        seed = self.ctx.call_seed("stance", j, self.index)
        msgs = (prompts.reason_messages(d, self.worldview, choice) if choice in ("a", "b")
                else prompts.stance_messages(d, self.worldview))
        text = await self.ctx.generate(self.backend, msgs, "stance", seed)
        return self.message(d, "stance", text, seed)

    async def read(self, d: Dilemma, phase: str, seen: Seen | None = None) -> PairReading:
        """P(a) by ``sim.choice_reader``: the option letters of the phase's prompt (both orders with
        ``sim.debias_order``), or the likelihood of each action's text after it."""
        c = self.ctx.cfg.sim
        return await read_stance(scorer(self.ctx.counted(self.backend)), c.choice_reader, d, self.worldview,
                                 seen(self) if seen else None, both_orders=c.debias_order,
                                 what=f"{phase} stance of {self.name} on '{d.id}'")

    def choose(self, d: Dilemma, j: int, phase: str, reading: PairReading) -> str:
        """The choice a reading gives by ``sim.choice_rule`` (a seeded draw: the same every time it is asked)."""
        m = self.ctx
        p_a = check_probability(reading.p_a, f"{phase} stance of {self.name} on '{d.id}'")
        u = (child_rng(m.cfg.seed, m.generation, m.step, "choice", phase, j, self.index).random()
             if m.cfg.sim.choice_rule == "sample" else None)
        return _choice(p_a, u)

    def take_stance(self, d: Dilemma, j: int, phase: str, reading: PairReading, text: str | None = None,
                    seed: int | None = None, *, reason_for: str | None = None) -> Stance:
        """The stance a reading (and the text, where the phase wrote one) gives; remembered. ``reason_for``: the
        choice the text was written for (``sim.reason=after_choice``): no letter was asked of it, so none is read
        (``text_choice`` and ``parsed_ok`` stay empty)."""
        m = self.ctx
        what = f"{phase} stance of {self.name} on '{d.id}'"
        p_a, p1 = check_probability(reading.p_a, what), check_probability(reading.presented, what)
        p2 = None if reading.reversed is None else check_probability(reading.reversed, what)
        asked = text is not None and reason_for in (None, "abstain")  # the text was asked to start with a letter
        text_choice = prompts.parse_choice(text) if asked else None
        stance = Stance(run_id=m.run_id, generation=m.generation, step=m.step, dilemma_id=d.id, agent_id=self.index,
                        cluster=self.cluster, model=self.backend.name, phase=phase, choice=self.choose(d, j, phase, reading),
                        p_a=p_a, p_a_presented=p1, p_a_reversed=p2,
                        text_choice=text_choice or ("abstain" if asked else None),
                        parsed_ok=text_choice is not None if asked else None, reason=text, seed=seed)
        self.memory.append(stance)
        return stance

    # -- 2. debate ---------------------------------------------------------------------------------
    def debater(self, j: int) -> AssistantAgent:
        """This agent as an autogen debater (its k-th turn seeded by (step, dilemma, agent, k))."""
        from autogen_agentchat.agents import AssistantAgent

        from agents.llm.autogen_client import AgoraChatClient

        m, cond = self.ctx, self.worldview.conditioning
        client = AgoraChatClient(m.counted(self.backend), seed_for_call=lambda k: m.call_seed("debate", j, self.index, k),
                                 max_new_tokens=m.cfg.sim.tokens.debate, temperature=m.cfg.llm.temperature,
                                 top_p=m.cfg.llm.top_p, speaker=self.name,
                                 conditioning=cond.for_role(prompts.DEBATE_ROLE) if cond else None)
        return AssistantAgent(self.name, model_client=client,
                              system_message=f"{self.worldview.persona} {prompts.DEBATE_ROLE}")

    # -- 3. critique -------------------------------------------------------------------------------
    def draw_critic(self) -> tuple[int, CritiquePrinciple]:
        """Who critiques this agent's answer (a random neighbour; anyone else if it has none), and under
        which principle: two draws from the model's rng."""
        m = self.ctx
        neighbours = sorted(m.graph.neighbors(self.index)) or [i for i in range(m.population) if i != self.index]
        critic = int(m.rng.choice(neighbours))
        return critic, m.constitution.critique[int(m.rng.integers(len(m.constitution.critique)))]

    async def critique(self, d: Dilemma, j: int, author: int, answer: str, principle: CritiquePrinciple) -> Message:
        """This agent's critique of ``author``'s ``answer``."""
        seed = self.ctx.call_seed("critique", j, author)
        text = await self.ctx.generate(self.backend, prompts.critique_messages(d, self.worldview, answer,
                                                                                 principle.critique), "critique", seed)
        return self.message(d, "critique", text, seed, target_id=author, principle_id=principle.id)

    async def revise(self, d: Dilemma, j: int, answer: str, critique: Message, principle: CritiquePrinciple) -> Message:
        """This agent's answer revised after ``critique``."""
        seed = self.ctx.call_seed("revision", j, self.index)
        msgs = prompts.revision_messages(d, self.worldview, answer, critique.text, principle.revision)
        text = await self.ctx.generate(self.backend, msgs, "revision", seed)
        return self.message(d, "revision", text, seed, turn=1, target_id=critique.agent_id, principle_id=principle.id)

    # -- 4. judge ----------------------------------------------------------------------------------
    async def judge(self, d: Dilemma, j: int, k: int, plan: JudgePlan) -> Preference:
        """This agent judging the pair of ``plan`` (the k-th of dilemma j) with the society's judge model."""
        m, c = self.ctx, self.ctx.cfg.sim
        what = f"judgment {k} of {self.name} on '{d.id}'"
        reading = await read_judgment(scorer(m.counted(m.judge_backend)), c.judge_reader, d,
                                      self.worldview if c.judge_persona else None, plan.principle.text,
                                      plan.response_a, plan.response_b, both_orders=c.debias_order,
                                      swapped=plan.swapped, what=what)
        p_rev = None if reading.reversed is None else check_probability(reading.reversed, what)
        return Preference(
            pref_id=f"{m.run_id}-g{m.generation}-s{m.step}-d{j}-{k}", run_id=m.run_id, generation=m.generation,
            # interned: every row on a dilemma shares one prompt string (150,000 rows a step at 100,000 agents)
            step=m.step, dilemma_id=d.id, prompt=sys.intern(prompts.dilemma_text(d)), response_a=plan.response_a,
            response_b=plan.response_b, author_a=plan.author_a, author_b=plan.author_b,
            cluster_a=m.clusters[plan.author_a], cluster_b=m.clusters[plan.author_b], pair_kind=plan.kind,
            judge_id=self.index, judge_cluster=self.cluster, principle_id=plan.principle.id,
            p_a=check_probability(reading.p_a, what), p_a_presented=check_probability(reading.presented, what),
            p_a_reversed=p_rev, order_swapped=plan.swapped, position_flip=reading.position_flip,
            judge_model=m.judge_backend.name, constitution_version=sys.intern(m.constitution.tag), seed=m.call_seed("judge", j, k))
