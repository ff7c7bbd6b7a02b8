"""Any OpenAI-compatible chat server (vLLM, llama.cpp server, Ollama), read strictly from its JSON.

One module a job: :mod:`.replies` reads what a server answers (the prompt log-probability forms and the
scored-reply locator are :mod:`agents.llm.server_logprobs`), :mod:`.retry` retries transient failures and
counts each retry, :mod:`.transport` posts JSON over an aiohttp session bound to the running event loop, and
:mod:`.backend` is the backend composed of them.
"""

from agents.llm.openai_compat.backend import FORMS, OpenAICompatibleBackend, load_chat_template
from agents.llm.openai_compat.replies import UNSEEN_LOGPROB, ServerStatus, label_key, read_label_logprobs
from agents.llm.openai_compat.retry import Retrying, retry_cause
from agents.llm.openai_compat.transport import Transport
from agents.llm.openai_compat.transport import env_proxy as _env_proxy

__all__ = ["FORMS", "UNSEEN_LOGPROB", "OpenAICompatibleBackend", "Retrying", "ServerStatus", "Transport", "_env_proxy",
           "label_key", "load_chat_template", "read_label_logprobs", "retry_cause"]
