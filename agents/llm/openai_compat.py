"""Any OpenAI-compatible chat server (vLLM, llama.cpp server, Ollama), read strictly from its JSON."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from agents.llm.base import BackendError, BackendStats, ChatMessage, GenerateRequest, ScoreRequest
from agents.llm.server_logprobs import MalformedResponse, echo_entries, locate, prompt_logprobs_entries
from agents.llm.server_logprobs import check_logprob as _logprob
from agents.llm.server_logprobs import continuation_logprob as _sum_from

log = logging.getLogger(__name__)

UNSEEN_LOGPROB = -30.0  # the options not named by a reply read without logprobs (~1e-13)
_SPACE_MARKS = "\u0120\u2581 \t\n"  # byte-level BPE's "Ġ", SentencePiece's "▁", plain whitespace
# JSON's "\ud800" decodes to a lone surrogate: a str no UTF-8 file (checkpoint, parquet) can hold
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def label_key(token: str) -> str:
    """A token as an answer label: the space marks servers put before a word dropped, case folded
    (``" A"``, ``"ĠA"``, ``"▁A"``, ``"A"`` and ``"a"`` all read as option A)."""
    return token.strip(_SPACE_MARKS).casefold()


def _first_choice(body: dict, what: str) -> dict:
    """The first choice of a chat-completion body, or :class:`MalformedResponse` naming what is wrong."""
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise MalformedResponse(f"{what}: no 'choices' ({str(body)[:60]!r})")
    if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("message"), dict):
        raise MalformedResponse(f"{what}: an empty or malformed choice")
    return choices[0]


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
        _count(stats, "fallback:no_logprobs")
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
    found = [_logsumexp(pooled[k]) if k in pooled else None for k in keys]
    if all(x is None for x in found):
        shown = [t for t, _ in seen[:6]]
        raise LabelError(f"none of the options {list(labels)} is among the model's likeliest first tokens {shown}; "
                         "the model does not answer with the option label (try sim.judge_reader=likelihood, "
                         "sim.choice_reader=likelihood or a model that follows the format)")
    if any(x is None for x in found):
        _count(stats, "fallback:option_outside_top_logprobs")
        left = 1.0 - sum(math.exp(lp) for lp in distinct.values())
        bound = min(min(distinct.values()), math.log(left) if left > 0 else -math.inf)
        found = [bound if x is None else x for x in found]
    if all(x == -math.inf for x in found):
        raise LabelError(f"every option of {list(labels)} has log-probability -inf")
    return [float(x) for x in found]


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    return m if m == -math.inf else m + math.log(sum(math.exp(x - m) for x in xs))


def _count(stats: BackendStats, key: str) -> None:
    if key.startswith("fallback:"):
        stats.fallbacks += 1
    stats.extra[key] = stats.extra.get(key, 0) + 1


class ServerStatus(RuntimeError):
    """A reply with an HTTP error status: ``status``, the server's own message, its ``Retry-After`` (s) if any."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}" if detail else f"HTTP {status}")
        self.status, self.retry_after = status, retry_after


def retry_cause(exc: BaseException) -> tuple[str | None, float]:
    """``(cause, seconds to wait at least)`` for a failure worth retrying, ``(None, 0)`` otherwise."""
    import aiohttp

    if isinstance(exc, TimeoutError):  # asyncio's total timeout and aiohttp's connect/read timeouts
        return "timeout", 0.0
    if isinstance(exc, aiohttp.InvalidURL):
        return None, 0.0
    if isinstance(exc, (aiohttp.ClientError, OSError)):  # refused, reset or dropped connections; a cut-off body
        return "connection", 0.0
    if isinstance(exc, ServerStatus):
        if exc.status == 429:
            return "rate_limit", min(exc.retry_after or 0.0, 300.0)
        if exc.status >= 500 or exc.status in (408, 409):
            return f"http_{exc.status}", 0.0
        return None, 0.0
    if isinstance(exc, ValueError):  # MalformedResponse: a truncated or malformed 200 body
        return "bad_response", 0.0
    return None, 0.0


