"""What an OpenAI-compatible server's replies say, read strictly: pure functions, no I/O.

The chat-completion shapes (the first choice, its text, the answer labels' log-probabilities, ``usage``) and
error bodies. The prompt log-probability forms and the locator of a scored reply in an echoed prompt are
:mod:`agents.llm.server_logprobs`. A body that is not a readable reply raises :class:`MalformedResponse`
(retried like a 5xx); a reply that names no option raises :class:`agents.scoring.LabelError` (not retried).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

from agents.llm.base import BackendStats
from agents.llm.server_logprobs import MalformedResponse
from agents.llm.server_logprobs import check_logprob as _logprob

UNSEEN_LOGPROB = -30.0  # the options not named by a reply read without logprobs (~1e-13)
_SPACE_MARKS = "\u0120\u2581 \t\n"  # byte-level BPE's "Ġ", SentencePiece's "▁", plain whitespace
# JSON's "\ud800" decodes to a lone surrogate: a str no UTF-8 file (checkpoint, parquet) can hold
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class ServerStatus(RuntimeError):
    """A reply with an HTTP error status: ``status``, the server's own message, its ``Retry-After`` (s) if any."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}" if detail else f"HTTP {status}")
        self.status, self.retry_after = status, retry_after


def error_detail(data: bytes) -> str:
    """The message of an OpenAI-style error body (``{"error": {"message": ...}}``), else the body's start."""
    try:
        err = json.loads(data).get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        if isinstance(msg, str) and msg:
            return msg[:200]
    except (ValueError, AttributeError):
        pass
    return data[:80].decode("utf-8", "replace").strip()


def count(stats: BackendStats, key: str) -> None:
    """One more ``key`` in ``stats.extra`` (a ``fallback:`` key also in ``stats.fallbacks``)."""
    if key.startswith("fallback:"):
        stats.fallbacks += 1
    stats.extra[key] = stats.extra.get(key, 0) + 1


def label_key(token: str) -> str:
    """A token as an answer label: the space marks servers put before a word dropped, case folded
    (``" A"``, ``"ĠA"``, ``"▁A"``, ``"A"`` and ``"a"`` all read as option A)."""
    return token.strip(_SPACE_MARKS).casefold()


def first_choice(body: dict, what: str) -> dict:
    """The first choice of a chat-completion body, or :class:`MalformedResponse` naming what is wrong."""
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise MalformedResponse(f"{what}: no 'choices' ({str(body)[:60]!r})")
    if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("message"), dict):
        raise MalformedResponse(f"{what}: an empty or malformed choice")
    return choices[0]


def chat_text(body: dict) -> str:
    """The text of a chat completion's first choice (``""`` for a ``null`` content)."""
    text = first_choice(body, "chat completion")["message"].get("content")
    if text is not None and not isinstance(text, str):
        raise MalformedResponse(f"chat completion: message content is {type(text).__name__}")
    return text or ""


def kept_text(text: str, stats: BackendStats) -> str:
    """A reply as the run keeps it: an empty one counted (still an answer); each lone surrogate made U+FFFD,
    counted, the rest of the reply kept."""
    if not text:
        count(stats, "empty_reply")
    if _LONE_SURROGATE.search(text):
        count(stats, "reply_lone_surrogate")
        text = _LONE_SURROGATE.sub("\ufffd", text)
    return text


def add_usage(body: dict, stats: BackendStats) -> None:
    """The body's ``usage`` token counts added to ``stats`` (a count that is not a whole number >= 0 is skipped)."""
    usage = body.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    for key, field in (("prompt_tokens", "prompt_tokens"), ("completion_tokens", "generated_tokens")):
        v = usage.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            setattr(stats, field, getattr(stats, field) + v)


