"""One run lifecycle, shared by the society run, the generations loop and every experiment.

``with Run(cfg, out_dir, backend, kind=...) as run:`` (the experiment registry's driver opens it; an experiment's
function only gets ``run``): the run id (:mod:`sim.run.ids`), the checkpoint (takes the folder's lock and, with
``resume=DIR``, reloads it: refused in one line before any model loads), the backend, the label-quality gate, and
one event loop for the whole run. The experiment writes its middle as checkpointed stages
(:meth:`Run.stage`: a progress bar, the stored result replayed on resume, its seconds recorded) and returns its
summary; :meth:`Run.finish` writes the report, then ``summary.json`` (written last: its presence marks a finished
run), then removes the checkpoint. Leaving the ``with`` block on an error saves the failed attempt's backend
counters; on every exit the loop is closed and the folder's lock released.

``agora-eval``, ``agora-sanity`` and ``agora-injection`` (:mod:`sim.experiments.entry_points`) finish with a dict:
their summaries are the free-form blocks they also write as ``eval.json``/``sanity.json`` (keys vary by suite).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from agents.llm.base import BackendError, LLMBackend
from agents.persona import PersonaConfig, support_line
from sim.config import AgoraConfig, LLMConfig
from sim.results import JSON, Codec, Summary
from sim.run import aio, signals, store
from sim.run.checkpoint import Checkpoint
from sim.run.ids import run_id_for
from sim.run.progress import bar as progress_bar

__all__ = ["Progress", "Run", "check_persona", "embedded_options", "make_backend", "run_id_for"]

log = logging.getLogger(__name__)


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


def check_persona(cfg: PersonaConfig, backend: LLMBackend) -> str | None:
    """Before any work: a steering layer the model lacks is refused in one line (:class:`BackendError`); a backend
    that cannot do all of ``cfg`` gets its one start-up line (``agents.persona.support_line``), logged and returned."""
    embedded = getattr(backend, "conditions_generation", False)  # the embedded backend steers and contrasts decoding
    if embedded and cfg.method == "steer":
        layers = backend.layer_count  # type: ignore[attr-defined]
        if cfg.layer >= layers:
            raise BackendError(f"persona.layer={cfg.layer}: {backend.name} has {layers} decoder layers (0 to {layers - 1})")
    line = support_line(backend.name, cfg, embedded=embedded)
    if line:
        log.warning(line)
    return line


class Progress:
    """The progress bar of the stage that is running, for work made before its stage starts (a coroutine made
    with ``run.progress`` as its bar): ``update`` moves that stage's bar, and does nothing between stages."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)


