"""The command line's errors as one line each: ``PROG: error: ...`` (exit 2), Hydra's and OmegaConf's several-line
errors rewritten, a refused config's empty folder removed, Ctrl-C and SIGTERM as one ``PROG: interrupted`` line."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import logging
import os
import re
import shutil
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sim.config import AgoraConfig
from sim.display import inert


class Failed(SystemExit):
    """:func:`fail`'s exit (status 2), carrying its line: a sweep point turns it into :class:`SweepPointFailed`."""

    def __init__(self, line: str) -> None:
        super().__init__(2)
        self.line = line


class SweepPointFailed(Exception):
    """A ``--multirun`` point that failed. Raised rather than exited: every Hydra launcher (basic, joblib, Ray,
    Submitit) then records that job as failed and finishes the others, and the sweep ends with this line."""


PROG: ContextVar[str] = ContextVar("prog", default="agora")  # the running command's name, set by its entry point


def fail(msg: str, prog: str | None = None, logged: bool = True) -> NoReturn:
    """``PROG: error: MSG`` as one line on stderr, exit 2 (:class:`Failed`); also in the run's ``cli.log`` unless
    ``logged`` is false (a failed run's folder says why it failed; ``agora-report`` reads it there). ``prog``
    defaults to the running command's name (``agora``, ``agora-eval``, ...)."""
    prog = prog or PROG.get()
    # inert first (sim.display): a quoted file or server reply cannot move the terminal; its other line breaks
    # are escaped by then, so only LF is left to join the message into one line
    line = f"{prog}: error: {' '.join(inert(msg).splitlines())}"
    print(line, file=sys.stderr)
    if logged:
        to_run_log(line)
    raise Failed(line)


