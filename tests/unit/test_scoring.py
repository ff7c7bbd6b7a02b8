"""The one scoring module: normalisation, order undoing, rotations, the likelihood reader, and the
checks every value passes before it becomes a label."""

import asyncio
import math

import numpy as np
import pytest

from agents.llm.base import ChatMessage, ScoreRequest
from agents.llm.scripted import ScriptedBackend
from agents.scoring import (
    LabelError,
    check_probability,
    distribution,
    likelihood_p_first,
    p_first,
    read_likelihood,
    read_pair,
    read_rotations,
    scorer,
    undo_order,
)

MSG = (ChatMessage(role="user", content="?"),)


def test_p_first_normalises_over_the_two_labels():
    assert p_first([-1.0, -1.0]) == 0.5
    assert p_first([0.0, -1000.0]) == pytest.approx(1.0)
    assert p_first([-2.0, -1.0]) == pytest.approx(1 / (1 + math.e))
    assert p_first([0.0, -math.inf]) == 1.0


@pytest.mark.parametrize("bad", [[math.nan, -1.0], [-1.0], [-1.0, -2.0, -3.0], [0.5, -1.0], ["-1", -1.0], [None, -1.0],
                                 [True, -1.0], [-math.inf, -math.inf], "AB", None])
def test_values_that_are_not_log_probabilities_never_become_labels(bad):
    with pytest.raises(LabelError) as err:
        p_first(bad, "judge 3")
    assert str(err.value).startswith("judge 3:") and "\n" not in str(err.value)


def test_distribution_over_k_options():
    d = distribution([math.log(0.2), math.log(0.3), math.log(0.5)])
    assert d == pytest.approx([0.2, 0.3, 0.5])
    with pytest.raises(LabelError):
        distribution([math.nan, 0.0, -1.0])


@pytest.mark.parametrize("p", [math.nan, -0.1, 1.5, None, "0.5", math.inf])
def test_check_probability_refuses_what_is_not_one(p):
    with pytest.raises(LabelError):
        check_probability(p, "stance")
    assert check_probability(0.25, "stance") == 0.25


def test_undo_order():
    assert undo_order(0.8, False) == 0.8 and undo_order(0.8, True) == pytest.approx(0.2)


def first_letter_bias(r: ScoreRequest) -> list[float]:
    """Prefers the first-named option whatever it is: the pure position bias a 135M model shows."""
    return [-0.1, -2.5]


def content_reader(r: ScoreRequest) -> list[float]:
    """Prefers whichever position holds 'good'."""
    first_is_good = r.messages[-1].content.startswith("good")
    return [-0.2, -2.0] if first_is_good else [-2.0, -0.2]


def render(swap: bool) -> ScoreRequest:
    return ScoreRequest(messages=(ChatMessage(role="user", content="bad then good" if swap else "good then bad"),),
                        choices=("A", "B"))


@pytest.mark.parametrize("swapped", [False, True])
def test_read_pair_undoes_the_order_so_content_decides(swapped):
    r = asyncio.run(read_pair(scorer(ScriptedBackend(scores=content_reader)), render, swapped=swapped))
    assert r.p_a == pytest.approx(1 / (1 + math.exp(-1.8)))  # option a ("good") wins in both orders
    assert r.presented == pytest.approx(r.reversed) and r.position_flip is False
    assert len(r.first_shown) == 2


def test_read_pair_averages_position_bias_away_and_flags_it():
    r = asyncio.run(read_pair(scorer(ScriptedBackend(scores=first_letter_bias)), render))
    assert r.p_a == pytest.approx(0.5) and r.position_flip is True
    one = asyncio.run(read_pair(scorer(ScriptedBackend(scores=first_letter_bias)), render, both_orders=False))
    assert one.p_a == pytest.approx(p_first([-0.1, -2.5])) and one.reversed is None and one.position_flip is None


def test_likelihood_compares_per_character_not_summed():
    short, long = "I stop.", "I carefully help the person who is hurt, then call for help."
    # The long text has the lower sum but the higher per-character log-likelihood.
    lp_short, lp_long = -0.8 * len(short), -0.5 * len(long)
    assert lp_long < lp_short
    p = likelihood_p_first([lp_long, lp_short], (long, short))
    assert p > 0.5
    assert p == pytest.approx(1 / (1 + math.exp(-(len(short) + len(long)) / 2 * 0.3)))


def test_read_likelihood_scores_each_text_as_a_whole_continuation():
    seen: list[ScoreRequest] = []

    def per_char(r: ScoreRequest) -> list[float]:
        seen.append(r)
        return [-0.2 * len(r.choices[0]), -0.6 * len(r.choices[1])]

    req = ScoreRequest(messages=MSG, choices=("I help.", "I walk away from them."))
    r = asyncio.run(read_likelihood(scorer(ScriptedBackend(scores=per_char)), req))
    assert r.p_a > 0.99 and r.reversed is None and r.position_flip is None
    assert seen[0].continuation  # a server backend must score the whole text, not a first token


def test_read_rotations_cancels_position_and_keeps_content():
    labels = ["x", "y", "z"]

    def prefers_first(r: ScoreRequest) -> list[float]:
        return [0.0, -3.0, -3.0]

    def prefers_y(r: ScoreRequest) -> list[float]:
        order = r.messages[0].content.split(",")
        return [0.0 if name == "y" else -3.0 for name in order]

    render_k = lambda order: ScoreRequest(messages=(ChatMessage(role="user", content=",".join(order)),),  # noqa: E731
                                          choices=("1", "2", "3"))
    flat = asyncio.run(read_rotations(scorer(ScriptedBackend(scores=prefers_first)), labels, render_k))
    assert flat == pytest.approx(np.full(3, 1 / 3))
    peaked = asyncio.run(read_rotations(scorer(ScriptedBackend(scores=prefers_y)), labels, render_k))
    assert peaked.argmax() == 1 and peaked[1] > 0.8
