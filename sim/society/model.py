"""The society: a thin Mesa model whose ``step()`` runs the phases over all agents at once.

Each phase is a :class:`~sim.society.citizen.Citizen` method run over the model's ``AgentSet`` and awaited together
(``asyncio.gather(*self.agents.map(...))``), so the backend batches every agent's request; no agent acts
before another within a phase, so activation order cannot bias outcomes (the role Mesa's step/advance
plays in its pd_grid example).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

from agents import prompts
from agents.llm.base import LLMBackend
from agents.persona import condition_all
from agents.scoring import PairReading
from agents.worldview import PopulationSpec, Worldview, sample_population
from scenarios.constitution import Constitution, JudgePrinciple
from scenarios.dilemma import Dilemma
from scenarios.errors import InputError
from sim.config import AgoraConfig
from sim.run import aio
from sim.run.seeding import child_rng, child_seed
from sim.society.abm import mesa
from sim.society.citizen import Citizen, Seen
from sim.society.context import StepContext
from sim.society.network import build_graph, debate_groups, same_cluster_edge_share
from sim.society.progress import StepBar
from sim.society.records import STANCE_PHASES, JudgePlan, Message, Preference, Stance

if TYPE_CHECKING:
    from autogen_agentchat.base import ChatAgent
    from autogen_agentchat.messages import BaseChatMessage


def population(cfg: AgoraConfig, limit: int | None = None) -> list[Worldview]:
    """A run's population: drawn from the root seed alone, so evaluation sees the society's agents; each worldview
    conditioned by ``cfg.persona`` (``agents.persona.condition_all``: the default leaves it as drawn). ``limit``:
    only its first ``limit`` agents (the gate reads a few; drawing a million would take seconds)."""
    pop = cfg.population
    spec = PopulationSpec(size=pop.size, clusters=tuple(pop.clusters), weights=tuple(pop.weights), spread=pop.spread)
    return condition_all(sample_population(spec, child_rng(cfg.seed, "population"), limit), cfg.persona)


@dataclass
class PhaseClock:
    """Wall time and item counts per phase (for throughput figures)."""

    seconds: dict[str, float] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)

    def add(self, phase: str, seconds: float, items: int) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
        self.items[phase] = self.items.get(phase, 0) + items


def check_per_step(cfg: AgoraConfig, dilemmas: Sequence[Dilemma]) -> None:
    """A step's dilemmas must differ: rows are keyed by (step, dilemma), and a pool smaller than
    ``scenario.per_step`` would put one dilemma twice in a step."""
    if cfg.scenario.per_step > len(dilemmas):
        raise InputError(f"{cfg.scenario.dilemmas}: scenario.per_step={cfg.scenario.per_step} is more than its "
                         f"{len(dilemmas)} dilemmas (a step's dilemmas must differ)")


# -- metrics (pure functions of one step's rows) ----------------------------------------------------
METRICS = ("share_a_initial", "share_a_post_debate", "share_a_revised", "consensus_initial", "consensus_post_debate",
           "consensus_revised", "abstain_initial", "unparsed_initial", "preferences", "position_flip_rate",
           "label_informativeness", "cluster_spread")


def _stance_stats(rows: list[Stance], label: str, clusters: Sequence[str]) -> dict[str, float]:
    if not rows:
        return {}
    choices = [r.choice for r in rows]
    voted = [c for c in choices if c != "abstain"]
    share_a = sum(c == "a" for c in voted) / len(voted) if voted else float("nan")
    out = {f"share_a_{label}": share_a, f"consensus_{label}": max(share_a, 1 - share_a) if voted else float("nan")}
    if label == "initial":
        out["abstain_initial"] = sum(c == "abstain" for c in choices) / len(choices)
        # over the texts that were asked for a letter (a reason written after the choice was not)
        asked = [r.parsed_ok for r in rows if r.parsed_ok is not None]
        out["unparsed_initial"] = sum(not ok for ok in asked) / len(asked) if asked else float("nan")
        per = {}
        for c in dict.fromkeys(clusters):
            cv = [r.choice for r in rows if r.cluster == c and r.choice != "abstain"]
            per[c] = sum(x == "a" for x in cv) / len(cv) if cv else float("nan")
            out[f"share_a_initial[{c}]"] = per[c]
        vals = [v for v in per.values() if not math.isnan(v)]
        out["cluster_spread"] = max(vals) - min(vals) if vals else float("nan")
    return out


def step_metrics(stances: list[Stance], prefs: list[Preference], clusters: Sequence[str]) -> dict[str, float]:
    """One step's model reporters, from its stances and preferences; ``clusters`` as configured."""
    metrics: dict[str, float] = {}
    for label in ("initial", "post_debate", "revised"):
        metrics |= _stance_stats([r for r in stances if r.phase == label], label, clusters)
    metrics["preferences"] = len(prefs)
    rev = [p for p in prefs if p.p_a_reversed is not None]
    metrics["position_flip_rate"] = sum(p.position_flip for p in rev) / len(rev) if rev else float("nan")
    metrics["label_informativeness"] = float(np.mean([abs(p.p_a - 0.5) for p in prefs])) if prefs else float("nan")
    return metrics


