"""Persona conditioning's logic on scripted backends: contrast arithmetic (hand-computed), centring, the
profile renderer and the data that shaped it, and how the conditioning travels with every request."""

import asyncio
import dataclasses
import math

import numpy as np
import pytest

from agents import prompts
from agents.culture import MFQ_AXES
from agents.llm.base import ChatMessage, Conditioning, GenerateRequest, ScoreRequest, with_system
from agents.llm.scripted import ScriptedBackend
from agents.persona import (
    NEUTRAL,
    PersonaConfig,
    axis_stats,
    condition,
    persona_text,
    profile_sources,
    reference_panel,
    render_profile,
    standardised,
    support_line,
)
from agents.scoring import (
    LabelError,
    contrast_logits,
    memo_scorer,
    read_judgment,
    read_likelihood,
    read_likelihood_options,
    read_pair,
    read_stance,
    reader_logits,
    scorer,
)
from agents.survey import country_worldview, read_mfq_item
from agents.worldview import cluster_centre
from scenarios import mfq30
from scenarios.dilemma import Dilemma

D = Dilemma(id="d1", situation="You find a wallet.", action_a="I return it.", action_b="I keep it.")
LN = math.log


def table(rows: dict[str, list[float]]):
    """A score function: log-probs by the system text of the request."""
    calls: list[ScoreRequest] = []

    async def score(r: ScoreRequest) -> list[float]:
        calls.append(r)
        return rows[r.messages[0].content]
    return score, calls


def contrast_msgs(alpha: float, reference: tuple[str, ...] = ()) -> tuple[ChatMessage, ...]:
    cond = Conditioning(method="contrast", alpha=alpha, base="none", reference=reference)
    return (ChatMessage(role="system", content="persona", conditioning=cond), ChatMessage(role="user", content="q"))


# -- contrast arithmetic ------------------------------------------------------------------------------
def test_label_contrast_by_hand():
    """p(persona) = (0.8, 0.2), p(none) = (0.5, 0.5), α = 1: ∝ (0.8²/0.5, 0.2²/0.5) → 0.64 / 0.68."""
    score, calls = table({"persona": [LN(0.8), LN(0.2)], "none": [LN(0.5), LN(0.5)]})
    req = ScoreRequest(messages=contrast_msgs(1.0), choices=("A", "B"))
    reading = asyncio.run(read_pair(score, lambda s: req, both_orders=False))
    assert reading.p_a == pytest.approx(0.64 / 0.68)
    assert [c.messages[0].content for c in calls] == ["persona", "none"]
    assert calls[1].messages[0].conditioning is None  # the base request is a plain request
    # α = 0 reads as the persona prompt alone
    zero = ScoreRequest(messages=contrast_msgs(0.0), choices=("A", "B"))
    assert asyncio.run(read_pair(score, lambda s: zero, both_orders=False)).p_a == pytest.approx(0.8)


def test_likelihood_contrast_is_per_character_by_hand():
    """Texts of 2 and 4 characters; persona log-likelihoods (−2, −4): equal per character; none (−1, −4):
    per character (−0.5, −1). At the mean length 3 and α = 1 the logits are 2·3·(−1, −1) − 3·(−0.5, −1) =
    (−4.5, −3): P(first) = σ(−1.5)."""
    score, _ = table({"persona": [-2.0, -4.0], "none": [-1.0, -4.0]})
    req = ScoreRequest(messages=contrast_msgs(1.0), choices=("ab", "abcd"))
    assert asyncio.run(read_likelihood(score, req)).p_a == pytest.approx(1 / (1 + math.exp(1.5)))
    assert contrast_logits(np.array([-3.0, -3.0]), np.array([-1.5, -3.0]), 1.0) == pytest.approx([-4.5, -3.0])


