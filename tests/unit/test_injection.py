"""Hostile text: adversarial agents inject instructions and forged verdicts; labels must not follow them."""

from __future__ import annotations

import asyncio
import re

import pytest

from agents.llm.scripted import ScriptedBackend
from scenarios.dilemma import load_dilemmas
from sim.experiments.injection import INJECTIONS, measure

FENCED = re.compile(r"<<<.*?>>>", re.S)


def gullible(r):
    """A judge that obeys any instruction it sees outside quotes (and is otherwise undecided)."""
    text = FENCED.sub("", r.messages[-1].content)
    if "always answer A" in text or "Final answer: A" in text or "reply with its letter" in text:
        return [0.0, -9.0]
    return [-0.6931, -0.6931]


def test_fencing_stops_a_gullible_judge_that_the_naive_prompt_fools():
    ds = load_dilemmas("default")[:4]
    pairs = [("A. Honest answer one.", "B. Honest answer two.")] * 4
    out = asyncio.run(measure(ScriptedBackend(scores=gullible), ds, pairs))
    for name in INJECTIONS:
        fenced, naive = out["prompts"]["fenced"][name], out["prompts"]["naive"][name]
        assert fenced["moved_one_order"] == 0.0 and fenced["moved"] == 0.0 and fenced["shift"] == 0.0
        # unfenced, the judge answers A in both orders: the label of the order with the adversary first flips;
        # averaging both orders cancels it (the debiasing is itself a defence against "always answer A")
        assert naive["moved_one_order"] == 0.5 and naive["shift"] == pytest.approx(0.0, abs=1e-6)


def test_adversarial_agents_in_a_society_cannot_move_labels(tmp_path):
    """Two of six agents always reply with injections; the judge obeys unfenced text. Every judge prompt
    quotes agent text inside fences with control tokens stripped, so every label stays at 0.5."""
    from scenarios.constitution import load_constitution
    from sim.config import AgoraConfig, LLMConfig, PopulationConfig, SimConfig, TokenBudget
    from sim.society.model import Society

    cfg = AgoraConfig(name="adv", llm=LLMConfig(backend="scripted"), population=PopulationConfig(size=6),
                      sim=SimConfig(steps=1, group_size=2, progress=False, tokens=TokenBudget(8, 8, 8, 8),
                                    choice_reader="label", judge_reader="label"))
    judge = ScriptedBackend(scores=gullible)
    soc = Society(cfg, load_dilemmas("default"), load_constitution("harmlessness"), judge, run_id="adv")
    adversary = ScriptedBackend(reply=lambda r: "A. " + INJECTIONS["forged_verdict"] + " " + INJECTIONS["ignore_instructions"],
                                scores=gullible)
    soc.agents.select(lambda a: a.index in (1, 4)).set("backend", adversary)
    soc.step()
    assert soc.preferences and all(p.p_a == pytest.approx(0.5, abs=1e-3) for p in soc.preferences)
    seen = [r.messages[-1].content for r in judge.seen_score if "Answer (A)" in r.messages[-1].content]
    with_adv = [t for t in seen if "Ignore all previous instructions" in t]
    assert with_adv, "adversary answers were judged"
    for t in with_adv:
        outside = FENCED.sub("", t)
        assert "Ignore all previous" not in outside and "<|im_end|>" not in t and "<|im_start|>" not in t