def _entry(d: object, where: str) -> tuple[str, float]:
    """``(token, logprob)`` of one logprobs entry, both checked."""
    if not isinstance(d, dict) or not isinstance(d.get("token"), str):
        raise MalformedResponse(f"{where}: a logprobs entry is {d!r:.60}")
    return d["token"], _logprob(d.get("logprob"), f"{where}: logprob of {d['token']!r:.20}")


def read_label_logprobs(choice: dict, labels: Sequence[str], stats: BackendStats) -> list[float]:
    """Log-probabilities of answer ``labels`` from the first generated token's logprobs.

    Tokens that read as the same label (:func:`label_key`) are pooled (log-sum-exp). A label absent
    from the returned top tokens gets an upper bound on its own log-probability — the least listed
    one, and no more than what the listed tokens leave — counted as
    ``fallback:option_outside_top_logprobs``. Neither label among them: a one-line error (the model
    does not answer in the format; a label of 0.5 would look like a judgment). No logprobs at all:
    the reply's leading label, counted as ``fallback:no_logprobs``."""
    from agents.scoring import LabelError

    keys = [label_key(c) for c in labels]
    logprobs = choice.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, dict):
        raise MalformedResponse(f"scored chat completion: logprobs is {logprobs!r:.40}")
    content = (logprobs or {}).get("content")
    if content is not None and not isinstance(content, list):
        raise MalformedResponse(f"scored chat completion: logprobs.content is {content!r:.40}")
    if not content:
        text = choice["message"].get("content")
        text = text if isinstance(text, str) else ""
        m = re.match(r"\s*\(?([A-Za-z0-9]+)", text)
        said = label_key(m.group(1)) if m else None
        if said not in keys:
            raise LabelError(f"the reply {text[:40]!r} names none of the options {list(labels)} and the server sent no "
                             "logprobs to read them from")
        count(stats, "fallback:no_logprobs")
        return [0.0 if k == said else UNSEEN_LOGPROB for k in keys]
    first = content[0]
    seen = [_entry(first, "reply's first token")]
    top = first.get("top_logprobs") if isinstance(first, dict) else None
    if top is not None and not isinstance(top, list):
        raise MalformedResponse(f"scored chat completion: top_logprobs is {top!r:.40}")
    seen += [_entry(t, "top_logprobs") for t in top or []]
    distinct: dict[str, float] = {}  # a token listed twice (the reply's and a top one) counts once
    for token, lp in seen:
        if token in distinct and abs(distinct[token] - lp) > 1e-4:
            raise MalformedResponse(f"scored chat completion: token {token!r:.20} listed with two log-probabilities")
        distinct[token] = lp
    if sum(math.exp(lp) for lp in distinct.values()) > 1.001:
        raise MalformedResponse("scored chat completion: the listed tokens' probabilities sum to more than 1")
    pooled: dict[str, list[float]] = {}
    for token, lp in distinct.items():
        pooled.setdefault(label_key(token), []).append(lp)
    found = [logsumexp(pooled[k]) if k in pooled else None for k in keys]
    if all(x is None for x in found):
        shown = [t for t, _ in seen[:6]]
        raise LabelError(f"none of the options {list(labels)} is among the model's likeliest first tokens {shown}; "
                         "the model does not answer with the option label (try sim.judge_reader=likelihood, "
                         "sim.choice_reader=likelihood or a model that follows the format)")
    if any(x is None for x in found):
        count(stats, "fallback:option_outside_top_logprobs")
        left = 1.0 - sum(math.exp(lp) for lp in distinct.values())
        bound = min(min(distinct.values()), math.log(left) if left > 0 else -math.inf)
        found = [bound if x is None else x for x in found]
    if all(x == -math.inf for x in found):
        raise LabelError(f"every option of {list(labels)} has log-probability -inf")
    return [float(x) for x in found]


def logsumexp(xs: Sequence[float]) -> float:
    """``log(sum(exp(x)))`` without overflow; ``-inf`` when every ``x`` is."""
    m = max(xs)
    return m if m == -math.inf else m + math.log(sum(math.exp(x - m) for x in xs))