class Run:
    """A run between its start and its summary (see the module docstring).

    Args:
        cfg: the run's config.
        out_dir: its folder.
        backend: the LLM backend (None: made from ``cfg.llm``).
        kind: what the checkpoint and ``summary.json`` call the run (an experiment's name).
        trains: the run trains on its labels (a failed gate may stop it, see ``sim.gate.calibration``).
        gated: run the label-quality gate first (``agora-eval``, ``agora-sanity`` and ``agora-injection`` measure
            something else and skip it).
        folder: the option that chose ``out_dir``, named when the folder holds another run.

    Attributes:
        run_id, ckpt, backend, label_quality: set once the run has started.
        progress: the running stage's bar (:class:`Progress`).
    """

    def __init__(self, cfg: AgoraConfig, out_dir: Path, backend: LLMBackend | None = None, *, kind: str,
                 trains: bool = False, gated: bool = True, folder: str = "hydra.run.dir") -> None:
        self.cfg, self.out_dir, self.kind, self.trains = cfg, out_dir, kind, trains
        self.gated, self.folder = gated, folder
        self.run_id = run_id_for(cfg, kind)
        self.backend: LLMBackend = backend  # type: ignore[assignment]  # made by _open when None
        self.ckpt: Checkpoint = None  # type: ignore[assignment]
        self.label_quality: dict[str, Any] | None = None
        self.progress = Progress()
        self._loop: asyncio.Runner | None = None
        self._stages: list[str] = []

    # -- lifecycle -----------------------------------------------------------------------------------------
    def __enter__(self) -> Run:
        try:
            self._open()
        except BaseException:
            self._close(failed=True)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._close(failed=exc_type is not None)

    def _close(self, failed: bool) -> None:
        try:
            if self._loop is not None:  # first: it cancels what a failed stage left running, which may still count
                loop, self._loop = self._loop, None
                with signals.Held():  # a stop raised mid-close leaves the loop half-closed
                    loop.close()
        finally:
            try:
                if failed and self.ckpt is not None:
                    self.ckpt.save_counters()  # no unit is marked done: summary.json's counts cover every attempt
            finally:
                if self.ckpt is not None:
                    self.ckpt.release()

    def _open(self) -> None:
        from sim.gate.calibration import start as gate

        self.ckpt = Checkpoint(self.out_dir, self.run_id, self.kind, self.cfg, None,
                               resume=bool(self.cfg.resume), folder=self.folder)  # refuses before the model loads
        self.backend = self.backend or make_backend(self.cfg.llm)
        check_persona(self.cfg.persona, self.backend)
        self.ckpt.track(self.backend.stats)
        self.label_quality = gate(self.cfg, self.backend, self.ckpt, self.trains, self.run_async) if self.gated else None
        self.out_dir.mkdir(parents=True, exist_ok=True)

    # -- the experiment's middle ----------------------------------------------------------------------------
    def stage(self, name: str, work: Any, *, total: int | None = None, unit: str = "call", desc: str | None = None,
              codec: Codec = JSON, drop: tuple[str, ...] = ()) -> Any:
        """``work``'s result, computed once per run: replayed from the checkpoint when this stage is done.

        Args:
            name: the stage's name in the checkpoint and in ``summary.json``'s ``seconds``.
            work: a coroutine (run on the run's event loop), or a callable (its result; a coroutine it returns is
                run too). Work made before the stage reaches its bar through ``run.progress``.
            total, unit, desc: the progress bar (shown unless ``sim.progress=false``); ``desc`` defaults to ``name``.
            codec: how the result is stored and read back (:class:`~sim.results.Codec`): the same value whether or
                not the run stopped in between.
            drop: checkpoint ``extra`` keys that held the stage's partial progress, removed in the same write.
        """
        if name in self._stages:  # the checkpoint keys stages by name: a second one would replay the first's result
            raise ValueError(f"stage '{name}' already ran in this run: give each stage its own name")
        self._stages.append(name)
        if self.ckpt.done(name):
            if inspect.iscoroutine(work):
                work.close()  # replayed: never awaited
            return codec.decode(self.ckpt.stage(name, _unreachable))
        with progress_bar(total=total, desc=f"{self.kind}: {desc or name}", unit=unit,
                          disable=not self.cfg.sim.progress, leave=False) as bar:
            self.progress.bar = bar
            try:
                stored = self.ckpt.stage(name, lambda: codec.encode(self._complete(work)), drop)
            finally:
                self.progress.bar = None
        return codec.decode(stored)

    def _complete(self, work: Any) -> Any:
        result = work() if callable(work) and not inspect.iscoroutine(work) else work
        return self.run_async(result) if inspect.iscoroutine(result) else result

    def run_async(self, coro: Any) -> Any:
        """Run a coroutine on the run's one event loop (made at the first use, closed with the run); what it leaves
        running is cancelled and awaited when it ends (:func:`sim.run.aio.supervised`). A stop signal cancels it
        and is taken once the loop has stopped (:func:`sim.run.aio.run_on`)."""
        if self._loop is None:
            self._loop = asyncio.Runner()
        return aio.run_on(self._loop, coro)

    @property
    def seconds(self) -> dict[str, float]:
        """Compute seconds of each stage this run has gone through (over every attempt), rounded to 0.1 s."""
        return {k: round(self.ckpt.state["seconds"].get(k, 0.0), 1) for k in self._stages}

    def write_parquet(self, name: str, table: pl.DataFrame) -> None:
        """``<name>.parquet`` in the run's folder (atomic)."""
        store.write_parquet(table, self.out_dir / f"{name}.parquet")

    # -- the end ---------------------------------------------------------------------------------------------
    def finish(self, summary: Any, report: Callable[[Path, Any], object]) -> dict[str, Any]:
        """Complete ``summary`` with what every run records, write the report and ``summary.json``, and remove the
        checkpoint: nothing is left to resume. Returns the ``summary.json`` contents.

        ``summary``: a :class:`~sim.results.Summary` record (the report reads it), or, from an entry point
        (:mod:`sim.experiments.entry_points`), the dict of its free-form block (the report reads that)."""
        if not isinstance(summary, Summary):
            return self._finish_dict(summary, report)
        summary = dataclasses.replace(
            summary, run_id=self.run_id, kind=self.kind, wall_seconds=round(self.ckpt.wall_seconds, 1),
            seconds=self.seconds if summary.seconds is None else summary.seconds, label_quality=self.label_quality,
            backend={"name": self.backend.name, **dataclasses.asdict(self.backend.stats)},
            config=dataclasses.asdict(self.cfg))
        return self._write(report, summary, summary.to_json)

    def _finish_dict(self, summary: dict[str, Any], report: Callable[[Path, Any], object]) -> dict[str, Any]:
        summary = {"run_id": self.run_id, "kind": self.kind, "wall_seconds": round(self.ckpt.wall_seconds, 1)} | summary
        summary.setdefault("label_quality", self.label_quality)
        summary.setdefault("backend", {"name": self.backend.name, **dataclasses.asdict(self.backend.stats)})
        summary.setdefault("config", dataclasses.asdict(self.cfg))
        return self._write(report, summary, lambda: summary)

    def _write(self, report: Callable[[Path, Any], object], summary: Any, data: Callable[[], dict[str, Any]]
               ) -> dict[str, Any]:
        """The report, then ``summary.json`` (``data()``, after the report), then the checkpoint removed."""
        with signals.Held(after_success=False):  # a stop raised mid-plot can come out as matplotlib's own error
            report(self.out_dir, summary)
            out = data()
            store.write_json(out, self.out_dir / "summary.json")
            self.ckpt.finish()
        return out


def _unreachable() -> Any:
    raise AssertionError("a finished stage is replayed, not computed")