def to_run_log(line: str) -> None:
    """Append ``line`` to the run's log file (Hydra's file handler writes ``cli.log``), not to the console."""
    record = logging.LogRecord("agora", logging.ERROR, __file__, 0, line, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and handler.stream is not None and Path(handler.baseFilename).parent.is_dir():
            handler.handle(record)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line, ``PROG: error: ...`` (exit 2), as ``agora``'s are; ``--help``
    still prints the usage and every option (argparse's own error prints the usage block first)."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)", self.prog, logged=False)


def os_error_line(exc: OSError) -> str:
    """``file: problem`` for an OSError (``[Errno 13] ...`` says less and hides the second file of a rename)."""
    files = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    return f"{files}: {exc.strerror or exc}" if files else str(exc)


_NOISE = ("See https://hydra.cc", "Config search path", "full_key:", "object_type=", "reference_type=",
          "To append to your config", "Available options")


def hydra_error_line(exc: BaseException) -> str:
    """One line from a Hydra composition/override error and its OmegaConf cause (Hydra prints several:
    the error, its cause, the key path, the object type, a link)."""
    lines = [ln.strip().rstrip(".") for ln in str(exc).splitlines()]
    kept = [ln for ln in lines if ln and not ln.startswith(_NOISE)][:2]
    cause = exc.__cause__
    if isinstance(cause, OmegaConfBaseException) and str(cause).strip():
        first = str(cause).strip().splitlines()[0].strip()
        if first not in kept:
            kept.append(first)
    if isinstance(exc, OverrideParseException):
        kept.insert(0, f"cannot parse override '{exc.override}'")
    if isinstance(exc, MissingConfigException):  # its later lines list the options, one per line
        kept = kept[:1] + ([f"options: {', '.join(exc.options)}"] if exc.options else [])
    line = ": ".join(kept) or type(exc).__name__
    return line + _whose_settings(line)


def _whose_settings(line: str) -> str:
    """For ``study.<key>.*`` set on a run of another experiment, which experiment the settings belong to."""
    from sim.experiments.registry import experiments

    if PROG.get() != "agora":  # agora-eval runs no experiment
        return ""
    found = re.search(r"'study\.(\w+)[.'].*Key '\1' not in '\w+'", line)
    owner = next((e.name for e in experiments().values() if found and e.key == found[1]), None)
    return f" (study.{found[1]}.* are experiment={owner}'s settings: add experiment={owner})" if found and owner else ""


class _DropHydraJobLine(io.TextIOBase):
    """stderr less Hydra's ``Error executing job with overrides: [...]``: hydra 1.3's ``JobReturn.return_value``
    writes it for a failed sweep point, whose own ``agora: error:`` line is already printed (and the sweep's
    last line names the point), so each failure would read as three lines."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        if text.startswith("Error executing job with overrides:"):
            return len(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return self.stream.isatty()


@contextlib.contextmanager
def _without_hydras_job_line():
    real = sys.stderr
    sys.stderr = _DropHydraJobLine(real)
    try:
        yield
    finally:
        sys.stderr = real


def run_hydra(entry: Callable[[], None]) -> None:
    """Run a ``@hydra.main`` entry point with Hydra's own errors as one ``agora: error:`` line, exit 2.

    Hydra 1.3 prints composition and override errors itself (``run_and_report``: several lines, exit 1)
    unless ``HYDRA_FULL_ERROR=1``, when it raises them. Set, the errors reach us; a user who set it
    gets the full trace as before. OSErrors raised by Hydra itself come from making the run's output
    folder (``hydra.run.dir`` naming a file, a read-only folder).
    """
    traces = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    if not sys.stderr.isatty():  # Ray's launcher colours the forwarded lines of its workers: no escapes in a log file
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    try:
        with _without_hydras_job_line():
            entry()
    except SweepPointFailed as exc:  # the first failed point; Hydra's sweeper raises it once every point has run
        fail(f"{exc} (the other points ran; each point's folder has its cli.log)")
    except (HydraException, OmegaConfBaseException) as exc:
        if traces:
            raise
        fail(f"bad config: {hydra_error_line(exc)}")
    except OSError as exc:
        if traces:
            raise
        fail(f"cannot write the run's output folder (hydra.run.dir): {os_error_line(exc)}")
    except Exception as exc:  # a launcher's own failure: a job killed for good, a Ray task out of retries
        argv = sys.argv[1:]
        if traces or not ({"-m", "--multirun"} & set(argv) or "hydra.mode=MULTIRUN" in argv):
            raise
        dirs = [a.split("=", 1)[1] for a in argv if a.startswith("hydra.sweep.dir=")]
        first = (str(exc).strip().splitlines() or [""])[0]
        fail(f"the sweep's launcher stopped: {type(exc).__name__}: {first} (the same command with "
             f"hydra.sweep.dir={dirs[-1] if dirs else 'SWEEP_DIR'} keeps the finished points and resumes the others)")


def unknown_key(node: DictConfig, path: str = "") -> tuple[str, str] | None:
    """The first key under ``node`` that its dataclass lacks, and the dataclass's name; or None.

    Hydra's ``+key=value`` (and ``++``) adds a key through the struct flag that refuses ``key=value``;
    without this check ``OmegaConf.to_object`` then fails on the frozen dataclass with "cannot assign
    to field", which names neither the key's place nor the schema."""
    t = OmegaConf.get_type(node)
    names = {f.name for f in dataclasses.fields(t)} if dataclasses.is_dataclass(t) else None
    for k in node.keys():
        key = f"{path}{k}"
        if names is not None and k not in names:
            return key, t.__name__
        child = node._get_node(k)
        if isinstance(child, DictConfig) and not (child._is_none() or child._is_missing() or child._is_interpolation()):
            found = unknown_key(child, key + ".")
            if found:
                return found
    return None


def bad_config(msg: str) -> NoReturn:
    """``fail`` for a config refused before any work: the folder Hydra made for the run (``.hydra/`` and
    ``cli.log`` only) is removed first, so a mistyped command leaves nothing behind. A folder holding
    anything else (a run to resume, a user's files) is left as it is."""
    out = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None
    if out is not None and out.is_dir() and not {p.name for p in out.iterdir()} - {".hydra", "cli.log"}:
        logging.shutdown()  # close cli.log before it goes
        shutil.rmtree(out, ignore_errors=True)
        fail(msg, logged=False)
    fail(msg)


def checked_config(dcfg: DictConfig) -> AgoraConfig:
    """The checked dataclass config of a composed one, or :class:`ValueError` with the one-line reason
    (``bad config: ...``): a key its dataclass lacks, an OmegaConf type error, a ``__post_init__`` check."""
    unknown = unknown_key(dcfg)
    if unknown:
        line = f"Could not append '{unknown[0]}': Key '{unknown[0].rsplit('.', 1)[-1]}' not in '{unknown[1]}'"
        raise ValueError(f"bad config: {line}{_whose_settings(line)}")
    try:
        cfg = OmegaConf.to_object(dcfg)
    except Exception as exc:  # __post_init__ checks and OmegaConf type errors
        raise ValueError(f"bad config: {str(exc).splitlines()[0]}") from None
    assert isinstance(cfg, AgoraConfig)
    return cfg


def typed_config(dcfg: DictConfig) -> AgoraConfig:
    """The checked dataclass config of a Hydra entry point (quiet library loggers); bad values fail in one line."""
    for name in ("autogen_core", "autogen_core.events", "autogen_agentchat", "httpx", "httpx2", "openai", "MESA"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)  # a library's warning quoting agents' text goes through the log's inert format
    try:
        return checked_config(dcfg)
    except ValueError as exc:
        bad_config(str(exc))


_LAST_SIGNAL = [signal.SIGINT]  # the last stop signal, for _resend_dropped


def _resend_dropped(previous: Callable[[Any], None]) -> Callable[[Any], None]:
    """A ``sys.unraisablehook``: CPython prints and drops an exception raised where it cannot propagate (a garbage
    collector or weakref callback, a ``__del__``; a society step's ``StepCollector`` runs one), so an interrupt
    landing there would leave the run going. It is sent again from outside, a moment later, instead."""
    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            # a real signal, not _thread.interrupt_main's flag: it also wakes a main thread blocked in a wait
            resend = threading.Timer(0.05, signal.pthread_kill, args=(threading.main_thread().ident, _LAST_SIGNAL[0]))
            resend.daemon = True
            resend.start()
            return
        previous(unraisable)
    return hook


def _interrupted(signum: int, frame: FrameType | None) -> NoReturn:
    _LAST_SIGNAL[0] = signum
    # a kill (SIGTERM) stops a run the way Ctrl-C does: one line, checkpoint kept. The event loop then
    # cancels the agents' tasks, whose cancellation asyncio would log as tracebacks: not news here.
    # autogen's runtime logs an exception raised inside a message handler (this interrupt, when it lands
    # there) with its traceback, and a handler coroutine it never awaits warns at shutdown: not news either.
    for name in ("asyncio", "autogen_core", "autogen_agentchat"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
    raise KeyboardInterrupt


def interruptible(entry: Callable[[], None], prog: str) -> None:
    """Run ``entry`` with SIGTERM treated as Ctrl-C and either one as one line (exit 130)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupted)
    sys.unraisablehook = _resend_dropped(sys.unraisablehook)
    PROG.set(prog)
    try:
        entry()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)