def step_line(m: dict[str, float]) -> str:
    """A step's headline figures, labelled, for the log's INFO line (every metric is in ``metrics.parquet``)."""
    def ok(k: str) -> bool:
        return isinstance(m.get(k), int | float) and not math.isnan(m[k])

    shares = [f"{m[k]:.0%} {label}" for k, label in (("share_a_initial", "at first"), ("share_a_post_debate", "after debate"),
                                                     ("share_a_revised", "revised")) if ok(k)]
    parts = [f"{int(m['preferences'])} preferences"] if ok("preferences") else []
    parts += ["chose A " + " -> ".join(shares)] if shares else []
    parts += [f"clusters differ by {m['cluster_spread']:.0%}"] if ok("cluster_spread") else []
    parts += [f"label strength |P(A)-0.5| {m['label_informativeness']:.2f}"] if ok("label_informativeness") else []
    parts += [f"position flips {m['position_flip_rate']:.0%}"] if ok("position_flip_rate") else []
    parts += [f"unparseable replies {m['unparsed_initial']:.0%}"] if ok("unparsed_initial") and m["unparsed_initial"] else []
    return ", ".join(parts)


def datacollector(clusters: Sequence[str]) -> mesa.DataCollector:
    """Per step, the model's :func:`step_metrics` and each agent's mean P(a) per phase."""
    keys = [*METRICS, *(f"share_a_initial[{c}]" for c in dict.fromkeys(clusters))]
    return mesa.DataCollector(
        model_reporters={k: (lambda m, k=k: m.step_metrics.get(k, float("nan"))) for k in keys},
        agent_reporters={"cluster": "cluster", **{f"p_a_{phase}": (lambda a, phase=phase: a.mean_p_a(phase, a.model.steps))
                                                  for phase in STANCE_PHASES}})


# -- who judges what (draws from the model's rng, in a fixed order) ----------------------------------
def draw_excluding(rng: np.random.Generator, n: int, excluded: list[int]) -> int:
    """A uniform index in ``range(n)`` outside ``excluded`` (sorted), in O(1): the same draw as
    ``rng.choice`` over the list of the others, without building that list."""
    if n <= len(excluded):
        return int(rng.integers(n))
    k = int(rng.integers(n - len(excluded)))
    for e in excluded:
        k += k >= e
    return k


def judge_plan(rng: np.random.Generator, clusters: Sequence[str], answers: dict[int, str], revised: dict[int, str],
               n_cross: int, principles: Sequence[JudgePrinciple]) -> list[JudgePlan]:
    """Each revision against its original, then ``n_cross`` pairs across clusters; per pair a judge
    (neither author), a principle and the presented order."""
    pairs = [("revision", i, revised[i], i, answers[i]) for i in sorted(revised)]
    latest = {i: revised.get(i, answers[i]) for i in answers}
    n = len(clusters)
    if len(set(clusters)) > 1:
        # One "everyone outside cluster c" list per cluster, not per pair: O(N) per step, not O(N^2).
        # rng.integers(len(x)) draws exactly what rng.choice(x) draws, without copying x to an array.
        outside = {cl: [k for k in range(n) if clusters[k] != cl] for cl in dict.fromkeys(clusters)}
        for _ in range(n_cross):
            i = int(rng.integers(n))
            others = outside[clusters[i]]
            k = others[int(rng.integers(len(others)))]
            pairs.append(("cross_cluster", i, latest[i], k, latest[k]))
    plan = []
    for kind, ia, ra, ib, rb in pairs:
        judge = draw_excluding(rng, n, sorted({ia, ib}))
        principle = principles[int(rng.integers(len(principles)))]
        plan.append(JudgePlan(kind=kind, author_a=ia, response_a=ra, author_b=ib, response_b=rb, judge=judge,
                              principle=principle, swapped=bool(rng.random() < 0.5)))
    return plan


