"""The debate's own CPU, no model: a step's groups of three autogen ``AssistantAgent``s (over ``AgoraChatClient`` and
the scripted backend, three turns each, 256 groups at once as in ``Society``) run by agora's ``round_robin`` against
the same agents run by autogen's ``RoundRobinGroupChat`` (its per-team agent runtime), in one process, alternating;
every group's messages checked equal between the two. Cheap (~20 s; quick mode ~3 s): part of ``make bench``."""

from __future__ import annotations

import asyncio
import os

import pytest

from benches.conftest import Timing, measure, record
from benches.workloads import rounds, size


@pytest.fixture(autouse=True)
def _environment(request):
    """Overrides ``benches/conftest.py``'s: no model is loaded here."""
    import platform

    request.getfixturevalue("benchmark").extra_info["environment"] = {
        "python": platform.python_version(), "cpus": os.cpu_count(), "backend": "scripted"}


def _groups(n_groups: int, team: bool) -> list[list[tuple[str, str]]]:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.messages import TextMessage
    from autogen_agentchat.teams import RoundRobinGroupChat

    from agents.llm.autogen_client import AgoraChatClient
    from agents.llm.scripted import ScriptedBackend
    from sim.society.model import MAX_TEAMS, round_robin

    backend = ScriptedBackend(record=False)

    async def one(slots: asyncio.Semaphore, g: int) -> list[tuple[str, str]]:
        async with slots:
            names = [f"agent_{3 * g + i}" for i in range(3)]
            members = [AssistantAgent(n, model_client=AgoraChatClient(backend, speaker=n), system_message=f"persona {n}")
                       for n in names]
            task = f"Debate dilemma {g}."
            said = ((await RoundRobinGroupChat(members, max_turns=3).run(task=task)).messages if team
                    else await round_robin(members, task, 3))
            return [(m.source, m.content) for m in said if isinstance(m, TextMessage)]

    async def main() -> list[list[tuple[str, str]]]:
        slots = asyncio.Semaphore(MAX_TEAMS)
        return await asyncio.gather(*(one(slots, g) for g in range(n_groups)))

    return asyncio.run(main())


def test_debate_framework_cpu(benchmark):
    n = size(1_000, 100)
    for team in (True, False):  # imports and first-call costs out of both sides' rounds
        _groups(10, team)
    outs: dict[bool, list] = {True: [], False: []}
    secs: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds(3)):  # alternating, so a change of machine load falls on both sides alike
        for team in (True, False):
            (o,), t = measure(lambda: _groups(n, team), 1)  # noqa: B023 (called at once)
            outs[team].append(o)
            secs[team].extend(t.seconds)
    team_outs, ours_outs = outs[True], outs[False]
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # the sides are timed above, alternating
    assert all(o == team_outs[0] for o in team_outs + ours_outs)  # same messages, every group, every round
    assert len(team_outs[0]) == n and all(len(g) == 4 for g in team_outs[0])  # the task, then three turns
    agora, base = Timing(tuple(secs[False])), Timing(tuple(secs[True]))
    ratio = record(benchmark, name="debate_framework", unit="groups/s", items=n, agora=agora, baseline=base,
                   baseline_is="the same agents in autogen's RoundRobinGroupChat (one agent runtime per team)",
                   ms_per_group_agora=round(1000 * agora.mean / n, 3), ms_per_group_baseline=round(1000 * base.mean / n, 3))
    assert ratio > 1.0
