"""The LLM protocol: two batched async operations, and the records they take."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, Protocol, TypeVar, runtime_checkable


class BackendError(RuntimeError):
    """A backend cannot serve requests (missing weights, unreachable server...); one-line message."""


CONDITIONING_METHODS = ("contrast", "steer")


@dataclass(frozen=True, kw_only=True)
class Conditioning:
    """How a persona acts on the model beyond its prompt text (``agents/persona.py`` builds it).

    It rides on the persona's system message (:attr:`ChatMessage.conditioning`), so every request
    rendered from a worldview by ``agents.prompts.system_prompt`` carries it: stance, debate, critique,
    revision, judging and the studies get it without new plumbing.

    Attributes:
        method: ``contrast`` (context-aware decoding, Shi et al. 2023: readings combined in
            ``agents/scoring.py``; generation's next-token logits combined by the embedded backend) or
            ``steer`` (activation addition on the embedded model, ``agents/steering.py``).
        alpha: contrast strength: ``(1 + alpha)·score(persona) − alpha·score(base)``; 0 is the prompt.
        base: the system text without persona (role included): the contrast's reference.
        reference: system texts of the centring panel (role included; e.g. the six cluster centres in the
            run's persona variant). Non-empty: readings are centred, ``score(base) + (1 + alpha)·(score(persona)
            − mean score(reference))``, so the persona moves answers relative to the no-persona model
            rather than shifting every persona's answers alike. Generation is never centred.
        steer: ``(axis, weight)`` pairs: the agent's standardised position per value axis.
        beta: steering scale, in units of the layer's typical residual norm for a unit-weight sum.
        layer: the decoder layer whose output the vector is added to.
    """

    method: str
    alpha: float = 0.0
    base: str = ""
    reference: tuple[str, ...] = ()
    steer: tuple[tuple[str, float], ...] = ()
    beta: float = 0.0
    layer: int = 0

    def __post_init__(self) -> None:
        if self.method not in CONDITIONING_METHODS:
            raise ValueError(f"conditioning method must be one of {CONDITIONING_METHODS}, got {self.method!r}")
        if not (self.alpha >= 0 and self.beta >= 0 and self.layer >= 0):  # NaN fails too
            raise ValueError(f"alpha, beta and layer must be >= 0, got {self.alpha}, {self.beta}, {self.layer}")

    def for_role(self, role: str) -> Conditioning:
        """The same conditioning for a system message that ends with ``role`` (appended to the base
        and reference texts, as ``system_prompt`` appends it to the persona)."""
        if not role:
            return self
        add = lambda t: (t + " " + role).strip()  # noqa: E731
        return replace(self, base=add(self.base), reference=tuple(add(t) for t in self.reference))

    @property
    def steer_key(self) -> tuple | None:
        """What makes two rows' activations differ (None: unsteered): prefix caches key on it."""
        if self.method != "steer" or self.beta == 0 or not any(w for _, w in self.steer):
            return None
        return (self.layer, self.beta, self.steer)


@dataclass(frozen=True, kw_only=True)
class ChatMessage:
    """One message of a conversation.

    Attributes:
        role: ``system``, ``user`` or ``assistant``.
        content: its text.
        conditioning: on a persona's system message, how the persona acts beyond this text
            (:class:`Conditioning`); None everywhere else.
    """

    role: str  # "system" | "user" | "assistant"
    content: str
    conditioning: Conditioning | None = None


def conditioning_of(messages: Sequence[ChatMessage]) -> Conditioning | None:
    """The conditioning a conversation carries (on its first system message), or None."""
    return next((m.conditioning for m in messages if m.conditioning is not None), None)


def with_system(messages: Sequence[ChatMessage], text: str) -> tuple[ChatMessage, ...]:
    """``messages`` with the conditioned system message replaced by a plain one saying ``text``."""
    return tuple(ChatMessage(role="system", content=text) if m.conditioning is not None else m for m in messages)


@dataclass(frozen=True, kw_only=True)
class GenerateRequest:
    """One chat completion.

    Attributes:
        messages: the conversation so far.
        max_new_tokens: generation budget.
        temperature: 0 means greedy.
        top_p: nucleus sampling mass, taken within the ``top_k`` most likely tokens.
        top_k: candidates kept before nucleus sampling (transformers' default, 50).
        seed: per-request sampling seed, so a request's output does not depend on its batch-mates.
    """

    messages: tuple[ChatMessage, ...]
    max_new_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 50
    seed: int = 0

    @property
    def conditioning(self) -> Conditioning | None:
        """The persona's conditioning, carried by its system message (:class:`Conditioning`)."""
        return conditioning_of(self.messages)


@dataclass(frozen=True, kw_only=True)
class ScoreRequest:
    """Log-probabilities of candidate continuations of a chat prompt.

    Attributes:
        messages: the conversation; the assistant turn is opened after it.
        choices: candidate continuations (e.g. ``("A", "B")``).
        assistant_prefix: text the assistant turn starts with before the candidate.
        continuation: the choices are whole replies whose every token is scored (likelihood
            readings), not answer labels read from the first token; a server backend needs prompt
            log-probabilities for these.
    """

    messages: tuple[ChatMessage, ...]
    choices: tuple[str, ...]
    assistant_prefix: str = ""
    continuation: bool = False

    @property
    def conditioning(self) -> Conditioning | None:
        """The persona's conditioning, carried by its system message (:class:`Conditioning`)."""
        return conditioning_of(self.messages)


@dataclass
class BackendStats:
    """Counters every backend keeps; written to ``summary.json``."""

    generate_calls: int = 0
    score_calls: int = 0
    batches: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    truncated_prompts: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens whose KV came from the prefix cache, not a forward
    retries: int = 0
    fallbacks: int = 0  # scores read some other way than the logprobs asked for; by cause in ``extra["fallback:..."]``
    extra: dict[str, int] = field(default_factory=dict)


@runtime_checkable
class LLMBackend(Protocol):
    """What agents and judges need from a model."""

    name: str
    stats: BackendStats

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[str]: ...

    async def score_choices(self, requests: Sequence[ScoreRequest]) -> list[list[float]]: ...


Req = TypeVar("Req")
Res = TypeVar("Res")


class Coalescer(Generic[Req, Res]):
    """Gathers concurrent single requests into batches for a synchronous batch function.

    Callers ``await submit(req)``. The first submission schedules a flush that yields to the event
    loop until no new request has arrived for ``settle`` consecutive turns, then runs ``fn`` on
    chunks of at most ``max_batch`` requests. The batch function runs on the loop thread: no thread
    pool, so batch composition depends only on the (deterministic) order in which coroutines run,
    and the same seed gives the same batches and the same bytes.
    """

    def __init__(self, fn: Callable[[list[Req]], list[Res]], max_batch: int, settle: int = 8,
                 on_batch: Callable[[int], None] | None = None, on_idle: Callable[[], None] | None = None) -> None:
        self._fn = fn
        self._max_batch = max_batch
        self._settle = settle
        # a deque: taking a chunk off the front is O(chunk); slicing a list copied every pending request
        # per chunk, O(N^2 / max_batch) over N requests
        self._pending: deque[tuple[Req, asyncio.Future[Res]]] = deque()
        self._flushing = False
        self._on_batch = on_batch
        self._on_idle = on_idle

    @property
    def busy(self) -> bool:
        """Requests are queued or a flush is under way."""
        return self._flushing or bool(self._pending)

    async def submit(self, req: Req) -> Res:
        fut: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        self._pending.append((req, fut))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        try:
            while self._pending:
                quiet, seen = 0, len(self._pending)
                while quiet < self._settle and len(self._pending) < self._max_batch:
                    await asyncio.sleep(0)
                    quiet = quiet + 1 if len(self._pending) == seen else 0
                    seen = len(self._pending)
                chunk = [self._pending.popleft() for _ in range(min(self._max_batch, len(self._pending)))]
                try:
                    results = self._fn([r for r, _ in chunk])
                    if len(results) != len(chunk):
                        raise ValueError(f"batch function returned {len(results)} results for {len(chunk)} requests")
                except Exception as exc:  # hand the error to every caller of this batch
                    for _, fut in chunk:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                if self._on_batch:
                    self._on_batch(len(chunk))
                for (_, fut), res in zip(chunk, results, strict=True):  # lengths checked above
                    if not fut.done():
                        fut.set_result(res)
                await asyncio.sleep(0)
        finally:
            self._flushing = False
            if self._on_idle:
                self._on_idle()
