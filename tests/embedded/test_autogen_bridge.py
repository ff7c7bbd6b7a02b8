import asyncio

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_core.models import SystemMessage, UserMessage

from agents.llm.autogen_client import AgoraChatClient, from_autogen
from agents.llm.scripted import ScriptedBackend


def test_conversion_merges_turns_and_maps_own_turns_to_assistant():
    msgs = [SystemMessage(content="sys"), UserMessage(content="task", source="user"),
            UserMessage(content="I say A", source="agent_1"), UserMessage(content="I say B", source="agent_2")]
    out = from_autogen(msgs, speaker="agent_2")
    assert [m.role for m in out] == ["system", "user", "assistant"]
    assert out[1].content == "task\n\nagent_1: I say A"


def test_teams_run_concurrently_and_requests_reach_the_backend_together(embedded):
    """Four 2-member teams on the real model: their requests are coalesced into shared batches."""
    batches_before, calls_before = embedded.stats.batches, embedded.stats.generate_calls

    async def team(i: int):
        members = [AssistantAgent(f"agent_{i}_{k}", model_client=AgoraChatClient(embedded, max_new_tokens=8,
                                                                                 temperature=0.0),
                                  system_message="Answer in one short sentence.") for k in range(2)]
        return await RoundRobinGroupChat(members, max_turns=2).run(task=f"Is honesty important? ({i})")

    results = asyncio.run(_all(team))
    assert all(len(r.messages) == 3 for r in results)
    calls = embedded.stats.generate_calls - calls_before
    batches = embedded.stats.batches - batches_before
    assert calls == 8
    assert batches <= 4  # 8 calls in at most 4 batches: turns of different teams share a batch


async def _all(team):
    return await asyncio.gather(*(team(i) for i in range(4)))


def test_client_returns_logprobs_when_asked(embedded):
    client = AgoraChatClient(embedded, max_new_tokens=6, temperature=0.0)
    res = asyncio.run(client.create([UserMessage(content="Say yes.", source="user")],
                                    extra_create_args={"logprobs": True, "top_logprobs": 2}))
    assert isinstance(res.content, str) and res.logprobs
    assert all(lp.logprob <= 0 and len(lp.top_logprobs) == 2 for lp in res.logprobs)


def test_per_agent_seeds_advance_per_call():
    backend = ScriptedBackend()
    client = AgoraChatClient(backend, seed_for_call=lambda k: 100 + k)
    for _ in range(3):
        asyncio.run(client.create([UserMessage(content="hi", source="user")]))
    assert [r.seed for r in backend.seen_generate] == [100, 101, 102]
