"""The OpenAI-compatible backend: the server's replies read by :mod:`~agents.llm.openai_compat.replies`, each call
wrapped by :class:`~agents.llm.openai_compat.retry.Retrying`, sent by :class:`~agents.llm.openai_compat.transport.Transport`."""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agents.llm.base import BackendError, BackendStats, ChatMessage, GenerateRequest, ScoreRequest
from agents.llm.openai_compat.replies import (
    ServerStatus,
    add_usage,
    chat_text,
    count,
    first_choice,
    kept_text,
    logsumexp,
    read_label_logprobs,
)
from agents.llm.openai_compat.retry import Retrying, describe
from agents.llm.openai_compat.transport import Transport
from agents.llm.server_logprobs import MalformedResponse, echo_entries, locate, prompt_logprobs_entries
from agents.llm.server_logprobs import continuation_logprob as _sum_from

log = logging.getLogger(__name__)
T = TypeVar("T")

# how a server gives the log-probabilities of a prompt's tokens, in the order they are tried at start-up
FORMS = {"prompt_logprobs": "chat prompt_logprobs (vLLM)", "echo": "completions echo (vLLM, llama-cpp-python --logits_all true)"}


class OpenAICompatibleBackend:
    """Chat completions over HTTP (aiohttp; any OpenAI-compatible server).

    ``score_choices`` reads a request in one of two ways. Answer labels (``A``/``B``, ``Yes``/``No``):
    one token at temperature 0 with ``logprobs``/``top_logprobs``, read by
    :func:`read_label_logprobs` (label tokens pooled across the spellings servers use; a missing
    option bounded and counted; no option at all a one-line error). Whole continuations
    (``ScoreRequest.continuation``, the likelihood readers) need the log-probabilities of a given
    reply's tokens, which servers give in one of two :data:`FORMS`, found once by a probe (at start-up,
    :meth:`check_continuation_support`, or at the first continuation) and recorded as
    ``stats.extra["continuation_form:<form>"]``: vLLM's chat ``prompt_logprobs`` (the reply sent as the
    final assistant message with ``continue_final_message``), or the legacy completions ``echo`` form
    (the prompt rendered here with ``tokenizer``'s chat template, as the embedded backend renders it;
    ``echo=true, logprobs=1, max_tokens=1``). The reply's tokens are found at the end of the echoed
    prompt by :func:`agents.llm.server_logprobs.locate`, and summed. A server offering neither is
    refused in one line. Every value is checked as it is read (a number, not NaN, not above 0); a
    200 body that is not a readable reply is retried like a 5xx and ends, if it persists, in one line
    naming the server and the problem.

    Failures that may pass (refused or dropped connections, timeouts, 5xx, 429, a malformed body) are
    retried up to ``max_retries`` times with exponential backoff and jitter, each retry counted
    (:class:`~agents.llm.openai_compat.retry.Retrying`). Other 4xx fail at once. At most ``concurrency``
    requests are in flight, over as many keep-alive connections, a request and its retries holding one
    place (:class:`~agents.llm.openai_compat.transport.Transport`).

    Not autogen's client: it keeps a top-logprob's token only as bytes (llama.cpp's server sends
    ``bytes: null``) and reads a malformed body with Python internals errors that cannot be retried.
    Nor the openai SDK (the transport's module says why).
    """

    def __init__(self, *, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 60.0,
                 max_retries: int = 3, concurrency: int = 8, top_logprobs: int = 10, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, tokenizer: str | None = None) -> None:
        if max_retries < 0 or concurrency < 1 or not timeout_s > 0:
            raise BackendError("openai_compatible needs max_retries >= 0, concurrency >= 1 and timeout_s > 0")
        self.name = model
        self.base_url = base_url
        self.stats = BackendStats()
        self._top = top_logprobs
        headers = {"Authorization": f"Bearer {os.environ.get(api_key_env) or 'unused'}",
                   "Content-Type": "application/json", "Accept": "application/json"}
        self._transport = Transport(base_url, headers, concurrency=concurrency, timeout_s=timeout_s)
        self._retry = Retrying(base_url, self.stats, max_retries=max_retries, backoff_s=backoff_s, max_backoff_s=max_backoff_s)
        self.tokenizer = tokenizer
        self._render: Callable[[Sequence[ChatMessage]], str] | None = None
        self.form: str | None = None  # one of FORMS once probed

    @property
    def _session(self) -> Any:
        """The HTTP session of the loop the backend last ran on (the tests check each loop's is closed on it)."""
        return self._transport.session

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, retried (:attr:`_retry`), holding one place under the concurrency limit throughout."""
        await self._transport.bind()
        async with self._transport.limit:
            return await self._retry(call)

    async def _chat(self, messages: Sequence[ChatMessage], extra_body: dict | None = None, **args) -> dict:
        """A chat completion's body as parsed JSON: read strictly by the callers, never coerced (``"-0.5"`` and
        ``false`` are not numbers)."""
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        return await self._transport.post("chat/completions", {"model": self.name, "messages": msgs, **args, **(extra_body or {})})

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        async def one(r: GenerateRequest) -> str:
            async def call() -> str:
                body = await self._chat(r.messages, max_tokens=r.max_new_tokens, temperature=r.temperature,
                                        top_p=r.top_p, seed=r.seed)
                text = chat_text(body)
                add_usage(body, self.stats)
                return text

            out = await self._retrying(call)
            self.stats.generate_calls += 1
            return kept_text(out, self.stats)

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def _echoed(self, form: str, r: ScoreRequest, text: str) -> list:
        """The prompt of ``r`` continued by ``r.assistant_prefix + text``, echoed with its tokens'
        log-probabilities in ``form`` (``text`` empty: the prompt alone, up to the assistant's turn)."""
        what = "scored continuation"
        if form == "prompt_logprobs":
            reply = r.assistant_prefix + text
            if reply:
                body = await self._chat((*r.messages, ChatMessage(role="assistant", content=reply)), max_tokens=1,
                                        temperature=0.0, extra_body={"continue_final_message": True,
                                                                     "add_generation_prompt": False, "prompt_logprobs": 0})
            else:
                body = await self._chat(r.messages, max_tokens=1, temperature=0.0,
                                        extra_body={"add_generation_prompt": True, "prompt_logprobs": 0})
            entries = prompt_logprobs_entries(body, what)
        else:
            assert self._render is not None
            prompt = self._render(r.messages) + r.assistant_prefix + text
            # max_tokens=1, not 0: llama-cpp-python reads 0 as "until the context is full"
            body = await self._transport.post("completions", {"model": self.name, "prompt": prompt, "max_tokens": 1,
                                                              "temperature": 0.0, "echo": True, "logprobs": 1}, "completion")
            entries = echo_entries(body, what)
        add_usage(body, self.stats)
        return entries

    async def _continuation(self, form: str, r: ScoreRequest, text: str) -> float:
        # vLLM renders a continued message without its trailing whitespace (transformers' apply_chat_template)
        text = text.rstrip() if form == "prompt_logprobs" else text

        async def call() -> float:
            entries = await self._echoed(form, r, text)
            lo, start = locate([tok for tok, _ in entries], text)
            if lo < start:  # tokens showing no text just before the reply: count the prompt's own tokens
                start = len(await self._echoed(form, r, ""))
                if not lo <= start <= len(entries) - 1:
                    raise MalformedResponse(f"the prompt without the scored text has {start} tokens, its echo with "
                                            f"the text says {lo} to {len(entries) - 1}")
                count(self.stats, "continuation_start_counted")
            return _sum_from(entries, start, "scored continuation")

        return await self._retrying(call)

    async def score_choices(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        async def labels(r: ScoreRequest) -> list[float]:
            async def call() -> list[float]:
                body = await self._chat(r.messages, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=self._top)
                raw = read_label_logprobs(first_choice(body, "scored chat completion"), r.choices, self.stats)
                add_usage(body, self.stats)
                return raw

            raw = await self._retrying(call)
            self.stats.score_calls += 1
            z = logsumexp(raw)
            return [x - z for x in raw]

        async def one(r: ScoreRequest) -> list[float]:
            if not r.continuation:
                return await labels(r)
            if any(not c.strip() for c in r.choices):
                raise ValueError(f"empty candidate in {r.choices!r}")
            form = await self.continuation_form()
            out = list(await asyncio.gather(*(self._continuation(form, r, c) for c in r.choices)))
            self.stats.score_calls += 1
            if all(x == -math.inf for x in out):
                raise BackendError(f"model server {self.base_url}: every scored reply has log-probability -inf")
            return out

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def check_continuation_support(self) -> None:
        """Find the form in which the server scores whole replies (:meth:`continuation_form`); a one-line
        :class:`BackendError` if it offers none. Called before a run's first step; a server that cannot
        be reached fails with its own one-line error."""
        await self.continuation_form()

    async def continuation_form(self) -> str:
        """The first of :data:`FORMS` the server answers a probe continuation in, found once."""
        if self.form is not None:
            return self.form
        await self._transport.bind()
        async with self._transport.lock:
            if self.form is None:
                self.form = await self._probe()
                self.stats.extra[f"continuation_form:{self.form}"] = 1
                log.info("model server %s scores whole replies in the %s form", self.base_url, FORMS[self.form])
        return self.form

    async def _probe(self) -> str:
        probe = ScoreRequest(messages=(ChatMessage(role="user", content="Say yes."),), choices=("Yes.",), continuation=True)
        why = []
        for form in FORMS:
            try:
                if form == "echo" and self.tokenizer is None:
                    await self._echo_without_template()
                else:
                    if form == "echo" and self._render is None:
                        self._render = load_chat_template(self.tokenizer)
                    await self._continuation(form, probe, "Yes.")
            except BackendError as exc:
                if not _not_offered(exc.__cause__):
                    raise
                why.append(f"{FORMS[form]}: {describe(exc.__cause__)[:160]}")
                continue
            if self._render is None and form == "echo":
                raise BackendError(f"model server {self.base_url} gives prompt log-probabilities only in the completions "
                                   "echo form, whose prompt agora renders with the model's chat template: set "
                                   "llm.tokenizer to the model's Hugging Face tokenizer (a folder, a hub id or its .gguf file)")
            return form
        raise BackendError(f"model server {self.base_url} cannot score whole replies, which the likelihood readers "
                           f"need ({'; '.join(why)}): set sim.choice_reader=label sim.judge_reader=label, or serve the "
                           "model with vLLM or with llama-cpp-python's server and --logits_all true")

    async def _echo_without_template(self) -> None:
        """Whether the server answers the echo form at all (a plain prompt; a :class:`BackendError` if not)."""
        async def call() -> None:
            body = await self._transport.post("completions", {"model": self.name, "prompt": "Say yes.\nYes.", "max_tokens": 1,
                                                              "temperature": 0.0, "echo": True, "logprobs": 1}, "completion")
            echo_entries(body, "scored continuation")  # prompt log-probabilities came back: the form is offered
            # (where the scored text sits is found with the chat template, which is what is missing here)

        await self._retrying(call)


def _not_offered(cause: BaseException | None) -> bool:
    """A probe's failure that says the server lacks the form (a body without it, an HTTP error status),
    not that the server cannot be reached."""
    return isinstance(cause, (MalformedResponse, ServerStatus))


def load_chat_template(spec: str) -> Callable[[Sequence[ChatMessage]], str]:
    """The chat template of the tokenizer ``spec`` names (a Hugging Face folder or hub id, or a ``.gguf``
    file), as a function rendering messages up to the assistant's turn, as the embedded backend does."""
    from transformers import AutoTokenizer

    path = Path(spec).expanduser()
    try:
        if path.suffix == ".gguf":
            tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        else:
            tok = AutoTokenizer.from_pretrained(str(path) if path.exists() else spec)
    except Exception as exc:  # noqa: BLE001  (transformers raises OSError, ValueError, EnvironmentError...)
        raise BackendError(f"llm.tokenizer={spec}: cannot load a tokenizer ({describe(exc)[:160]})") from None
    if not getattr(tok, "chat_template", None):
        raise BackendError(f"llm.tokenizer={spec}: the tokenizer has no chat template")

    def render(messages: Sequence[ChatMessage]) -> str:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        return tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)

    return render
