"""Our backends exposed as an autogen ``ChatCompletionClient``, so autogen teams can use them.

One client per agent: it carries the agent's sampling settings and derives a fresh seed per call
from the agent's seed, so a debate transcript is reproducible whatever the batching.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any

from autogen_core import CancellationToken
from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    ChatCompletionTokenLogprob,
    CreateResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    ModelInfo,
    RequestUsage,
    SystemMessage,
    TopLogprob,
    UserMessage,
)

from agents.llm.base import ChatMessage, Conditioning, GenerateRequest, LLMBackend


def from_autogen(messages: Sequence[LLMMessage], speaker: str | None = None) -> tuple[ChatMessage, ...]:
    """Convert autogen messages to ours; other participants' turns become user turns named by source."""
    out: list[ChatMessage] = []
    for m in messages:
        if isinstance(m, SystemMessage):
            out.append(ChatMessage(role="system", content=m.content))
        elif isinstance(m, AssistantMessage) and isinstance(m.content, str):
            out.append(ChatMessage(role="assistant", content=m.content))
        elif isinstance(m, UserMessage):
            text = m.content if isinstance(m.content, str) else " ".join(c for c in m.content if isinstance(c, str))
            if speaker is not None and m.source == speaker:
                out.append(ChatMessage(role="assistant", content=text))
            else:
                out.append(ChatMessage(role="user", content=f"{m.source}: {text}" if m.source != "user" else text))
        elif isinstance(m, FunctionExecutionResultMessage):
            continue  # no tools in agora
    # Chat templates expect alternating turns; merge consecutive user turns.
    merged: list[ChatMessage] = []
    for m in out:
        if merged and m.role == merged[-1].role == "user":
            merged[-1] = ChatMessage(role="user", content=merged[-1].content + "\n\n" + m.content)
        else:
            merged.append(m)
    return tuple(merged)


class AgoraChatClient(ChatCompletionClient):
    """A ``ChatCompletionClient`` over any :class:`~agents.llm.base.LLMBackend`.

    Args:
        backend: the model.
        seed_for_call: ``k -> seed`` for this client's k-th call.
        max_new_tokens, temperature, top_p: defaults, overridable per call via ``extra_create_args``
            (``max_tokens``, ``temperature``, ``top_p``, ``seed``).
        speaker: the agent's own name, so its earlier turns are shown back as assistant turns.
        conditioning: the agent's persona conditioning (``agents/persona.py``), put on the system message of
            every request (autogen's system message is text only).
    """

    def __init__(self, backend: LLMBackend, *, seed_for_call: Callable[[int], int] = lambda k: k,
                 max_new_tokens: int = 64, temperature: float = 0.7, top_p: float = 0.95,
                 speaker: str | None = None, conditioning: Conditioning | None = None) -> None:
        self.backend = backend
        self._conditioning = conditioning
        self._seed_for_call = seed_for_call
        self._defaults = {"max_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
        self._speaker = speaker
        self._calls = 0
        self._usage = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self.transcript: list[tuple[tuple[ChatMessage, ...], str]] = []

    async def create(self, messages: Sequence[LLMMessage], *, tools: Sequence[Any] = [],
                     tool_choice: Any = "auto", json_output: Any = None,
                     extra_create_args: Mapping[str, Any] = {},
                     cancellation_token: CancellationToken | None = None) -> CreateResult:
        args = {**self._defaults, **extra_create_args}
        chat = from_autogen(messages, self._speaker)
        if self._conditioning is not None and chat and chat[0].role == "system":
            chat = (dataclasses.replace(chat[0], conditioning=self._conditioning), *chat[1:])
        seed = int(args["seed"]) if "seed" in args else self._seed_for_call(self._calls)
        self._calls += 1
        req = GenerateRequest(messages=chat, max_new_tokens=int(args["max_tokens"]),
                              temperature=float(args["temperature"]), top_p=float(args["top_p"]), seed=seed)
        (text,) = await self.backend.generate([req])
        self.transcript.append((chat, text))
        logprobs = None
        if args.get("logprobs") and hasattr(self.backend, "token_logprobs"):
            pairs = self.backend.token_logprobs(chat, text, top=int(args.get("top_logprobs", 0) or 0))
            logprobs = [ChatCompletionTokenLogprob(token=t, logprob=lp,
                                                   top_logprobs=[TopLogprob(logprob=x, bytes=list(s.encode()))
                                                                 for s, x in top] or None)
                        for t, lp, top in pairs]
        n_prompt = sum(len(m.content) for m in chat) // 4  # rough; exact counts live in backend.stats
        usage = RequestUsage(prompt_tokens=n_prompt, completion_tokens=len(text) // 4)
        self._usage = RequestUsage(prompt_tokens=self._usage.prompt_tokens + usage.prompt_tokens,
                                   completion_tokens=self._usage.completion_tokens + usage.completion_tokens)
        return CreateResult(finish_reason="stop", content=text, usage=usage, cached=False, logprobs=logprobs)

    async def create_stream(self, messages: Sequence[LLMMessage], **kwargs: Any) -> AsyncGenerator[str | CreateResult, None]:
        result = await self.create(messages, **kwargs)
        yield result

    async def close(self) -> None:
        return None

    def actual_usage(self) -> RequestUsage:
        return self._usage

    def total_usage(self) -> RequestUsage:
        return self._usage

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Any] = []) -> int:
        return sum(len(str(getattr(m, "content", ""))) for m in messages) // 4

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Any] = []) -> int:
        return max(0, 8192 - self.count_tokens(messages))

    @property
    def capabilities(self) -> Any:  # deprecated in autogen, still abstract
        return {"vision": False, "function_calling": False, "json_output": False}

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(vision=False, function_calling=False, json_output=False, family="unknown",
                         structured_output=False)