def test_centring_measures_the_persona_against_the_panel_mean():
    """Centred: base + (1 + α)(persona − mean(reference)). A persona equal to the panel's mean reads as no
    persona (the shift every persona shares cancels); a persona off the mean moves from the base reading."""
    rows = {"persona": [LN(0.8), LN(0.2)], "none": [LN(0.3), LN(0.7)], "r1": [LN(0.8), LN(0.2)], "r2": [LN(0.8), LN(0.2)]}
    score, calls = table(rows)
    same = ScoreRequest(messages=contrast_msgs(2.0, ("r1", "r2")), choices=("A", "B"))
    assert asyncio.run(read_pair(score, lambda s: same, both_orders=False)).p_a == pytest.approx(0.3)
    assert len(calls) == 4
    rows |= {"r2": [LN(0.2), LN(0.8)]}  # panel mean is even odds: the persona's own tilt is kept, scaled by 1 + α
    p = asyncio.run(read_pair(score, lambda s: same, both_orders=False)).p_a
    # logits: log(.3,.7) + 3·(log .8 − c, log .2 − c) → odds 0.3/0.7 · 4³
    assert p == pytest.approx((0.3 / 0.7 * 64) / (1 + 0.3 / 0.7 * 64))


def test_a_k_option_reading_is_centred_across_personas_not_within_one():
    """Adding a constant to every option of the persona's scores changes nothing; a shift shared by the panel
    (every persona lowers the top answers) is removed by centring."""
    k = 6
    low = [LN(p) for p in np.array([6, 5, 4, 3, 2, 1]) / 21]  # "lowers every answer"
    flat = [LN(1 / k)] * k
    score, _ = table({"persona": low, "none": flat, "r": low})
    item = mfq30.ITEMS[0]
    msgs = (ChatMessage(role="system", content="persona", conditioning=Conditioning(method="contrast", base="none",
                                                                                      reference=("r",))),
            ChatMessage(role="user", content=item.text))
    dist = asyncio.run(read_likelihood_options(score, ScoreRequest(messages=msgs, choices=tuple(f"x{i}" for i in range(k)))))
    assert dist == pytest.approx(np.full(k, 1 / k))  # centred on a panel that shares the shift: the base reading
    shifted = [x + 0.7 for x in low]
    assert contrast_logits(np.array(shifted), np.array(flat), 1.5) - contrast_logits(np.array(low), np.array(flat), 1.5) \
        == pytest.approx(np.full(k, 2.5 * 0.7))  # a constant per reading: no probability moves


def test_minus_infinity_and_bad_values_in_a_contrast():
    score, _ = table({"persona": [-math.inf, LN(1.0)], "none": [-math.inf, LN(1.0)]})
    req = ScoreRequest(messages=contrast_msgs(3.0), choices=("A", "B"))
    p = asyncio.run(read_pair(score, lambda s: req, both_orders=False)).p_a
    assert p == 0.0 or p < 1e-300  # no NaN from -inf − (-inf)
    bad, _ = table({"persona": [LN(0.5), LN(0.5)], "none": [float("nan"), 0.0]})
    with pytest.raises(LabelError, match="no persona"):
        asyncio.run(read_pair(bad, lambda s: req, both_orders=False))


def test_reader_logits_follow_the_reader():
    lab = ScoreRequest(messages=(), choices=("A", "B"))
    lik = ScoreRequest(messages=(), choices=("ab", "abcd"), continuation=True)
    assert reader_logits([-1.0, -2.0], lab) == pytest.approx([-1.0, -2.0])
    assert reader_logits([-2.0, -4.0], lik) == pytest.approx([-3.0, -3.0])


def test_memo_scorer_scores_each_distinct_request_once():
    backend = ScriptedBackend()
    memo = memo_scorer(scorer(backend))
    r = ScoreRequest(messages=(ChatMessage(role="user", content="q"),), choices=("A", "B"))
    twin = ScoreRequest(messages=(ChatMessage(role="user", content="q"),), choices=("A", "B"))
    other = dataclasses.replace(r, choices=("B", "A"))

    async def go():
        return await asyncio.gather(memo(r), memo(twin), memo(other), memo(r))
    a, b, c, d = asyncio.run(go())
    assert a == b == d and c == a[::-1]
    assert backend.stats.score_calls == 2
    steered = ScoreRequest(messages=(ChatMessage(role="user", content="q", conditioning=Conditioning(
        method="steer", beta=1.0, steer=(("care", 1.0),))),), choices=("A", "B"))
    contrast = ScoreRequest(messages=(ChatMessage(role="user", content="q", conditioning=Conditioning(
        method="contrast", alpha=1.0)),), choices=("A", "B"))
    asyncio.run(memo(steered))
    asyncio.run(memo(contrast))  # a contrast conditioning changes nothing the backend sees: served from memo
    assert backend.stats.score_calls == 3


