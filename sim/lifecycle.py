"""One run lifecycle, shared by the society run, the generations loop and every experiment.

``Run.start``: the run id (from the config), the checkpoint (takes the folder's lock and, with
``resume=DIR``, reloads it: refused in one line before any model loads), the backend, the label-quality
gate. The runner then does its own work in checkpointed stages. ``Run.finish``: the report, then
``summary.json`` (written last: its presence marks a finished run), then the checkpoint is removed.
A runner is decorated with :func:`sim.checkpoint.runner`, which saves a failed attempt's counters and
releases the lock whatever happens.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.llm.base import LLMBackend
from sim import store
from sim.checkpoint import Checkpoint
from sim.config import AgoraConfig, LLMConfig

# (``tokenizer`` only renders the served model's own chat template for the echo form: how it is read, not what)
TRANSPORT_KEYS = ("base_url", "api_key_env", "timeout_s", "max_retries", "backoff_s", "concurrency", "tokenizer")
# study settings added after runs were published: hashed only into runs of their own kind, so every other
# run keeps the id (and the bytes) it had ({study.<key>: its study.kind})
OWN_KIND_ONLY = {"inverse": "inverse_constitution", "overton": "overton", "human": "human_distributions"}


def embedded_options(cfg: LLMConfig) -> dict[str, Any]:
    return {"device": cfg.device, "dtype": cfg.dtype, "max_batch_size": cfg.max_batch_size,
            "max_batch_tokens": cfg.max_batch_tokens, "max_context_tokens": cfg.max_context_tokens,
            "prefix_sharing": cfg.prefix_sharing, "prefix_cache_mb": cfg.prefix_cache_mb}


def make_backend(cfg: LLMConfig) -> LLMBackend:
    if cfg.backend == "embedded":
        from agents.llm.embedded import EmbeddedBackend

        return EmbeddedBackend(cfg.model_path, **embedded_options(cfg))
    if cfg.backend == "openai_compatible":
        from agents.llm.openai_compat import OpenAICompatibleBackend

        assert cfg.base_url and cfg.model
        return OpenAICompatibleBackend(base_url=cfg.base_url, model=cfg.model, api_key_env=cfg.api_key_env,
                                       timeout_s=cfg.timeout_s, max_retries=cfg.max_retries, backoff_s=cfg.backoff_s,
                                       concurrency=cfg.concurrency, tokenizer=cfg.tokenizer)
    from agents.llm.scripted import ScriptedBackend

    return ScriptedBackend(record=False)  # a run never reads back its requests


def run_id_for(cfg: AgoraConfig) -> str:
    """Deterministic: the same config and seed give the same id (so outputs are byte-identical)."""
    settings = dataclasses.asdict(cfg)
    settings["sim"].pop("progress")  # display only: must not change the id or the bytes
    settings.pop("resume")  # how a run is continued is not what it is
    settings.pop("eval")  # evaluation reads the society's outputs, it does not change them
    settings.pop("calibration")  # nor does the label-quality gate, nor whether a failed gate stops the run
    settings["alignment"].pop("require_informative_labels")
    for k in ("processes", "accelerate_config"):  # how training is spread over processes: equal weights (float tolerance)
        settings["alignment"].pop(k)
    for k in TRANSPORT_KEYS:  # where the model is served from and how patiently: not what the run is
        settings["llm"].pop(k)
    for key, kind in OWN_KIND_ONLY.items():
        if settings["study"]["kind"] != kind:
            settings["study"].pop(key)
    blob = json.dumps(settings, sort_keys=True, default=str)
    return f"{cfg.name}-s{cfg.seed}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


@dataclass
class Run:
    """A run between :meth:`start` and :meth:`finish`."""

    cfg: AgoraConfig
    out_dir: Path
    run_id: str
    kind: str
    ckpt: Checkpoint
    backend: LLMBackend
    label_quality: dict[str, Any] | None

    @classmethod
    def start(cls, cfg: AgoraConfig, out_dir: Path, kind: str, backend: LLMBackend | None = None,
              trains: bool = False) -> Run:
        """``trains``: the run trains on its labels (a failed gate may stop it, see ``sim.calibration``)."""
        from sim.calibration import start as gate

        run_id = run_id_for(cfg)
        ckpt = Checkpoint(out_dir, run_id, kind, cfg, None, resume=bool(cfg.resume))  # refuses before the model loads
        backend = backend or make_backend(cfg.llm)
        ckpt.track(backend.stats)
        quality = gate(cfg, backend, ckpt, trains)
        out_dir.mkdir(parents=True, exist_ok=True)
        return cls(cfg, out_dir, run_id, kind, ckpt, backend, quality)

    def finish(self, summary: dict[str, Any], report: Callable[[Path, dict[str, Any]], object]) -> dict[str, Any]:
        """Complete ``summary`` with what every run records, write the report and ``summary.json``, and
        remove the checkpoint: nothing is left to resume."""
        summary = {"run_id": self.run_id, "kind": self.kind, "wall_seconds": round(self.ckpt.wall_seconds, 1)} | summary
        summary.setdefault("label_quality", self.label_quality)
        summary.setdefault("backend", {"name": self.backend.name, **dataclasses.asdict(self.backend.stats)})
        summary.setdefault("config", dataclasses.asdict(self.cfg))
        report(self.out_dir, summary)
        store.write_json(summary, self.out_dir / "summary.json")
        self.ckpt.finish()
        return summary