@dataclass(frozen=True)
class StepCollector:
    """How the cyclic garbage collector runs during a step (values and output bytes do not depend on it).

    Everything alive before the step (libraries, weights, earlier steps' rows) is frozen out of the
    collector's scans for the step (``gc.freeze``): otherwise each full collection walks that whole heap,
    and their number grows with N, which made a 512-agent step ~2x slower. Within the step, with the
    default thresholds (700, 10, 10), a 3,000-agent step ran ~1,560 young, ~140 middle and 12 full
    collections (1.3 s of a 5.0 s step): each full one walks every row and live team made since the step
    began, and as the step's heap grows by 25% between them (CPython's rule) that is ~5 walks of it.

    Attributes:
        young: allocations between young collections during a step (CPython's default is 700); ``None``
            keeps the process's thresholds.
        freeze_survivors: after each full collection during a step, freeze what survived it, so the next
            one walks only what was made since (each row is walked about once, not ~5 times). A team alive
            at that moment stays in memory until the step ends (at most ``MAX_TEAMS`` per dilemma).
    """

    young: int | None = 10_000
    freeze_survivors: bool = True

    @staticmethod
    def _freeze_after_full(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            gc.freeze()

    @contextlib.contextmanager
    def during_step(self) -> Iterator[None]:
        """Freeze the heap, apply this policy for the block, then restore the thresholds and unfreeze
        (the next collection frees what the step left behind)."""
        thresholds = gc.get_threshold()
        gc.freeze()
        if self.young is not None:
            gc.set_threshold(self.young, *thresholds[1:])
        if self.freeze_survivors:
            gc.callbacks.append(self._freeze_after_full)
        try:
            yield
        finally:
            if self.freeze_survivors:
                gc.callbacks.remove(self._freeze_after_full)
            gc.set_threshold(*thresholds)
            gc.unfreeze()


# what Society.step uses; benches/test_step_collector.py swaps in StepCollector(young=None, freeze_survivors=False)
STEP_COLLECTOR = StepCollector()


# Groups debating at once. With autogen's RoundRobinGroupChat (one agent runtime per team) all teams alive together
# held ~34 KB per agent and every full pass of the cyclic collector scanned them: at 10,000 agents a step took 35 s of
# CPU with 1,024 teams at once and 26 s with 256. 256 groups still give a batching backend far more concurrent
# requests than a batch takes (llm.max_batch_size 32, llm.concurrency 8).
MAX_TEAMS = 256


async def round_robin(members: Sequence[ChatAgent], task: str, turns: int) -> list[BaseChatMessage]:
    """What ``RoundRobinGroupChat(members, max_turns=turns).run(task=task)`` returns as chat messages (the task,
    then each turn's reply), with the members called in turn through autogen's agent API (``on_messages``).

    Why not the team itself: it runs the same conversation through an agent runtime of its own, topic
    subscriptions and a tracing span per message, ~5 ms of CPU per team of three against ~0.5 ms here (scripted
    backend, benches/RESULTS.md); at 100,000 agents that was the largest cost of a step. A shared runtime is no
    way round it (autogen routes each message past every subscription: 14 ms per team with 256 teams in one).
    The members are still autogen agents, so any ``ChatCompletionClient`` can stand in for one; each is shown
    what the team shows it (the task and the others' replies since its last turn), and
    ``tests/unit/test_society.py`` checks both give the same messages. An agent's error is raised as itself,
    where the team wraps it in a ``RuntimeError`` carrying its traceback's text.
    """
    from autogen_agentchat.messages import TextMessage
    from autogen_core import CancellationToken

    if not members or turns < 1:
        raise ValueError(f"a debate needs members and at least one turn (got {len(members)} members, {turns} turns)")
    said: list[BaseChatMessage] = [TextMessage(content=task, source="user")]
    unheard: list[list[BaseChatMessage]] = [[said[0]] for _ in members]
    token = CancellationToken()  # one per conversation, as the team's run has
    for t in range(turns):
        s = t % len(members)
        reply = (await members[s].on_messages(unheard[s], token)).chat_message
        unheard[s] = []
        for o, pending in enumerate(unheard):
            if o != s:
                pending.append(reply)
        said.append(reply)
    return said


async def debate(slots: asyncio.Semaphore, members: Sequence[Citizen], d: Dilemma, j: int, answers: dict[int, str],
                 rounds: int) -> list[tuple[int, str]]:
    """One group's debate among autogen agents, once a slot is free: (speaker, text) per turn."""
    from autogen_agentchat.messages import TextMessage

    async with slots:
        said = await round_robin([a.debater(j) for a in members],
                                 prompts.debate_task(d, [(a.name, answers[a.index]) for a in members]),
                                 rounds * len(members))
    return [(int(msg.source.split("_")[1]), msg.content) for msg in said
            if isinstance(msg, TextMessage) and msg.source.startswith("agent_")]


class Society(mesa.Model):
    """A population on a social graph that faces dilemmas and produces AI feedback.

    Args:
        cfg: the run's configuration.
        dilemmas: the pool to draw from (in seeded order when ``cfg.scenario.shuffle``).
        constitution: critique and judging principles.
        backend: the model for every agent (per-agent backends can be set on ``agent.backend``).
        run_id: recorded on every row.
        generation: recorded on every row; also part of every seed.
        run_async: runs a step's coroutine to its end: the run's one event loop (``sim.run.lifecycle.Run.run_async``),
            or by default a loop of the step's own (:func:`sim.run.aio.run`).
    """

    context: StepContext  # this step as its citizens see it (made at the start of each step)

    def __init__(self, cfg: AgoraConfig, dilemmas: Sequence[Dilemma], constitution: Constitution,
                 backend: LLMBackend, *, run_id: str, generation: int = 0,
                 run_async: Callable[[Coroutine[Any, Any, None]], None] = aio.run) -> None:
        check_per_step(cfg, dilemmas)
        super().__init__(rng=child_seed(cfg.seed, "model", generation))
        self.cfg, self.run_id, self.generation = cfg, run_id, generation
        self.run_async = run_async
        self.constitution = constitution
        self.judge_backend = backend
        worldviews = population(cfg)
        Citizen.create_agents(self, len(worldviews), list(range(len(worldviews))), worldviews, backend)
        self.clusters = [w.cluster for w in worldviews]
        self.graph: nx.Graph = build_graph(cfg.network, self.clusters, child_seed(cfg.seed, "network"))
        order = (child_rng(cfg.seed, "schedule").permutation(len(dilemmas)) if cfg.scenario.shuffle
                 else np.arange(len(dilemmas)))
        self.schedule = [dilemmas[int(i)] for i in order]
        self.stances: list[Stance] = []
        self.transcripts: list[Message] = []
        self.preferences: list[Preference] = []
        self.clock = PhaseClock()
        self.step_metrics: dict[str, float] = {}
        self.bar = StepBar(total=0, disable=True)  # the step's progress bar: calls sent (total) and answered
        self.pace: tuple[int, float] | None = None  # the last step's (calls, seconds): the next bar's ETA starts from it
        self.datacollector = datacollector(self.cfg.population.clusters)

    # -- checkpoint ------------------------------------------------------------------------------
    def state_dict(self, rows: bool = True) -> dict[str, Any]:
        """Everything a later step depends on, as JSON-ready builtins. Population, graph and
        schedule are rebuilt from the seed; every LLM call's seed is a function of (seed, step, ...).
        ``rows=False``: without the row tables (a checkpoint logs those itself, only the new ones)."""
        state = {"steps": self.steps, "rng": self.rng.bit_generator.state, "random": self.random.getstate(),
                 "clock": {"seconds": self.clock.seconds, "items": self.clock.items}}
        if rows:
            state |= {t: [dataclasses.asdict(r) for r in getattr(self, t)] for t in ("stances", "transcripts", "preferences")}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        steps = int(state["steps"])
        self.rng.bit_generator.state = state["rng"]
        version, internal, gauss = state["random"]
        self.random.setstate((version, tuple(internal), gauss))
        self.stances = [Stance(**r) for r in state["stances"]]
        self.transcripts = [Message(**r) for r in state["transcripts"]]
        self.preferences = [Preference(**r) for r in state["preferences"]]
        self.clock = PhaseClock(dict(state["clock"]["seconds"]), dict(state["clock"]["items"]))
        agents = list(self.agents)
        for a in agents:
            a.memory = []
        for s in self.stances:  # memories are the agent's own stances, in order
            agents[s.agent_id].memory.append(s)
        self._recollect(steps)

    def _recollect(self, steps: int) -> None:
        """Collect again for each step done, as it ended: every reporter reads the rows the checkpoint
        holds, so the DataCollector's tables come back through its public ``collect`` alone."""
        by_step: dict[int, tuple[list[Stance], list[Preference]]] = {s: ([], []) for s in range(1, steps + 1)}
        for r in self.stances:
            by_step[r.step][0].append(r)
        for p in self.preferences:
            by_step[p.step][1].append(p)
        self.datacollector = datacollector(self.cfg.population.clusters)
        for step, (stances, prefs) in by_step.items():
            self.steps = step  # what the reporters and the collector read
            self.step_metrics = step_metrics(stances, prefs, self.cfg.population.clusters)
            self.datacollector.collect(self)
        self.steps = steps

    # -- the step --------------------------------------------------------------------------------
    def step(self) -> None:
        k = self.steps - 1  # Mesa increments ``steps`` before calling us
        n = self.cfg.scenario.per_step
        todays = [self.schedule[(k * n + j) % len(self.schedule)] for j in range(n)]
        before = (len(self.stances), len(self.preferences))
        with STEP_COLLECTOR.during_step():
            self.run_async(self._run_step(todays))
        self.step_metrics = step_metrics(self.stances[before[0]:], self.preferences[before[1]:],
                                         self.cfg.population.clusters)
        self.datacollector.collect(self)

    async def _run_step(self, todays: Sequence[Dilemma]) -> None:
        with StepBar(total=0, unit="call", desc=self._bar_name(), leave=False,
                     disable=not self.cfg.sim.progress, mininterval=1.0, expected=self.pace) as self.bar:
            self.context = self.make_context()
            await asyncio.gather(*(self._run_dilemma(d, j) for j, d in enumerate(todays)))
            self.pace = self.bar.measured()  # before close(), which disables the bar

    def make_context(self) -> StepContext:
        """This step as its citizens see it. :meth:`step` makes one per step; code that runs one phase alone (the
        debate benchmark) sets ``context`` from it first."""
        return StepContext(cfg=self.cfg, run_id=self.run_id, generation=self.generation, step=self.steps,
                           constitution=self.constitution, judge_backend=self.judge_backend, clusters=self.clusters,
                           graph=self.graph, population=len(self.agents), rng=self.rng, bar=self.bar)

    def _bar_name(self) -> str:
        return f"generation {self.generation} step {self.steps}" if self.generation else f"step {self.steps}"

    async def _run_dilemma(self, d: Dilemma, j: int) -> None:
        c, n = self.cfg.sim, len(self.agents)
        answers = await self._timed("stance", n, self._stance(d, j))
        if c.debate_rounds > 0:  # every group debates among autogen agents; up to MAX_TEAMS run at once
            said = await self._timed("debate", n * c.debate_rounds, self._debate(d, j, answers))
            post = await self._timed("post_debate", n, self._read_all(
                d, "post_debate", lambda a: ("Your group discussed it", said[a.index])))
            self.stances += [a.take_stance(d, j, "post_debate", r) for a, r in zip(self.agents, post, strict=True)]
        revised: dict[int, str] = {}
        if c.critique and self.constitution.critique:  # a random neighbour critiques each answer; the author revises
            revised = await self._timed("critique", n, self._critique(d, j, answers))
        n_cross = n // 2 if c.cross_cluster_pairs < 0 else c.cross_cluster_pairs
        plan = judge_plan(self.rng, self.clusters, answers, revised, n_cross, self.constitution.judge)
        await self._timed("judge", len(plan), self._judge(d, j, plan))

    async def _timed(self, phase: str, items: int, coro: Awaitable[Any]) -> Any:
        t0 = time.perf_counter()
        out = await coro
        self.clock.add(phase, time.perf_counter() - t0, items)
        return out

    # -- the phases, each over all agents at once ----------------------------------------------------
    async def _read_all(self, d: Dilemma, phase: str, seen: Seen | None = None) -> list[PairReading]:
        return list(await asyncio.gather(*self.agents.map("read", d, phase, seen)))

    async def _stance(self, d: Dilemma, j: int) -> dict[int, str]:
        """1. Every agent's reason (free text) and scored choice; the answers by agent. ``sim.reason=before_choice``:
        both together; ``after_choice``: every choice read first, then each reason written for its choice, and the
        answer others see is "A. <reason>" (the letter the reading chose)."""
        if self.cfg.sim.reason == "after_choice":
            readings = await self._read_all(d, "initial")
            choices = [a.choose(d, j, "initial", r) for a, r in zip(self.agents, readings, strict=True)]
            said = await asyncio.gather(*(a.answer(d, j, c) for a, c in zip(self.agents, choices, strict=True)))
        else:
            said, readings = await asyncio.gather(asyncio.gather(*self.agents.map("answer", d, j)),
                                                  self._read_all(d, "initial"))
            choices = [None] * len(said)
        answers = {}
        for a, msg, reading, chosen in zip(self.agents, said, readings, choices, strict=True):
            stance = a.take_stance(d, j, "initial", reading, msg.text, msg.seed, reason_for=chosen)
            self.stances.append(stance)
            self.transcripts.append(msg)
            answers[msg.agent_id] = msg.text if chosen in (None, "abstain") else f"{chosen.upper()}. {msg.text}"
        return answers

    async def _debate(self, d: Dilemma, j: int, answers: dict[int, str]) -> dict[int, list[tuple[str, str]]]:
        """2. Each group debates (autogen agents in turn, :func:`round_robin`); what each agent heard, by agent."""
        c, agents = self.cfg.sim, list(self.agents)
        groups = debate_groups(self.graph, c.group_size, child_rng(self.cfg.seed, self.generation, self.steps,
                                                                   "debate", j))
        slots = asyncio.Semaphore(MAX_TEAMS)
        results = await asyncio.gather(*(debate(slots, [agents[m] for m in g], d, j, answers, c.debate_rounds)
                                         for g in groups))
        said: dict[int, list[tuple[str, str]]] = {}
        for g, (members, turns) in enumerate(zip(groups, results, strict=True)):
            # rows in group order, not in the order groups finish (which a remote server makes vary)
            for t, (who, text) in enumerate(turns, start=1):
                seed = self.context.call_seed("debate", j, who, (t - 1) // len(members))
                self.transcripts.append(agents[who].message(d, "debate", text, seed, group_id=g, turn=t))
            for m in members:
                said[m] = [(f"agent_{who}", text) for who, text in turns]
        return said

    async def _critique(self, d: Dilemma, j: int, answers: dict[int, str]) -> dict[int, str]:
        """3. A critic per agent critiques its answer; the author revises and is read again. The revisions."""
        agents = list(self.agents)
        plan = self.agents.map("draw_critic")
        crits = await asyncio.gather(*(agents[critic].critique(d, j, a.index, answers[a.index], p)
                                       for a, (critic, p) in zip(agents, plan, strict=True)))
        revs = await asyncio.gather(*(a.revise(d, j, answers[a.index], crit, p)
                                      for a, crit, (_, p) in zip(agents, crits, plan, strict=True)))
        revised = {r.agent_id: r.text for r in revs}
        readings = await self._read_all(d, "revised", lambda a: ("You revised your answer to", [("you", revised[a.index])]))
        for a, crit, rev, reading in zip(agents, crits, revs, readings, strict=True):
            self.transcripts += (crit, rev)
            self.stances.append(a.take_stance(d, j, "revised", reading, rev.text, rev.seed))
        return revised

    async def _judge(self, d: Dilemma, j: int, plan: list[JudgePlan]) -> None:
        """4. Each pair judged by its judge, under its principle, in its presented order."""
        agents = list(self.agents)
        self.preferences += await asyncio.gather(*(agents[p.judge].judge(d, j, k, p) for k, p in enumerate(plan)))

    # -- summaries -------------------------------------------------------------------------------
    def homophily(self) -> float:
        return same_cluster_edge_share(self.graph, self.clusters)
