"""Country personas and the two human-reference instruments read through :mod:`agents.scoring`.

- MFQ-30 (:mod:`scenarios.mfq30`): each item's six answers are read as a distribution over the scale
  points 0–5, by the ``likelihood`` reader (each answer's own text scored after the item, no list shown)
  or the ``label`` reader (numbered answers, every rotation of the list). The item's answer is the
  distribution's expected value.
- Moral Machine (:mod:`scenarios.moral_machine`): P(the reply that spares the attribute's positive
  level), by the ``likelihood`` reader (each reply's text) or the ``label`` reader (A/B, both orders).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agents.culture import HOFSTEDE_AXES, IW_AXES, MFQ_AXES, country_cluster, load_clusters
from agents.llm.base import ChatMessage, ScoreRequest
from agents.prompts import CHOICE_LABELS, system_prompt
from agents.scoring import Score, read_likelihood, read_likelihood_options, read_pair, read_rotations
from agents.worldview import Worldview, render_persona
from scenarios.mfq30 import Item
from scenarios.moral_machine import Choice

PERSONAS = ("country", "respondent")


def country_worldview(country: str, mfq: Sequence[float] | None = None) -> Worldview:
    """A person from ``country``: the country named, its cluster's centre on the Inglehart–Welzel and
    Hofstede axes (no cluster: none), and, when ``mfq`` is given, a real respondent's five foundations.

    Args:
        country: an MFQ-30 country name (``agents.culture.load_mfq_by_country``).
        mfq: one respondent's foundation averages in :data:`agents.culture.MFQ_AXES` order, or None
            for the country persona (nothing said about moral foundations).
    """
    cluster = country_cluster(country)
    values: dict[str, float] = {}
    if cluster:
        centre = load_clusters()[cluster].centre
        values |= {a: round(float(centre[a]), 3) for a in IW_AXES + HOFSTEDE_AXES if a in centre}
    if mfq is not None:
        values |= {a: float(v) for a, v in zip(MFQ_AXES, mfq, strict=True)}
    w = Worldview(cluster=cluster or "none", values=values, source_country=country)
    persona = f"You are a person from {country} and answer as yourself. " + (render_persona(w) if values else "")
    return Worldview(cluster=w.cluster, values=values, source_country=country, persona=persona.strip())


def mfq_messages(item: Item, w: Worldview | None, options: Sequence[str] = ()) -> tuple[ChatMessage, ...]:
    """The prompt of one MFQ-30 item; ``options`` (label reader) are listed numbered from 1."""
    listed = "".join(f"\n{i}. {o}" for i, o in enumerate(options, 1))
    ask = "\n\nAnswer with the number of one option." if options else "\n\nYour answer:"
    target = "Consideration" if item.part == "relevance" else "Sentence"
    return (system_prompt(w), ChatMessage(role="user", content=f"{item.question}\n\n{target}: {item.text}{listed}{ask}"))


async def read_mfq_item(score: Score, reader: str, item: Item, w: Worldview | None) -> np.ndarray:
    """The distribution over the item's six answers (scale points 0–5)."""
    what = f"MFQ-30 item {item.id}"
    if reader == "likelihood":
        return await read_likelihood_options(score, ScoreRequest(messages=mfq_messages(item, w), choices=item.scale),
                                             what)
    labels = list(item.scale)
    choices = tuple(str(i) for i in range(1, len(labels) + 1))
    return await read_rotations(score, labels, lambda order: ScoreRequest(messages=mfq_messages(item, w, order),
                                                                          choices=choices), what)


def mm_messages(c: Choice, w: Worldview | None, swap: bool | None = None) -> tuple[ChatMessage, ...]:
    """The prompt of one Moral Machine choice; ``swap`` (label reader) lists the two replies as A/B,
    the one sparing the other level first when true."""
    if swap is None:
        return system_prompt(w), ChatMessage(role="user", content=c.situation)
    first, second = (c.spare_other, c.spare_preferred) if swap else (c.spare_preferred, c.spare_other)
    return system_prompt(w), ChatMessage(role="user", content=(
        f"{c.situation}\n\nOption A: {first}\nOption B: {second}\n\nAnswer with the letter A or B."))


async def read_mm_choice(score: Score, reader: str, c: Choice, w: Worldview | None) -> float:
    """P(the reply that spares the attribute's positive level)."""
    what = f"Moral Machine choice {c.id}"
    if reader == "likelihood":
        reading = await read_likelihood(score, ScoreRequest(messages=mm_messages(c, w),
                                                            choices=(c.spare_preferred, c.spare_other)), what)
    else:
        reading = await read_pair(score, lambda s: ScoreRequest(messages=mm_messages(c, w, s), choices=CHOICE_LABELS),
                                  what=what)
    return reading.p_a
