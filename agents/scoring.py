"""Readings: the one home of how a label or a choice is read from a backend's option scores.

Every caller (society stances and judges, ``agora-eval``, the calibration gate, the ablation rater,
the pluralism judge, the injection study) reads through here, so a fix reaches all of them.

Two readers of a choice between two options:

- ``label``: the prompt lists the options as A/B and asks for the letter; P(a) is the letter tokens'
  probability normalised over the pair (Constitutional AI's method). Right for capable models; on a
  135M model nearly all of it is position bias.
- ``likelihood``: each option's own text is scored as the continuation of a prompt that does not list
  the options, and compared by log-likelihood per character (lm-evaluation-harness's ``acc_norm``).
  No option is shown first, so there is no order to undo.

Both orders are read and averaged wherever an order exists (:func:`read_pair`); K options are read in
every rotation (:func:`read_rotations`). Every value from a backend is checked here as it is read:
a real number, not NaN, not above 0 beyond rounding, one per option (:func:`check_logprobs`).

A request whose persona carries a ``contrast`` conditioning (``agents/persona.py``) is read by every
reader from contrasted logits (:func:`conditioned_logits`): the request is scored with the persona,
with the no-persona system text and, when centred, under each reference persona; each scoring is
checked and put on the reader's logit scale (:func:`reader_logits`), then combined by
:func:`contrast_logits`. Two or more scorings on any backend with log-probabilities; wrap the score
function in :func:`memo_scorer` so readings that share a request (every agent's no-persona and
reference scorings of one item) are scored once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from agents import prompts
from agents.llm.base import BackendError, ChatMessage, LLMBackend, ScoreRequest, with_system
from agents.worldview import Worldview
from scenarios.dilemma import Dilemma

READERS = ("label", "likelihood")
_MAX_LOGPROB = 1e-3  # a log-probability above 0 by more than rounding is not one


class LabelError(BackendError):
    """A backend's scores cannot become a label (NaN, missing option, not a log-probability)."""