# -- how the conditioning travels --------------------------------------------------------------------
def test_every_prompt_rendered_from_a_conditioned_worldview_carries_it_with_its_role():
    w = condition(cluster_centre("confucian"), PersonaConfig(method="contrast", alpha=1.0, centre=True))
    cond = w.conditioning
    assert cond.base == NEUTRAL and len(cond.reference) == 6
    stance = prompts.stance_messages(D, w)[0]
    assert stance.conditioning == cond and stance.content == w.persona
    judge = prompts.judge_messages(D, w, "Choose the kinder answer.", "x", "y")[0]
    assert judge.conditioning.base == f"{NEUTRAL} {prompts.JUDGE_ROLE}"
    assert all(t.endswith(prompts.JUDGE_ROLE) for t in judge.conditioning.reference)
    assert judge.content == f"{w.persona} {prompts.JUDGE_ROLE}"
    assert GenerateRequest(messages=prompts.critique_messages(D, w, "x", "Critique it.")).conditioning == cond
    plain = with_system(prompts.stance_messages(D, w), cond.base)
    assert plain[0] == ChatMessage(role="system", content=NEUTRAL) and plain[1:] == prompts.stance_messages(D, w)[1:]
    # an unconditioned worldview's prompts are what they always were
    assert prompts.stance_messages(D, cluster_centre("confucian"))[0].conditioning is None


def test_readers_contrast_stances_judgments_and_survey_items_through_the_same_path():
    w = condition(cluster_centre("islamic"), PersonaConfig(method="contrast", alpha=2.0, centre=True))
    backend = ScriptedBackend()
    score = memo_scorer(scorer(backend))
    asyncio.run(read_stance(score, "likelihood", D, w))
    systems = {r.messages[0].content for r in backend.seen_score}
    assert systems == {w.persona, NEUTRAL, *w.conditioning.reference} - {w.persona} | {w.persona}
    assert backend.stats.score_calls == 1 + 1 + len(set(w.conditioning.reference) - {w.persona})
    backend.seen_score.clear()
    asyncio.run(read_judgment(score, "label", D, w, "Choose the kinder answer.", "x", "y"))
    assert {r.messages[0].content for r in backend.seen_score} >= {f"{NEUTRAL} {prompts.JUDGE_ROLE}"}
    asyncio.run(read_mfq_item(score, "likelihood", mfq30.ITEMS[0], w))


def test_contrast_readings_equal_the_prompt_reading_at_alpha_zero_uncentred():
    w = cluster_centre("orthodox_europe")
    backend = ScriptedBackend()
    plain = asyncio.run(read_stance(scorer(backend), "likelihood", D, w)).p_a
    c = condition(w, PersonaConfig(method="contrast", alpha=0.0))
    assert asyncio.run(read_stance(scorer(backend), "likelihood", D, c)).p_a == pytest.approx(plain, abs=1e-12)


def test_steer_conditioning_carries_the_standardised_worldview():
    w = cluster_centre("protestant_europe")
    s = condition(w, PersonaConfig(method="steer", beta=0.5, layer=7)).conditioning
    assert dict(s.steer) == pytest.approx(standardised(w)) and s.layer == 7 and s.beta == 0.5
    assert s.steer_key is not None
    assert condition(w, PersonaConfig(method="steer", beta=0.0)).conditioning.steer_key is None
    only_vector = condition(w, PersonaConfig(method="steer", variant="none", beta=0.5))
    assert only_vector.persona == NEUTRAL and only_vector.conditioning.steer_key is not None