def _error_detail(data: bytes) -> str:
    """The message of an OpenAI-style error body (``{"error": {"message": ...}}``), else the body's start."""
    try:
        err = json.loads(data).get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        if isinstance(msg, str) and msg:
            return msg[:200]
    except (ValueError, AttributeError):
        pass
    return data[:80].decode("utf-8", "replace").strip()


def _env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTP(S)_PROXY``, not for a ``NO_PROXY`` host), looked up
    once: aiohttp's ``trust_env`` looks it up, and reads ``~/.netrc``, in a worker thread on every request
    (two thread hops a request; and a netrc entry for the host would clash with the API key's header)."""
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


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
    retried up to ``max_retries`` times with exponential backoff and jitter (``backoff_s`` × 2^attempt
    × U[0.5, 1.5], at most ``max_backoff_s``; a 429's ``Retry-After`` is waited at least). Each retry is
    counted: ``stats.retries`` and ``stats.extra["retry:<cause>"]``. Other 4xx fail at once. At most
    ``concurrency`` requests are in flight, over as many keep-alive connections.

    The transport is a plain aiohttp session posting JSON and reading the body as JSON, not the openai
    SDK: the SDK's per-request work (type-walking every message, building its response objects) held
    one process to ~570 requests/s, falling to ~270 at 512 in flight; this one issues 1,400-2,000 at
    every concurrency (``benches/test_client_throughput.py``). Not autogen's client either: it keeps a
    top-logprob's token only as bytes (llama.cpp's server sends ``bytes: null``) and reads a malformed
    body with Python internals errors that cannot be retried.
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
        self.concurrency, self.timeout_s = concurrency, timeout_s
        self._headers = {"Authorization": f"Bearer {os.environ.get(api_key_env) or 'unused'}",
                         "Content-Type": "application/json", "Accept": "application/json"}
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
        self._jitter = random.Random(0)  # timing only; never touches what the run computes
        self._proxy = _env_proxy(base_url)
        self.tokenizer = tokenizer
        self._render: Callable[[Sequence[ChatMessage]], str] | None = None
        self.form: str | None = None  # one of FORMS once probed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session = None
        self._closer = None

    async def _for_this_loop(self):
        """The HTTP session, concurrency limit and probe lock of the running event loop. A society runs each step in
        its own ``asyncio.run``, and a session or semaphore made on one loop fails on the next, so they
        are made once per loop and the session is closed on that loop when ``asyncio.run`` ends (it
        finalises async generators before closing its loop: :meth:`_close_at_shutdown`)."""
        import aiohttp

        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._sem = asyncio.Semaphore(self.concurrency)
            self._probing = asyncio.Lock()
            # keep-alive shorter than servers' own idle timeouts (uvicorn's, under vLLM: 5 s), so a request
            # is not sent on a connection the server is closing; a pool as large as the concurrency limit
            connector = aiohttp.TCPConnector(limit=self.concurrency, keepalive_timeout=4.0)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers, proxy=self._proxy,
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout_s))
            self._closer = self._close_at_shutdown(self._session)
            await anext(self._closer)
        return self._session

    @staticmethod
    async def _close_at_shutdown(session):
        try:
            yield
        finally:
            await session.close()

    async def _retrying(self, call):
        """``await call()`` under the concurrency limit, retrying transient failures (counted)."""
        await self._for_this_loop()
        async with self._sem:
            attempt = 0
            while True:
                try:
                    return await call()
                except Exception as exc:
                    cause, wait_at_least = retry_cause(exc)
                    if cause is None or attempt >= self.max_retries:
                        tried = f" after {attempt + 1} attempts" if attempt else ""
                        raise BackendError(f"model server {self.base_url} failed{tried}: {_describe(exc)}") from exc
                    self.stats.retries += 1
                    self.stats.extra[f"retry:{cause}"] = self.stats.extra.get(f"retry:{cause}", 0) + 1
                    delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * self._jitter.uniform(0.5, 1.5)
                    await asyncio.sleep(min(max(delay, wait_at_least), max(self.max_backoff_s, wait_at_least)))
                    attempt += 1

    async def _post(self, path: str, payload: dict, what: str = "chat completion") -> dict:
        """POST ``payload`` as JSON to ``base_url/path``; the response body as parsed JSON (a dict), or
        :class:`ServerStatus` for an error status, :class:`MalformedResponse` for a body that is not one."""
        session = await self._for_this_loop()
        async with session.post(f"{self.base_url.rstrip('/')}/{path}", data=json.dumps(payload).encode()) as res:
            data = await res.read()
            if res.status >= 400:
                try:
                    after = float(res.headers.get("Retry-After", "")) if res.status == 429 else None
                except ValueError:
                    after = None
                raise ServerStatus(res.status, _error_detail(data), after)
        try:
            body = json.loads(data)
        except ValueError:
            raise MalformedResponse(f"a body that is not JSON ({data[:60]!r})") from None
        if not isinstance(body, dict):
            raise MalformedResponse(f"a body that is not a {what} ({data[:60]!r})")
        return body

    async def _chat(self, messages: Sequence[ChatMessage], extra_body: dict | None = None, **args) -> dict:
        """A chat completion's body as parsed JSON: read strictly by the callers, never coerced (``"-0.5"`` and
        ``false`` are not numbers)."""
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        return await self._post("chat/completions", {"model": self.name, "messages": msgs, **args, **(extra_body or {})})

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        async def one(r: GenerateRequest) -> str:
            async def call() -> str:
                body = await self._chat(r.messages, max_tokens=r.max_new_tokens, temperature=r.temperature,
                                        top_p=r.top_p, seed=r.seed)
                text = _first_choice(body, "chat completion")["message"].get("content")
                if text is not None and not isinstance(text, str):
                    raise MalformedResponse(f"chat completion: message content is {type(text).__name__}")
                self._usage(body)
                return text or ""

            out = await self._retrying(call)
            self.stats.generate_calls += 1
            if not out:
                _count(self.stats, "empty_reply")  # recorded: an empty answer is still an answer
            if _LONE_SURROGATE.search(out):  # the rest of the reply is kept; each one is U+FFFD, counted
                _count(self.stats, "reply_lone_surrogate")
                out = _LONE_SURROGATE.sub("\ufffd", out)
            return out

        return list(await asyncio.gather(*(one(r) for r in requests)))

    def _usage(self, body: dict) -> None:
        usage = body.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        for key, field in (("prompt_tokens", "prompt_tokens"), ("completion_tokens", "generated_tokens")):
            v = usage.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                setattr(self.stats, field, getattr(self.stats, field) + v)

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
            body = await self._post("completions", {"model": self.name, "prompt": prompt, "max_tokens": 1,
                                                    "temperature": 0.0, "echo": True, "logprobs": 1}, "completion")
            entries = echo_entries(body, what)
        self._usage(body)
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
                _count(self.stats, "continuation_start_counted")
            return _sum_from(entries, start, "scored continuation")

        return await self._retrying(call)

    async def score_choices(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        async def labels(r: ScoreRequest) -> list[float]:
            async def call() -> list[float]:
                body = await self._chat(r.messages, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=self._top)
                raw = read_label_logprobs(_first_choice(body, "scored chat completion"), r.choices, self.stats)
                self._usage(body)
                return raw

            raw = await self._retrying(call)
            self.stats.score_calls += 1
            z = _logsumexp(raw)
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
        await self._for_this_loop()
        async with self._probing:
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
                why.append(f"{FORMS[form]}: {_describe(exc.__cause__)[:160]}")
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
            body = await self._post("completions", {"model": self.name, "prompt": "Say yes.\nYes.", "max_tokens": 1,
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
        raise BackendError(f"llm.tokenizer={spec}: cannot load a tokenizer ({_describe(exc)[:160]})") from None
    if not getattr(tok, "chat_template", None):
        raise BackendError(f"llm.tokenizer={spec}: the tokenizer has no chat template")

    def render(messages: Sequence[ChatMessage]) -> str:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        return tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)

    return render


def _describe(exc: BaseException) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, (BackendError, ServerStatus)):
        return msg
    if isinstance(exc, MalformedResponse):
        return f"malformed response: {msg}"
    if isinstance(exc, TimeoutError):
        return f"no reply within the timeout ({type(exc).__name__}{': ' + msg if msg else ''})"
    if retry_cause(exc)[0] == "connection":
        return f"Connection failed ({type(exc).__name__}{': ' + msg if msg else ''})"
    return f"{type(exc).__name__}: {msg}"
