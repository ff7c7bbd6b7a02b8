"""Any OpenAI-compatible chat server (vLLM, llama.cpp server, Ollama) through autogen-ext's client."""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections.abc import Sequence

from agents.llm.base import BackendError, BackendStats, ChatMessage, GenerateRequest, ScoreRequest

UNSEEN_LOGPROB = -30.0  # a choice absent from the server's top_logprobs gets this (~1e-13)


def to_autogen(messages: Sequence[ChatMessage]) -> list:
    from autogen_core.models import AssistantMessage, SystemMessage, UserMessage

    out: list = []
    for m in messages:
        if m.role == "system":
            out.append(SystemMessage(content=m.content))
        elif m.role == "assistant":
            out.append(AssistantMessage(content=m.content, source="assistant"))
        else:
            out.append(UserMessage(content=m.content, source="user"))
    return out


class OpenAICompatibleBackend:
    """Chat completions over HTTP.

    ``score_choices`` asks for ``logprobs``/``top_logprobs`` of one token at temperature 0 and reads
    the candidates from them. Servers that return no logprobs get a recorded fallback: the reply's
    leading letter is parsed and given probability 1 (``stats.fallbacks`` counts these). The
    ``assistant_prefix`` of a score request cannot be prefilled over the chat API and is ignored.
    Multi-token candidates are scored by their first token.
    """

    def __init__(self, *, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 60.0,
                 max_retries: int = 3, concurrency: int = 8, top_logprobs: int = 10) -> None:
        from autogen_ext.models.openai import OpenAIChatCompletionClient

        self.name = model
        self.base_url = base_url
        self.stats = BackendStats()
        self._top = top_logprobs
        self._sem = asyncio.Semaphore(concurrency)
        self.client = OpenAIChatCompletionClient(
            model=model, base_url=base_url, api_key=os.environ.get(api_key_env) or "unused",
            timeout=timeout_s, max_retries=max_retries, include_name_in_message=False,
            model_info={"vision": False, "function_calling": False, "json_output": False,
                        "family": "unknown", "structured_output": False},
        )

    async def _create(self, messages: Sequence[ChatMessage], args: dict):
        async with self._sem:
            try:
                return await self.client.create(to_autogen(messages), extra_create_args=args)
            except Exception as exc:  # the openai SDK has already retried with backoff
                msg = str(exc).splitlines()[0] if str(exc) else ""
                raise BackendError(f"model server {self.base_url} failed: {type(exc).__name__}: {msg}") from exc

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        async def one(r: GenerateRequest) -> str:
            res = await self._create(r.messages, {"max_tokens": r.max_new_tokens, "temperature": r.temperature,
                                                  "top_p": r.top_p, "seed": r.seed})
            self.stats.generate_calls += 1
            self.stats.prompt_tokens += res.usage.prompt_tokens
            self.stats.generated_tokens += res.usage.completion_tokens
            return res.content if isinstance(res.content, str) else ""

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def score_choices(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        async def one(r: ScoreRequest) -> list[float]:
            res = await self._create(r.messages, {"max_tokens": 1, "temperature": 0.0, "logprobs": True,
                                                  "top_logprobs": self._top})
            self.stats.score_calls += 1
            text = res.content if isinstance(res.content, str) else ""
            if res.logprobs:
                first = res.logprobs[0]
                table = {first.token.strip(): first.logprob}
                for t in first.top_logprobs or []:
                    tok = bytes(t.bytes or []).decode("utf-8", "ignore").strip()
                    table.setdefault(tok, t.logprob)
                raw = [table.get(c.strip(), UNSEEN_LOGPROB) for c in r.choices]
            else:
                self.stats.fallbacks += 1
                m = re.match(r"\s*\(?([A-Za-z0-9]+)", text)
                raw = [0.0 if m and m.group(1).strip() == c.strip() else UNSEEN_LOGPROB for c in r.choices]
            z = math.log(sum(math.exp(x) for x in raw))
            return [x - z for x in raw]

        return list(await asyncio.gather(*(one(r) for r in requests)))