def check_logprobs(values: Sequence[object], n: int, what: str = "scores") -> list[float]:
    """``values`` as ``n`` floats that are log-probabilities (``-inf`` allowed, not for all), or a one-line error."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != n:
        raise LabelError(f"{what}: expected {n} log-probabilities, got {values!r:.120}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise LabelError(f"{what}: a log-probability is {type(v).__name__} {v!r:.40}, not a number")
        x = float(v)
        if math.isnan(x) or x > _MAX_LOGPROB:
            raise LabelError(f"{what}: {x!r} is not a log-probability")
        out.append(x)
    if all(x == -math.inf for x in out):
        raise LabelError(f"{what}: every option has probability 0")
    return out


def p_first(logprobs: Sequence[float], what: str = "scores") -> float:
    """P(first of two options), normalised over the pair."""
    a, b = check_logprobs(logprobs, 2, what)
    m = max(a, b)
    ea, eb = math.exp(a - m), math.exp(b - m)
    return ea / (ea + eb)


def distribution(logprobs: Sequence[float], what: str = "scores") -> np.ndarray:
    """Probabilities of K options, normalised over them."""
    x = np.asarray(check_logprobs(logprobs, len(logprobs), what), float)
    e = np.exp(x - x.max())
    return e / e.sum()


def undo_order(p_first_shown: float, swapped: bool) -> float:
    """P(option a) from P(first shown): when ``swapped``, option b was shown first."""
    return 1 - p_first_shown if swapped else p_first_shown


def per_char(logprobs: Sequence[float], texts: Sequence[str], what: str = "scores") -> list[float]:
    """Log-likelihood per character of each option's text (``acc_norm``'s normalisation)."""
    lps = check_logprobs(logprobs, len(texts), what)
    return [lp / max(len(t), 1) for lp, t in zip(lps, texts, strict=True)]


def likelihood_p_first(logprobs: Sequence[float], texts: Sequence[str], what: str = "scores") -> float:
    """P(first of two texts) from their per-character log-likelihoods, put back on the scale of a
    text of the pair's mean length: ``σ(L̄·(ℓ_a/c_a − ℓ_b/c_b))``. Its sign is ``acc_norm``'s choice;
    its size is how sure the model is at equal length (a raw per-character gap of 0.1 nats would
    otherwise read as a near-coin-flip P of 0.52)."""
    a, b = per_char(logprobs, texts, what)
    scale = (len(texts[0]) + len(texts[1])) / 2
    z = scale * (a - b)
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def likelihood_distribution(logprobs: Sequence[float], texts: Sequence[str], what: str = "scores") -> np.ndarray:
    """Probabilities of K texts from their per-character log-likelihoods at the texts' mean length,
    ``softmax(L̄·ℓ_k/c_k)``: :func:`likelihood_p_first` for K options (equal to it at K = 2)."""
    scaled = np.asarray(per_char(logprobs, texts, what), float) * (sum(len(t) for t in texts) / len(texts))
    e = np.exp(scaled - scaled.max())
    return e / e.sum()


# A log-probability of -inf (allowed for some options) is floored before contrast arithmetic, where
# (1 + a)·x − a·y would turn -inf − (-inf) into NaN; e^-1e4 is 0 at any precision a reading uses.
_FLOOR = -1e4


def reader_logits(logprobs: Sequence[float], request: ScoreRequest, what: str = "scores") -> np.ndarray:
    """The logits a reader's probabilities are the softmax of: the checked log-probabilities (label
    readings), or, for a ``continuation`` request (likelihood readings), each option's log-likelihood per
    character times the options' mean length (:func:`likelihood_distribution`'s scale)."""
    if request.continuation:
        texts = request.choices
        x = np.asarray(per_char(logprobs, texts, what), float) * (sum(len(t) for t in texts) / len(texts))
    else:
        x = np.asarray(check_logprobs(logprobs, len(request.choices), what), float)
    return np.maximum(x, _FLOOR)


def contrast_logits(persona: np.ndarray, base: np.ndarray, alpha: float,
                    reference: np.ndarray | None = None) -> np.ndarray:
    """Context-aware decoding's combination of one reading's option logits (pure arithmetic).

    Uncentred: ``(1 + α)·persona − α·base`` (Shi et al. 2023). Centred on a reference panel (``R × K``):
    ``base + (1 + α)·(persona − mean(reference))``: the persona's effect is measured against the panel's
    mean rather than against no persona, so the part every persona shares cancels and the panel's mean
    reading is the no-persona one. A constant added to all K logits changes no probability, so this
    across-persona centring is the only centring a K-option reading has.
    """
    persona, base = np.asarray(persona, float), np.asarray(base, float)
    if reference is not None and len(reference):
        return base + (1 + alpha) * (persona - np.asarray(reference, float).mean(axis=0))
    return (1 + alpha) * persona - alpha * base


def softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, float)
    e = np.exp(x - x.max())
    return e / e.sum()


def contrasted(request: ScoreRequest) -> bool:
    """Whether ``request``'s persona asks for contrast readings."""
    c = request.conditioning
    return c is not None and c.method == "contrast"


async def conditioned_logits(score: Score, request: ScoreRequest, what: str = "scores") -> np.ndarray:
    """``request``'s option logits (:func:`reader_logits`), contrasted when its persona asks for it: scored
    with the persona, with the no-persona system text and under each reference persona, concurrently."""
    c = request.conditioning
    if c is None or c.method != "contrast":
        return reader_logits(await score(request), request, what)
    others = [dataclasses.replace(request, messages=with_system(request.messages, t)) for t in (c.base, *c.reference)]
    got = await asyncio.gather(score(request), *(score(r) for r in others))
    persona, base, *ref = (reader_logits(g, request, f"{what} ({who})") for g, who in
                           zip(got, ("persona", "no persona", *(f"reference {k}" for k in range(len(c.reference)))),
                               strict=True))
    return contrast_logits(persona, base, c.alpha, np.stack(ref) if ref else None)


async def option_probs(score: Score, request: ScoreRequest, what: str = "scores") -> np.ndarray:
    """Probabilities of ``request``'s options as its reader reads them (contrasted where asked)."""
    return softmax(await conditioned_logits(score, request, what))


