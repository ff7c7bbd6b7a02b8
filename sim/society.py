"""The society: a thin Mesa model whose ``step()`` runs the phases over all agents at once.

Each phase sends every agent's request together (``asyncio.gather``) so the backend batches them;
no agent acts before another within a phase, so activation order cannot bias outcomes (the role
Mesa's step/advance plays in its pd_grid example).
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mesa
import networkx as nx
import numpy as np
from tqdm.auto import tqdm

from agents import prompts
from agents.llm.base import GenerateRequest, LLMBackend
from agents.scoring import PairReading, check_probability, read_judgment, read_stance, scorer
from agents.worldview import PopulationSpec, Worldview, sample_population
from scenarios.constitution import Constitution
from scenarios.dilemma import Dilemma
from scenarios.errors import InputError
from sim.config import AgoraConfig
from sim.network import build_graph, debate_groups, same_cluster_edge_share
from sim.seeding import child_rng, child_seed


class Citizen(mesa.Agent):
    """An agent: a worldview, the model it speaks with, and its memory of what it said."""

    def __init__(self, model: Society, index: int, worldview: Worldview, backend: LLMBackend) -> None:
        super().__init__(model)
        self.index = index  # 0-based position in the population and node id in the graph
        self.worldview = worldview
        self.backend = backend
        self.memory: list[dict[str, Any]] = []  # this agent's stances, newest last

    @property
    def name(self) -> str:
        return f"agent_{self.index}"


def population(cfg: AgoraConfig) -> list[Worldview]:
    """A run's population: drawn from the root seed alone, so evaluation sees the society's agents."""
    pop = cfg.population
    spec = PopulationSpec(size=pop.size, clusters=tuple(pop.clusters), weights=tuple(pop.weights), spread=pop.spread)
    return sample_population(spec, child_rng(cfg.seed, "population"))


def _choice(p_a: float, u: float | None) -> str:
    """``argmax`` when ``u`` is None (exact ties abstain), else a draw: a if ``u < p_a``."""
    if u is not None:
        return "a" if u < p_a else "b"
    return "a" if p_a > 0.5 else "b" if p_a < 0.5 else "abstain"


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


class Society(mesa.Model):
    """A population on a social graph that faces dilemmas and produces AI feedback.

    Args:
        cfg: the run's configuration.
        dilemmas: the pool to draw from (in seeded order when ``cfg.scenario.shuffle``).
        constitution: critique and judging principles.
        backend: the model for every agent (per-agent backends can be set on ``agent.backend``).
        run_id: recorded on every row.
        generation: recorded on every row; also part of every seed.
    """

    def __init__(self, cfg: AgoraConfig, dilemmas: Sequence[Dilemma], constitution: Constitution,
                 backend: LLMBackend, *, run_id: str, generation: int = 0) -> None:
        check_per_step(cfg, dilemmas)
        super().__init__(rng=child_seed(cfg.seed, "model", generation))
        self.cfg = cfg
        self.run_id = run_id
        self.generation = generation
        self.constitution = constitution
        self.judge_backend = backend
        worldviews = population(cfg)
        self.citizens = [Citizen(self, i, w, backend) for i, w in enumerate(worldviews)]
        self.clusters = [w.cluster for w in worldviews]
        self.graph: nx.Graph = build_graph(cfg.network, self.clusters, child_seed(cfg.seed, "network"))
        order = (child_rng(cfg.seed, "schedule").permutation(len(dilemmas)) if cfg.scenario.shuffle
                 else np.arange(len(dilemmas)))
        self.schedule = [dilemmas[int(i)] for i in order]
        self.stances: list[dict[str, Any]] = []
        self.transcripts: list[dict[str, Any]] = []
        self.preferences: list[dict[str, Any]] = []
        self.clock = PhaseClock()
        self.step_metrics: dict[str, float] = {}
        self.datacollector = mesa.DataCollector(model_reporters=self._reporters())

    # -- checkpoint ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a later step depends on, as JSON-ready builtins. Population, graph and
        schedule are rebuilt from the seed; every LLM call's seed is a function of (seed, step, ...)."""
        return {"steps": self.steps, "rng": self.rng.bit_generator.state, "random": self.random.getstate(),
                "stances": self.stances, "transcripts": self.transcripts, "preferences": self.preferences,
                "clock": {"seconds": self.clock.seconds, "items": self.clock.items}, "step_metrics": self.step_metrics,
                "model_vars": self.datacollector.model_vars}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.rng.bit_generator.state = state["rng"]
        version, internal, gauss = state["random"]
        self.random.setstate((version, tuple(internal), gauss))
        self.stances, self.transcripts, self.preferences = state["stances"], state["transcripts"], state["preferences"]
        self.clock = PhaseClock(dict(state["clock"]["seconds"]), dict(state["clock"]["items"]))
        self.step_metrics = state["step_metrics"]
        self.datacollector.model_vars = {k: list(v) for k, v in state["model_vars"].items()}
        for a in self.citizens:
            a.memory = []
        for row in self.stances:  # memories are the agent's own stance rows, in order
            self.citizens[row["agent_id"]].memory.append(row)

    # -- metrics ---------------------------------------------------------------------------------
    def _reporters(self) -> dict[str, Callable[[Society], float]]:
        keys = ["share_a_initial", "share_a_post_debate", "share_a_revised", "consensus_initial",
                "consensus_post_debate", "consensus_revised", "abstain_initial", "unparsed_initial",
                "preferences", "position_flip_rate", "label_informativeness", "cluster_spread"]
        keys += [f"share_a_initial[{c}]" for c in dict.fromkeys(self.cfg.population.clusters)]
        return {k: (lambda m, k=k: m.step_metrics.get(k, float("nan"))) for k in keys}

    def _stance_stats(self, rows: list[dict[str, Any]], label: str) -> dict[str, float]:
        if not rows:
            return {}
        choices = [r["choice"] for r in rows]
        voted = [c for c in choices if c != "abstain"]
        share_a = sum(c == "a" for c in voted) / len(voted) if voted else float("nan")
        out = {f"share_a_{label}": share_a,
               f"consensus_{label}": max(share_a, 1 - share_a) if voted else float("nan")}
        if label == "initial":
            out["abstain_initial"] = sum(c == "abstain" for c in choices) / len(choices)
            out["unparsed_initial"] = sum(not r["parsed_ok"] for r in rows) / len(rows)
            per = {}
            for c in dict.fromkeys(self.cfg.population.clusters):
                cv = [r["choice"] for r in rows if r["cluster"] == c and r["choice"] != "abstain"]
                per[c] = sum(x == "a" for x in cv) / len(cv) if cv else float("nan")
                out[f"share_a_initial[{c}]"] = per[c]
            vals = [v for v in per.values() if not math.isnan(v)]
            out["cluster_spread"] = max(vals) - min(vals) if vals else float("nan")
        return out

    # -- the step --------------------------------------------------------------------------------
    def step(self) -> None:
        k = self.steps - 1  # Mesa increments ``steps`` before calling us
        n = self.cfg.scenario.per_step
        todays = [self.schedule[(k * n + j) % len(self.schedule)] for j in range(n)]
        before = (len(self.stances), len(self.preferences))
        # Everything alive before the step (libraries, weights, earlier steps' rows) is frozen out of
        # the cyclic GC's scans for its duration: otherwise each full collection walks that whole
        # heap, and their number grows with N, which made a 512-agent step ~2x slower (benches/).
        gc.freeze()
        try:
            asyncio.run(self._run_step(todays))
        finally:
            gc.unfreeze()
        new_stances, new_prefs = self.stances[before[0]:], self.preferences[before[1]:]
        metrics: dict[str, float] = {}
        for label in ("initial", "post_debate", "revised"):
            metrics |= self._stance_stats([r for r in new_stances if r["phase"] == label], label)
        metrics["preferences"] = len(new_prefs)
        rev = [p for p in new_prefs if p["p_a_reversed"] is not None]
        metrics["position_flip_rate"] = sum(p["position_flip"] for p in rev) / len(rev) if rev else float("nan")
        metrics["label_informativeness"] = (float(np.mean([abs(p["p_a"] - 0.5) for p in new_prefs]))
                                            if new_prefs else float("nan"))
        self.step_metrics = metrics
        self.datacollector.collect(self)

    async def _run_step(self, todays: Sequence[Dilemma]) -> None:
        bar = self._bar(len(todays))
        await asyncio.gather(*(self._run_dilemma(d, j, bar) for j, d in enumerate(todays)))
        bar.close()

    def _bar(self, n_dilemmas: int) -> tqdm:
        c = self.cfg.sim
        reads = 2 if c.debias_order and c.choice_reader == "label" else 1
        critique = c.critique and bool(self.constitution.critique)
        calls_per_agent = 1 + reads * (1 + (c.debate_rounds > 0) + critique) + c.debate_rounds + 2 * critique
        judge_reads = 2 if c.debias_order and c.judge_reader == "label" else 1
        judged = judge_reads * (len(self.citizens) * critique + self._n_cross())
        return tqdm(total=n_dilemmas * (calls_per_agent * len(self.citizens) + judged), unit="call",
                    desc=f"gen {self.generation} step {self.steps}", disable=not c.progress, leave=False,
                    mininterval=1.0)

    def _n_cross(self) -> int:
        c = self.cfg.sim.cross_cluster_pairs
        return len(self.citizens) // 2 if c < 0 else c

    async def _timed(self, phase: str, items: int, coro: Awaitable[Any]) -> Any:
        t0 = time.perf_counter()
        out = await coro
        self.clock.add(phase, time.perf_counter() - t0, items)
        return out

    async def _gen(self, backend: LLMBackend, reqs: Sequence[GenerateRequest], bar: tqdm) -> list[str]:
        async def one(r: GenerateRequest) -> str:
            (text,) = await backend.generate([r])
            bar.update(1)
            return text
        return list(await asyncio.gather(*(one(r) for r in reqs)))

    def _call_seed(self, phase: str, *path: int) -> int:
        return child_seed(self.cfg.seed, self.generation, self.steps, phase, *path)

    def _row(self, **kw: Any) -> dict[str, Any]:
        return {"run_id": self.run_id, "generation": self.generation, "step": self.steps, **kw}

    async def _read_stances(self, d: Dilemma, phase: str, bar: tqdm,
                            quoted: Callable[[Citizen], tuple[str, Sequence[tuple[str, str]]]] | None = None,
                            ) -> list[PairReading]:
        """Every agent's P(a) by ``sim.choice_reader``: the option letters of the phase's prompt (both
        orders with ``sim.debias_order``), or the likelihood of each action's text after it.
        ``quoted(agent)`` gives the heading and the text an agent has seen since its first stance."""
        c = self.cfg.sim

        async def for_agent(a: Citizen) -> PairReading:
            return await read_stance(scorer(a.backend, lambda: bar.update(1)), c.choice_reader, d, a.worldview,
                                     quoted(a) if quoted else None, both_orders=c.debias_order,
                                     what=f"{phase} stance of {a.name} on '{d.id}'")

        return list(await asyncio.gather(*(for_agent(a) for a in self.citizens)))

    async def _run_dilemma(self, d: Dilemma, j: int, bar: tqdm) -> None:
        c = self.cfg.sim
        temp, top_p = self.cfg.llm.temperature, self.cfg.llm.top_p

        # 1. stance: free text (the reason) and the scored choice, together.
        gen_reqs = [GenerateRequest(messages=prompts.stance_messages(d, a.worldview), max_new_tokens=c.tokens.stance,
                                    temperature=temp, top_p=top_p, seed=self._call_seed("stance", j, a.index))
                    for a in self.citizens]
        texts, scored = await self._timed("stance", len(self.citizens), asyncio.gather(
            asyncio.gather(*(self._gen(a.backend, [r], bar) for a, r in zip(self.citizens, gen_reqs, strict=True))),
            self._read_stances(d, "initial", bar)))
        texts = [t[0] for t in texts]
        answers: dict[int, str] = {}
        for a, text, reading, req in zip(self.citizens, texts, scored, gen_reqs, strict=True):
            self._add_stance(a, d, "initial", reading, text, req.seed, j)
            self.transcripts.append(self._row(dilemma_id=d.id, phase="stance", group_id=None, turn=0,
                                              agent_id=a.index, cluster=a.worldview.cluster, target_id=None,
                                              principle_id=None, text=text, seed=req.seed))
            answers[a.index] = text

        # 2. debate: every group is an autogen team; all teams run concurrently.
        if c.debate_rounds > 0:
            said = await self._timed("debate", len(self.citizens) * c.debate_rounds,
                                     self._debate(d, j, answers, bar))
            post = await self._timed("post_debate", len(self.citizens), self._read_stances(
                d, "post_debate", bar, lambda a: ("Your group discussed it", said[a.index])))
            for a, reading in zip(self.citizens, post, strict=True):
                self._add_stance(a, d, "post_debate", reading, None, None, j)

        # 3. critique: a random neighbour critiques each answer; the author revises.
        revised: dict[int, str] = {}
        if c.critique and self.constitution.critique:
            revised = await self._timed("critique", len(self.citizens), self._critique(d, j, answers, bar))

        # 4. judge: original vs revised, and pairs across clusters.
        plan = self._judge_plan(answers, revised)
        await self._timed("judge", len(plan), self._judge(d, j, plan, bar))

    def _add_stance(self, a: Citizen, d: Dilemma, phase: str, reading: PairReading,
                    text: str | None, seed: int | None, j: int) -> None:
        what = f"{phase} stance of {a.name} on '{d.id}'"
        p_a, p1 = check_probability(reading.p_a, what), check_probability(reading.presented, what)
        p2 = None if reading.reversed is None else check_probability(reading.reversed, what)
        text_choice = prompts.parse_choice(text) if text is not None else None
        u = (child_rng(self.cfg.seed, self.generation, self.steps, "choice", phase, j, a.index).random()
             if self.cfg.sim.choice_rule == "sample" else None)
        row = self._row(dilemma_id=d.id, agent_id=a.index, cluster=a.worldview.cluster, model=a.backend.name,
                        phase=phase, choice=_choice(p_a, u), p_a=p_a, p_a_presented=p1, p_a_reversed=p2,
                        text_choice=text_choice or ("abstain" if text is not None else None),
                        parsed_ok=text_choice is not None if text is not None else None,
                        reason=text, seed=seed)
        self.stances.append(row)
        a.memory.append(row)

    async def _debate(self, d: Dilemma, j: int, answers: dict[int, str], bar: tqdm) -> dict[int, list[tuple[str, str]]]:
        from autogen_agentchat.agents import AssistantAgent
        from autogen_agentchat.messages import TextMessage
        from autogen_agentchat.teams import RoundRobinGroupChat

        from agents.llm.autogen_client import AgoraChatClient

        c = self.cfg.sim
        groups = debate_groups(self.graph, c.group_size, child_rng(self.cfg.seed, self.generation, self.steps,
                                                                   "debate", j))

        class _Counting(AgoraChatClient):
            async def create(self, *args: Any, **kwargs: Any):  # type: ignore[override]
                out = await super().create(*args, **kwargs)
                bar.update(1)
                return out

        async def run_group(g: int, members: list[int]) -> list[tuple[int, str]]:
            team_agents = []
            for m in members:
                a = self.citizens[m]
                client = _Counting(a.backend, seed_for_call=lambda k, m=m: self._call_seed("debate", j, m, k),
                                   max_new_tokens=c.tokens.debate, temperature=self.cfg.llm.temperature,
                                   top_p=self.cfg.llm.top_p, speaker=a.name)
                team_agents.append(AssistantAgent(a.name, model_client=client,
                                                  system_message=f"{a.worldview.persona} {prompts.DEBATE_ROLE}"))
            team = RoundRobinGroupChat(team_agents, max_turns=c.debate_rounds * len(members))
            task = prompts.debate_task(d, [(self.citizens[m].name, answers[m]) for m in members])
            result = await team.run(task=task)
            return [(int(msg.source.split("_")[1]), msg.content) for msg in result.messages
                    if isinstance(msg, TextMessage) and msg.source.startswith("agent_")]

        results = await asyncio.gather(*(run_group(g, m) for g, m in enumerate(groups)))
        said: dict[int, list[tuple[str, str]]] = {}
        for g, (members, turns) in enumerate(zip(groups, results, strict=True)):
            # rows in group order, not in the order groups finish (which a remote server makes vary)
            for t, (who, text) in enumerate(turns, start=1):
                self.transcripts.append(self._row(dilemma_id=d.id, phase="debate", group_id=g, turn=t, agent_id=who,
                                                  cluster=self.clusters[who], target_id=None, principle_id=None,
                                                  text=text, seed=self._call_seed("debate", j, who, (t - 1) // len(members))))
            lines = [(f"agent_{who}", text) for who, text in turns]
            for m in members:
                said[m] = lines
        return said

    async def _critique(self, d: Dilemma, j: int, answers: dict[int, str], bar: tqdm) -> dict[int, str]:
        c, temp, top_p = self.cfg.sim, self.cfg.llm.temperature, self.cfg.llm.top_p
        plan = []
        for a in self.citizens:
            neighbours = sorted(self.graph.neighbors(a.index)) or [i for i in range(len(self.citizens)) if i != a.index]
            critic = self.citizens[int(self.rng.choice(neighbours))]
            principle = self.constitution.critique[int(self.rng.integers(len(self.constitution.critique)))]
            plan.append((a, critic, principle))
        crit_reqs = [GenerateRequest(messages=prompts.critique_messages(d, critic.worldview, answers[a.index], p.critique),
                                     max_new_tokens=c.tokens.critique, temperature=temp, top_p=top_p,
                                     seed=self._call_seed("critique", j, a.index)) for a, critic, p in plan]
        critiques = await asyncio.gather(*(self._gen(critic.backend, [r], bar)
                                           for (_, critic, _), r in zip(plan, crit_reqs, strict=True)))
        critiques = [x[0] for x in critiques]
        rev_msgs = [prompts.revision_messages(d, a.worldview, answers[a.index], crit, p.revision)
                    for (a, _, p), crit in zip(plan, critiques, strict=True)]
        rev_reqs = [GenerateRequest(messages=m, max_new_tokens=c.tokens.revision, temperature=temp, top_p=top_p,
                                    seed=self._call_seed("revision", j, a.index)) for (a, _, _), m in zip(plan, rev_msgs, strict=True)]
        revisions = await asyncio.gather(*(self._gen(a.backend, [r], bar)
                                           for (a, _, _), r in zip(plan, rev_reqs, strict=True)))
        revisions = [x[0] for x in revisions]
        by_author = {a.index: text for (a, _, _), text in zip(plan, revisions, strict=True)}
        scores = await self._read_stances(d, "revised", bar, lambda a: ("You revised your answer to",
                                                                        [("you", by_author[a.index])]))
        out: dict[int, str] = {}
        for (a, critic, p), crit, creq, text, reading, rreq in zip(plan, critiques, crit_reqs, revisions, scores,
                                                                   rev_reqs, strict=True):
            self.transcripts.append(self._row(dilemma_id=d.id, phase="critique", group_id=None, turn=0,
                                              agent_id=critic.index, cluster=critic.worldview.cluster,
                                              target_id=a.index, principle_id=p.id, text=crit, seed=creq.seed))
            self.transcripts.append(self._row(dilemma_id=d.id, phase="revision", group_id=None, turn=1,
                                              agent_id=a.index, cluster=a.worldview.cluster, target_id=critic.index,
                                              principle_id=p.id, text=text, seed=rreq.seed))
            self._add_stance(a, d, "revised", reading, text, rreq.seed, j)
            out[a.index] = text
        return out

    def _pairs(self, answers: dict[int, str], revised: dict[int, str]) -> list[tuple[str, int, str, int, str]]:
        """(kind, author_a, response_a, author_b, response_b) pairs to judge."""
        pairs = [("revision", i, revised[i], i, answers[i]) for i in sorted(revised)]
        latest = {i: revised.get(i, answers[i]) for i in answers}
        by_cluster: dict[str, list[int]] = {}
        for i, cl in enumerate(self.clusters):
            by_cluster.setdefault(cl, []).append(i)
        if len(by_cluster) > 1:
            # One "everyone outside cluster c" list per cluster, not per pair: O(N) per step, not O(N^2).
            # rng.integers(len(x)) draws exactly what rng.choice(x) draws, without copying x to an array.
            outside = {cl: [k for k in range(len(self.citizens)) if self.clusters[k] != cl] for cl in by_cluster}
            for _ in range(self._n_cross()):
                i = int(self.rng.integers(len(self.citizens)))
                others = outside[self.clusters[i]]
                k = others[int(self.rng.integers(len(others)))]
                pairs.append(("cross_cluster", i, latest[i], k, latest[k]))
        return pairs

    def _judge_plan(self, answers: dict[int, str], revised: dict[int, str]) -> list[tuple]:
        """Who judges which pair under which principle, in which presented order (drawn from the rng)."""
        plan = []
        for kind, ia, ra, ib, rb in self._pairs(answers, revised):
            judge = self.citizens[self._draw_excluding(sorted({ia, ib}))]
            principle = self.constitution.judge[int(self.rng.integers(len(self.constitution.judge)))]
            swapped = bool(self.rng.random() < 0.5)
            plan.append((kind, ia, ra, ib, rb, judge, principle, swapped))
        return plan

    def _draw_excluding(self, excluded: list[int]) -> int:
        """A uniform citizen index outside ``excluded`` (sorted), in O(1): the same draw as
        ``rng.choice`` over the list of the others, without building that list."""
        n = len(self.citizens)
        if n <= len(excluded):
            return int(self.rng.integers(n))
        k = int(self.rng.integers(n - len(excluded)))
        for e in excluded:
            k += k >= e
        return k

    async def _judge(self, d: Dilemma, j: int, plan: list[tuple], bar: tqdm) -> None:
        c = self.cfg.sim
        score = scorer(self.judge_backend, lambda: bar.update(1))

        async def judge_one(k: int, item: tuple) -> PairReading:
            kind, ia, ra, ib, rb, judge, principle, swapped = item
            return await read_judgment(score, c.judge_reader, d, judge.worldview if c.judge_persona else None,
                                       principle.text, ra, rb, both_orders=c.debias_order, swapped=swapped,
                                       what=f"judgment {k} of {judge.name} on '{d.id}'")

        results = await asyncio.gather(*(judge_one(k, item) for k, item in enumerate(plan)))
        prompt = prompts.dilemma_text(d)
        for k, ((kind, ia, ra, ib, rb, judge, principle, swapped), reading) in enumerate(zip(plan, results, strict=True)):
            what = f"judgment {k} of {judge.name} on '{d.id}'"
            p_rev = None if reading.reversed is None else check_probability(reading.reversed, what)
            self.preferences.append(self._row(
                pref_id=f"{self.run_id}-g{self.generation}-s{self.steps}-d{j}-{k}", dilemma_id=d.id, prompt=prompt,
                response_a=ra, response_b=rb, author_a=ia, author_b=ib, cluster_a=self.clusters[ia],
                cluster_b=self.clusters[ib], pair_kind=kind, judge_id=judge.index, judge_cluster=judge.worldview.cluster,
                principle_id=principle.id, p_a=check_probability(reading.p_a, what),
                p_a_presented=check_probability(reading.presented, what), p_a_reversed=p_rev, order_swapped=swapped,
                position_flip=reading.position_flip, judge_model=self.judge_backend.name,
                constitution_version=self.constitution.tag, seed=self._call_seed("judge", j, k)))

    # -- summaries -------------------------------------------------------------------------------
    def homophily(self) -> float:
        return same_cluster_edge_share(self.graph, self.clusters)