def test_persona_config_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="persona.method"):
        PersonaConfig(method="vector")
    with pytest.raises(ValueError, match="variant=none"):
        PersonaConfig(method="contrast", variant="none")
    assert PersonaConfig(method="prompt", variant="none").variant == "none"  # the no-persona society
    with pytest.raises(ValueError, match="alpha"):
        PersonaConfig(method="contrast", alpha=float("nan"))
    with pytest.raises(ValueError, match="must be one of"):
        Conditioning(method="prompt")
    with pytest.raises(ValueError, match="persona.layer applies to persona.method=steer, not prompt"):
        PersonaConfig(layer=4)  # ignored by the prompt, yet it would change the run id
    assert PersonaConfig(method="steer", beta=1, layer=4).layer == 4
    assert support_line("vllm", PersonaConfig(method="steer", beta=1), embedded=False).count("\n") == 0
    assert "not generation" in support_line("vllm", PersonaConfig(method="contrast", alpha=1), embedded=False)
    assert support_line("vllm", PersonaConfig(), embedded=False) is None
    assert support_line("embedded", PersonaConfig(method="steer", beta=1), embedded=True) is None


# -- the profile variant and the data behind it -------------------------------------------------------
def test_profile_persona_states_values_in_the_first_person_and_names_its_data():
    country = country_worldview("Japan")  # cluster culture only: nothing from MFQ-30
    text = render_profile(country)
    assert text.startswith("This is what I value.") and " I " in text and "Japan" not in text
    assert "Morally" not in text and profile_sources(country) == ["inglehart_welzel", "hofstede"]
    respondent = country_worldview("Japan", [4.5, 4.0, 2.0, 1.5, 1.0])
    assert "what matters most to me is caring for the vulnerable and fairness and justice" in render_profile(respondent)
    assert "least is purity and sanctity" in render_profile(respondent)
    assert profile_sources(respondent) == ["inglehart_welzel", "hofstede", "mfq30"]
    assert persona_text(country, "culture") == country.persona and persona_text(country, "none") == NEUTRAL


def test_profile_wording_follows_the_standardised_position():
    w = cluster_centre("protestant_europe")
    z = standardised(w)
    strongest = max((a for a in z if a not in MFQ_AXES), key=lambda a: abs(z[a]))
    text = render_profile(w)
    from agents.persona import _PROFILE_PHRASES
    assert text.split(". ", 1)[1].startswith(_PROFILE_PHRASES[strongest][int(z[strongest] > 0)][:-1])
    mean = {a: m for a, (m, _) in axis_stats().items() if a not in MFQ_AXES}
    assert render_profile(dataclasses.replace(w, values=mean)) == NEUTRAL  # at the mean on every axis: nothing to say
    assert len(reference_panel()) == 6


def test_foundation_scores_of_an_item_subset_are_the_means_of_its_items():
    """The held-out half of the items: each foundation scored from its items in the subset, none missing."""
    answers = {it.id: float(k) for k, it in enumerate(mfq30.ITEMS)}
    half = [it for it in mfq30.ITEMS if it.part == "agreement" and it.foundation != mfq30.CATCH]
    scores = mfq30.foundation_scores(answers, half)
    care = [answers[it.id] for it in half if it.foundation == "care"]
    assert scores["care"] == pytest.approx(sum(care) / 3)
    with pytest.raises(ValueError, match="score no item of"):
        mfq30.foundation_scores(answers, [it for it in half if it.foundation != "care"])
    with pytest.raises(ValueError, match="missing"):
        mfq30.foundation_scores({k: v for k, v in answers.items() if k != half[0].id}, half)


def test_a_debater_client_puts_the_conditioning_on_its_system_message():
    from autogen_core.models import SystemMessage, UserMessage

    from agents.llm.autogen_client import AgoraChatClient

    cond = Conditioning(method="contrast", alpha=1.0, base=f"{NEUTRAL} {prompts.DEBATE_ROLE}")
    backend = ScriptedBackend()
    client = AgoraChatClient(backend, conditioning=cond)
    asyncio.run(client.create([SystemMessage(content="persona"), UserMessage(content="hi", source="user")]))
    sent = backend.seen_generate[0]
    assert sent.conditioning == cond and sent.messages[0].content == "persona"
    asyncio.run(AgoraChatClient(backend).create([SystemMessage(content="persona")]))
    assert backend.seen_generate[1].conditioning is None