def check_probability(p: object, what: str) -> float:
    """A label about to be stored: a finite number in [0, 1], or a one-line error (before checkpointing)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:  # NaN fails too
        raise LabelError(f"{what}: {p!r} is not a probability")
    return float(p)


@dataclass(frozen=True)
class PairReading:
    """P(option a) read from a backend.

    Attributes:
        p_a: the label: both orders averaged where read, else the one reading.
        presented: P(a) from the order presented first (a first unless the caller drew a swap).
        reversed: P(a) from the other order; None when one order was read or no order exists.
        first_shown: P(the option shown first) as read, per order read (empty when no order exists).
    """

    p_a: float
    presented: float
    reversed: float | None = None
    first_shown: tuple[float, ...] = ()

    @property
    def position_flip(self) -> bool | None:
        return None if self.reversed is None else (self.presented > 0.5) != (self.reversed > 0.5)


Score = Callable[[ScoreRequest], Awaitable[list[float]]]


def _request_key(r: ScoreRequest) -> tuple:
    """What a backend's scores depend on: the texts, and a steering vector's identity (a contrast
    conditioning changes nothing a backend sees)."""
    steer = r.conditioning.steer_key if r.conditioning is not None else None
    return (tuple((m.role, m.content) for m in r.messages), r.choices, r.assistant_prefix, r.continuation, steer)


def memo_scorer(score: Score) -> Score:
    """``score`` with each distinct request scored once (concurrent duplicates share one call). For one
    burst of work (a phase, a study's readings): it keeps every result it has seen."""
    seen: dict[tuple, asyncio.Future[list[float]]] = {}

    async def memo(r: ScoreRequest) -> list[float]:
        key = _request_key(r)
        fut = seen.get(key)
        if fut is None:
            fut = seen[key] = asyncio.ensure_future(score(r))
        return list(await asyncio.shield(fut))
    return memo


def scorer(backend: LLMBackend, on_done: Callable[[], None] | None = None) -> Score:
    """One request per submission (so a coalescing backend batches concurrent readings), ``on_done``
    after each (a progress bar)."""
    async def score(r: ScoreRequest) -> list[float]:
        (s,) = await backend.score_choices([r])
        if on_done:
            on_done()
        return s
    return score


async def read_pair(score: Score, render: Callable[[bool], ScoreRequest], *, both_orders: bool = True,
                    swapped: bool = False, what: str = "label") -> PairReading:
    """A label reading of two options. ``render(swap)`` is the request with option b shown first when
    ``swap``; the order ``swapped`` is presented first, the other one second when ``both_orders``."""
    if contrasted(render(swapped)):
        return await _read_pair_contrasted(score, render, both_orders, swapped, what)
    first = score(render(swapped))
    if not both_orders:
        f1 = p_first(await first, what)
        p = undo_order(f1, swapped)
        return PairReading(p, p, None, (f1,))
    s1, s2 = await asyncio.gather(first, score(render(not swapped)))
    f1, f2 = p_first(s1, what), p_first(s2, what)
    p1, p2 = undo_order(f1, swapped), undo_order(f2, not swapped)
    return PairReading((p1 + p2) / 2, p1, p2, (f1, f2))


async def _read_pair_contrasted(score: Score, render: Callable[[bool], ScoreRequest], both_orders: bool,
                                swapped: bool, what: str) -> PairReading:
    """:func:`read_pair` from contrasted logits (:func:`option_probs`), each order contrasted on its own."""
    orders = (swapped, not swapped) if both_orders else (swapped,)
    firsts = [float(p[0]) for p in await asyncio.gather(*(option_probs(score, render(o), what) for o in orders))]
    ps = [undo_order(f, o) for f, o in zip(firsts, orders, strict=True)]
    if not both_orders:
        return PairReading(ps[0], ps[0], None, (firsts[0],))
    return PairReading((ps[0] + ps[1]) / 2, ps[0], ps[1], tuple(firsts))


async def read_likelihood(score: Score, request: ScoreRequest, what: str = "likelihood") -> PairReading:
    """A likelihood reading: ``request.choices`` are the two options' own texts, option a first."""
    request = dataclasses.replace(request, continuation=True)
    if contrasted(request):
        p = float((await option_probs(score, request, what))[0])
    else:
        p = likelihood_p_first(await score(request), request.choices, what)
    return PairReading(p, p)


async def read_likelihood_options(score: Score, request: ScoreRequest, what: str = "likelihood") -> np.ndarray:
    """A likelihood reading of K options: ``request.choices`` are the options' own texts, none listed in
    the prompt, so there is no order to undo."""
    request = dataclasses.replace(request, continuation=True)
    if contrasted(request):
        return await option_probs(score, request, what)
    return likelihood_distribution(await score(request), request.choices, what)


async def read_rotations(score: Score, labels: Sequence[str],
                         render: Callable[[Sequence[str]], ScoreRequest], what: str = "label") -> np.ndarray:
    """A distribution over ``labels`` whose request lists them as numbered options: read once per
    rotation of the list (each label at each position once) and averaged."""
    k = len(labels)
    rotations = [[labels[(r + i) % k] for i in range(k)] for r in range(k)]
    requests = [render(order) for order in rotations]
    if any(contrasted(r) for r in requests):
        probs = await asyncio.gather(*(option_probs(score, r, what) for r in requests))
    else:
        probs = [distribution(lp, what) for lp in await asyncio.gather(*(score(r) for r in requests))]
    dist = np.zeros(k)
    for order, p in zip(rotations, probs, strict=True):
        for pos, label in enumerate(order):
            dist[labels.index(label)] += p[pos] / k
    return dist


def stance_likelihood_request(d: Dilemma, w: Worldview | None,
                               quoted: tuple[str, Sequence[tuple[str, str]]] | None = None) -> ScoreRequest:
    """The request of a likelihood stance reading: each action's own text after the situation (and
    ``quoted``, what the agent has heard since), option a first."""
    return ScoreRequest(messages=prompts.choice_messages(d, w, *(quoted or ())), choices=(d.action_a, d.action_b),
                        continuation=True)


def judge_likelihood_request(d: Dilemma, judge: Worldview | None, principle: str, ra: str, rb: str) -> ScoreRequest:
    """The request of a likelihood judgment: each answer's text after the dilemma and the principle, ``ra`` first."""
    return ScoreRequest(messages=prompts.judge_likelihood_messages(d, judge, principle),
                        choices=(prompts.continuation(ra), prompts.continuation(rb)), continuation=True)


def read_stance(score: Score, reader: str, d: Dilemma, w: Worldview | None,
                quoted: tuple[str, Sequence[tuple[str, str]]] | None = None, *, both_orders: bool = True,
                swapped: bool = False, what: str = "stance") -> Awaitable[PairReading]:
    """An agent's P(choosing action a) by ``reader``: each action's text after the situation, or the
    option letters of the stance prompt. ``quoted`` is ``(heading, [(name, text)...])`` the agent has
    heard since its first stance (debate, its own revision)."""
    if reader == "likelihood":
        return read_likelihood(score, stance_likelihood_request(d, w, quoted), what)
    return read_pair(score, lambda s: ScoreRequest(
        messages=(prompts.reconsider_messages(d, w, *quoted, swap=s) if quoted else prompts.stance_messages(d, w, swap=s)),
        choices=prompts.CHOICE_LABELS), both_orders=both_orders, swapped=swapped, what=what)


def read_judgment(score: Score, reader: str, d: Dilemma, judge: Worldview | None, principle: str, ra: str, rb: str, *,
                  both_orders: bool = True, swapped: bool = False, what: str = "judgment") -> Awaitable[PairReading]:
    """P(answer ``ra`` is better than ``rb``) by ``reader``: each answer's likelihood after the dilemma
    and the principle, or the letters with ``rb`` shown first when ``swapped``."""
    if reader == "likelihood":
        return read_likelihood(score, judge_likelihood_request(d, judge, principle, ra, rb), what)
    return read_pair(score, lambda s: ScoreRequest(
        messages=prompts.judge_messages(d, judge, principle, *((rb, ra) if s else (ra, rb))),
        choices=prompts.CHOICE_LABELS), both_orders=both_orders, swapped=swapped, what=what)


async def p_yes(backend: LLMBackend, messages: Callable[[bool], tuple[ChatMessage, ...]]) -> float:
    """P(yes) normalised over {Yes, No}, averaged over both orders the replies are named in
    (``messages(no_first)`` renders the prompt)."""
    score = scorer(backend)
    r1, r2 = (ScoreRequest(messages=messages(no_first), choices=prompts.YES_NO) for no_first in (False, True))
    if contrasted(r1):
        a, b = await asyncio.gather(option_probs(score, r1, "yes/no rating"), option_probs(score, r2, "yes/no rating"))
        return float((a[0] + b[0]) / 2)
    a, b = await asyncio.gather(score(r1), score(r2))
    return float((distribution(a, "yes/no rating")[0] + distribution(b, "yes/no rating")[0]) / 2)


async def classify(backend: LLMBackend, labels: Sequence[str],
                   messages: Callable[[Sequence[str]], tuple[ChatMessage, ...]]) -> np.ndarray:
    """A distribution over ``labels``: the model picks one of the numbered options ``"1".."K"``, read
    in every rotation of the list (:func:`agents.scoring.read_rotations`)."""
    choices = tuple(str(i) for i in range(1, len(labels) + 1))
    return await read_rotations(scorer(backend), labels, lambda order: ScoreRequest(messages=messages(order), choices=choices),
                                "perspective classification")
