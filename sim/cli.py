"""The ``agora`` command: Hydra at the edge, dataclasses below it."""

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
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from agents.llm.base import BackendError
from alignment.launch import TrainingError
from alignment.preferences import SchemaError
from scenarios.errors import InputError
from sim.config import AgoraConfig, schema, structured
from sim.display import inert, inert_lines

if TYPE_CHECKING:
    from sim.report.compare import Unfinished

log = logging.getLogger("agora")


def register_configs() -> None:
    """Hydra's ConfigStore entries: the schema (``agora_schema``) and the ``study`` group: each registered
    experiment's node (``society``, the default, in ``conf/config.yaml``; another selected by its
    ``conf/experiment/<name>.yaml``: ``override /study: <name>``)."""
    from sim.experiments.registry import options

    store = ConfigStore.instance()
    store.store(name="agora_schema", node=schema())
    for name, exp in options().items():
        store.store(group="study", name=name, node=structured(exp.study))


register_configs()


def ray_gpus(*devices: str) -> int:
    """``${agora_gpus:...}`` in ``conf/hydra/launcher/ray_cluster.yaml``: 1 GPU per sweep point when any of the
    run's device settings says ``cuda``, else 0 (``auto`` asks for none: Ray gives a task only what it asks for)."""
    return int(any(str(d).startswith("cuda") for d in devices))


OmegaConf.register_new_resolver("agora_gpus", ray_gpus, replace=True)


class Failed(SystemExit):
    """:func:`fail`'s exit (status 2), carrying its line: a sweep point turns it into :class:`SweepPointFailed`."""

    def __init__(self, line: str) -> None:
        super().__init__(2)
        self.line = line


class SweepPointFailed(Exception):
    """A ``--multirun`` point that failed. Raised rather than exited: every Hydra launcher (basic, joblib, Ray,
    Submitit) then records that job as failed and finishes the others, and the sweep ends with this line."""


PROG: ContextVar[str] = ContextVar("prog", default="agora")  # the running command's name, set by interruptible


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
    return ": ".join(kept) or type(exc).__name__


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
        raise ValueError(f"bad config: Could not append '{unknown[0]}': Key '{unknown[0].rsplit('.', 1)[-1]}' not in "
                         f"'{unknown[1]}'")
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


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def _eval_paths(cfg: AgoraConfig) -> None:
    """``agora-eval``'s inputs: its suites' files and folders (its backend's model folder is checked as it loads)."""
    from alignment.config import DEFAULT_EVAL_SUITES
    from sim.gate.probes import eval_paths

    eval_paths(cfg.eval, cfg.eval.suites or DEFAULT_EVAL_SUITES)


def _point_problem(loader: Any, base: DictConfig, point: list[str], num: int,
                   inputs: Callable[[AgoraConfig], None]) -> str | None:
    """Why one sweep point's run would be refused before its work (composed as a launcher composes it), or None."""
    from omegaconf import open_dict, read_write

    try:
        cfg = loader.load_sweep_config(base, point)
        with open_dict(cfg):
            cfg.hydra.job.id = cfg.hydra.job.num = num
        HydraConfig.instance().set_config(cfg)  # for ${hydra:...} in a point's values
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
        inputs(checked_config(cfg))
    except (HydraException, OmegaConfBaseException) as exc:
        return f"bad config: {hydra_error_line(exc)}"
    except (ValueError, BackendError) as exc:  # checked_config's, and InputError
        return str(exc)
    return None


def hydra_args(argv: Sequence[str], prog: str) -> argparse.Namespace | None:
    """The command line as Hydra's own parser reads it; its mistakes as one ``PROG: error:`` line (Hydra prints
    argparse's usage block, or raises a ValueError with a traceback for ``--cfg`` with ``--multirun``). None for
    ``--version``, which Hydra answers."""
    from hydra._internal.utils import get_args_parser

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
            args = get_args_parser().parse_args(list(argv))
    except SystemExit as exc:
        if not exc.code:
            return None
        error = [ln for ln in said.getvalue().splitlines() if ": error: " in ln]
        fail((error[-1].split(": error: ", 1)[1] if error else said.getvalue()) + f" (see {prog} --help)", prog,
             logged=False)
    commands = args.run + (args.cfg is not None) + args.multirun + args.shell_completion + (args.info is not None)
    if commands > 1:
        fail(f"only one of --run, --multirun, --cfg, --info and --shell-completion can be given (see {prog} --help)",
             prog, logged=False)
    if args.resolve and args.cfg is None and not args.help:
        fail("--resolve goes with --cfg or --help", prog, logged=False)
    return args


def check_sweep(argv: Sequence[str], config_name: str, prog: str = "agora") -> None:
    """Refuse a ``--multirun`` sweep in one line (exit 2) when any of its points would be refused, before the
    first point runs and before Hydra makes any folder.

    Each point is composed as Hydra composes it for a launcher: the basic sweeper's expansion of the
    command line's task overrides and ``hydra.sweeper.params`` (``BasicSweeper.split_arguments``), then
    ``load_sweep_config`` with the point's number set; and checked as the point's own run would check it
    before its work: :func:`checked_config`, then what it reads from outside
    (:func:`sim.experiments.check_inputs`; ``agora-eval``: its suites' paths). Every launcher (basic, joblib,
    submitit, ray) starts a sweep from here. Nothing
    is checked for a single run (its own check comes first), for another sweeper (Optuna, Ax: they choose
    points as they go), or for ``--config-dir``/``--config-path`` (Hydra reports what it cannot compose)."""
    from hydra import initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    from sim.experiments import check_inputs

    args = hydra_args(argv, prog)
    if args is None or args.help or args.hydra_help or args.cfg or args.info or args.shell_completion or args.config_dir \
            or args.config_path:
        return
    overrides, name = list(args.overrides), args.config_name or config_name
    with initialize_config_dir(config_dir=str(CONF_DIR), job_name="cli", version_base="1.3"):
        hydra_app = GlobalHydra.instance().hydra
        assert hydra_app is not None
        if not args.multirun and hydra_app.get_mode(config_name=name, overrides=overrides) != RunMode.MULTIRUN:
            return
        try:
            base = hydra_app.compose_config(name, [*overrides, "hydra.mode=MULTIRUN"], run_mode=RunMode.MULTIRUN)
            if not str(base.hydra.sweeper.get("_target_", "")).endswith(".BasicSweeper"):
                return
            given = base.hydra.sweeper.get("params")
            params = [f"{k}={v}" for k, v in (OmegaConf.to_container(given, resolve=False) if given else {}).items()]
            task = OmegaConf.to_container(base.hydra.overrides.task, resolve=False)
            parser = OverridesParser.create(config_loader=hydra_app.config_loader)
            (points,) = BasicSweeper.split_arguments(parser.parse_overrides([*params, *task]), None)
        except (HydraException, OmegaConfBaseException):
            return  # Hydra says what it cannot compose, as for one run
        varying = {o.split("=", 1)[0] for o in {o for pt in points for o in pt} if sum(o in pt for pt in points) < len(points)}
        try:
            for i, point in enumerate(points):
                why = _point_problem(hydra_app.config_loader, base, list(point), i,
                                     check_inputs if config_name == "config" else _eval_paths)
                if why:
                    shown = " ".join(o for o in point if o.split("=", 1)[0] in varying) or " ".join(point)
                    fail(f"sweep point #{i} of {len(points)} ({shown}) would be refused, so no point was run: {why}",
                         prog, logged=False)
        finally:
            HydraConfig.instance().cfg = None  # type: ignore[assignment]  # the sweep's own points set it again


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _main(dcfg: DictConfig) -> None:
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return _run(dcfg)
    try:
        _run(dcfg)
    except Failed as exc:
        point = re.sub(r"\\(.)", r"\1", " ".join(o for o in hc.overrides.task if not o.startswith("hydra")))  # Hydra's escapes
        raise SweepPointFailed(f"sweep point #{hc.job.num} ({point}) failed: {exc.line.removeprefix('agora: error: ')}") from None


def _run(dcfg: DictConfig) -> None:
    from sim.run.checkpoint import RunComplete

    cfg = typed_config(dcfg)
    out = Path(HydraConfig.get().runtime.output_dir)
    if not cfg.resume and any(_key(o) == "resume" for o in HydraConfig.get().overrides.task):
        bad_config("resume= needs the folder of the run to continue (resume=outputs/NAME/TIMESTAMP)")
    if cfg.resume:
        cfg, out = _resumed(cfg.resume)

    from sim.experiments import Refused, check_inputs, run_experiment
    from sim.experiments.registry import get
    from sim.report.console import finished_lines

    try:
        check_inputs(cfg)
    except (InputError, BackendError) as exc:
        bad_config(str(exc))
    try:
        summary = run_experiment(cfg, out)
    except Refused as exc:  # before any work (sim.experiments.preflight): the folder goes, as for a bad config
        bad_config(str(exc))
    except RunComplete as exc:  # the same command again, or a sweep point retried after it had finished
        print(inert(f"agora: {exc}", newlines=False))
        return
    except (InputError, BackendError, SchemaError) as exc:
        fail(str(exc))
    except TrainingError as exc:  # a training child failed: what it finished is kept, a resume retrains from its checkpoint
        fail(str(exc) + _kept(out))
    except OSError as exc:  # e.g. disk full, a folder that became read-only: the last checkpoint stays
        fail(os_error_line(exc) + _kept(out))
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see main)
        to_run_log(f"agora: interrupted{_kept(out)}")
        print(inert(f"agora: interrupted{_kept(out)}", newlines=False), file=sys.stderr)
        sys.exit(130)
    exp = get(summary["kind"])
    print(finished_lines(summary, out, exp.console if exp is not None else None))


def _kept(out: Path) -> str:
    from sim.run.checkpoint import CHECKPOINT

    return f" (the last checkpoint is kept: agora resume={out})" if (out / CHECKPOINT).is_file() else ""


def _interrupted(signum: int, frame: object) -> NoReturn:
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
    PROG.set(prog)
    try:
        entry()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)


def _resumed(run_dir: str) -> tuple[AgoraConfig, Path]:
    """The config stored in an unfinished run's checkpoint, and that run's folder (outputs go back there)."""
    from sim.run.checkpoint import read_checkpoint

    out = Path(run_dir)
    try:
        state = read_checkpoint(out)
    except InputError as exc:
        fail(str(exc))
    from sim.experiments.registry import study_class
    from sim.run.checkpoint import CHECKPOINT
    from sim.run.ids import MAY_CHANGE_ON_RESUME, resume_overrides, resumed_config, stored_kind

    kept, ignored = resume_overrides(list(HydraConfig.get().overrides.task))
    if ignored:
        log.warning("resume: using the config stored in %s; ignoring %s (only %s may change)", out, " ".join(ignored),
                    ", ".join(MAY_CHANGE_ON_RESUME))
    try:
        cfg = resumed_config(state["config"], kept, study_class(stored_kind(state["config"])))
    except Exception as exc:  # OmegaConf type errors and __post_init__ checks, as in typed_config
        fail(f"{out / CHECKPOINT}: the stored config is not valid: {str(exc).strip().splitlines()[0]}")
    assert isinstance(cfg, AgoraConfig)
    return dataclasses.replace(cfg, resume=str(out)), out


def _key(override: str) -> str:
    """``resume`` for ``resume=...``, ``+resume=...`` and ``++resume=...``."""
    return override.split("=", 1)[0].lstrip("+")


def resume_argv(argv: list[str]) -> list[str]:
    """Command-line overrides with a resumed run's Hydra output sent back into the run's own folder.

    Without this Hydra makes ``outputs/<name>/<timestamp>/`` in the current folder for every
    ``resume=DIR`` and writes the log there. ``hydra.run.dir=${resume}`` (an interpolation, so no path
    needs quoting for Hydra's grammar) makes ``cli.log`` in DIR, which the file handler appends to;
    ``hydra.output_subdir=null`` keeps DIR's ``.hydra/`` from being overwritten with the resume's
    overrides (it records how the run was started). A ``hydra.run.dir=`` given with ``resume=`` is dropped.
    An empty ``resume=`` or a missing folder fails here, before Hydra makes a folder.
    """
    values = [a.split("=", 1)[1] for a in argv if "=" in a and _key(a) == "resume"]
    if not values:
        return argv
    run_dir = values[-1].strip("'\"")
    if run_dir == "":
        bad_config("resume= needs the folder of the run to continue (resume=outputs/NAME/TIMESTAMP)")
    if not Path(run_dir).is_dir():  # before Hydra makes it to hold cli.log
        fail(f"resume={run_dir}: no such run folder")
    kept = [a for a in argv if _key(a) not in ("hydra.run.dir", "hydra.output_subdir")]
    return kept + ["hydra.run.dir=${resume}", "hydra.output_subdir=null"]


def check_run_dir_free(argv: list[str], prog: str = "agora") -> None:
    """Fail (one line, exit 2) if a running run holds the folder this command would write into, before
    Hydra appends to its ``cli.log`` and rewrites its ``.hydra/``: ``resume=DIR``, or a literal
    ``hydra.run.dir=DIR`` (a timestamped default folder is new). The run's own lock decides the rest."""
    from sim.run.lock import check_unlocked

    value = lambda key: [a.split("=", 1)[1].strip("'\"") for a in argv if "=" in a and _key(a) == key]  # noqa: E731
    dirs = [d for d in (value("resume") or value("hydra.run.dir"))[-1:] if d and "${" not in d]
    try:
        for d in dirs:
            check_unlocked(Path(d))
    except InputError as exc:
        fail(str(exc), prog)


def check_run_folder(argv: list[str], config_name: str = "config", kind: str | None = None, prog: str = "agora") -> None:
    """Apply the run-folder policy (:func:`sim.run.checkpoint.claim`) to ``agora ... hydra.run.dir=DIR`` when DIR
    already holds a run, before Hydra rewrites DIR's ``.hydra/`` and appends to its ``cli.log``: another run's
    folder is refused and this run's finished folder is left as it is (exit 0), touching nothing; this run's
    checkpoint goes on to be resumed. The config is composed here as Hydra will compose it; a command that
    does not compose is left to Hydra's own error. The run's :class:`~sim.run.checkpoint.Checkpoint` applies the
    same policy to every run, sweep points included."""
    from sim.run.checkpoint import CHECKPOINT, RunComplete, claim

    value = lambda key: [a.split("=", 1)[1].strip("'\"") for a in argv if "=" in a and _key(a) == key]  # noqa: E731
    dirs = value("hydra.run.dir")[-1:]
    if not dirs or "${" in dirs[0] or value("resume") or any(a.startswith("-") for a in argv):
        return
    out = Path(dirs[0])
    if not ((out / "summary.json").is_file() or (out / CHECKPOINT).is_file()):
        return
    from hydra import compose, initialize_config_dir

    from sim.run.lifecycle import run_id_for

    try:
        with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
            dcfg = compose(config_name, overrides=argv)
        cfg = None if unknown_key(dcfg) else OmegaConf.to_object(dcfg)
    except Exception:  # Hydra and the config's checks say what is wrong, in one line, once it runs
        return
    if not isinstance(cfg, AgoraConfig):
        return
    try:
        claim(out, run_id_for(cfg, kind), None)
    except RunComplete as exc:
        print(inert(f"{prog}: {exc}", newlines=False))
        sys.exit(0)
    except InputError as exc:
        fail(str(exc), prog)


def main() -> None:
    check_sweep(sys.argv[1:], "config")
    check_run_dir_free(sys.argv[1:])
    check_run_folder(sys.argv[1:])
    sys.argv[1:] = resume_argv(sys.argv[1:])
    interruptible(lambda: run_hydra(_main), "agora")



# -- agora-eval ----------------------------------------------------------------------------------
@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def _eval_main(dcfg: DictConfig) -> None:
    from sim.experiments.entry_points import run_eval
    from sim.experiments.evaluate import eval_inputs
    from sim.report.eval import report_lines
    from sim.run.checkpoint import RunComplete

    cfg = typed_config(dcfg)
    out = Path(HydraConfig.get().runtime.output_dir)
    if cfg.resume:
        cfg, out = _resumed(cfg.resume)
    try:
        inputs = eval_inputs(cfg)  # every path and file checked before the model loads
    except InputError as exc:
        bad_config(str(exc))
    try:
        summary = run_eval(cfg, out, inputs)
    except RunComplete as exc:
        print(inert(f"agora-eval: {exc}", newlines=False))
        return
    except (InputError, BackendError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_error_line(exc))
    print(inert(f"agora-eval: {', '.join(summary['suites'])} -> {out}", newlines=False) + "\n"
          + inert_lines(report_lines(summary)))


def eval_main() -> None:
    if {"-h", "--help"} & set(sys.argv[1:]):  # Hydra's --help would print agora's page (its config is agora's)
        from sim.report.console import eval_help

        print(eval_help())
        return
    check_sweep(sys.argv[1:], "eval", "agora-eval")
    check_run_dir_free(sys.argv[1:], "agora-eval")
    from sim.experiments.entry_points import EVAL

    check_run_folder(sys.argv[1:], "eval", EVAL, "agora-eval")  # before Hydra rewrites the folder's .hydra/
    sys.argv[1:] = resume_argv(sys.argv[1:])
    interruptible(lambda: run_hydra(_eval_main), "agora-eval")



# -- agora-report --------------------------------------------------------------------------------
def report_main(argv: Sequence[str] | None = None) -> None:
    ap = OneLineParser(prog="agora-report", description="Compare finished agora runs or a --multirun sweep side by "
                       "side (report.md, report.html, comparison.parquet, plots); runs that did not finish are listed "
                       "with the reason (failed, killed, interrupted, running, never started).")
    ap.add_argument("dirs", nargs="+", help="run folders, or folders holding runs (a sweep's multirun/... folder)")
    ap.add_argument("-o", "--out", type=_path, help="output folder (default: the one folder given when it holds runs, "
                    "e.g. a sweep; DIR/agora_report for one run folder, whose own report.md stays; ./agora_report for "
                    "several)")
    args = ap.parse_args(argv)
    from sim.report.compare import NotARun, compare, find_runs, plural, unfinished_runs

    out = args.out or default_report_dir([Path(d) for d in args.dirs])
    unfinished = unfinished_runs(args.dirs)
    unfinished += never_started(args.dirs)
    told = (f"{len(unfinished)} did not finish: " + "; ".join(f"{u.folder} ({u.reason})" for u in unfinished)
            if unfinished else "")
    try:
        runs = find_runs(args.dirs)
        path = compare(args.dirs, out, unfinished)
    except (FileNotFoundError, NotARun) as exc:
        fail(f"{exc}" + (f"; {told}" if told else ""), "agora-report", logged=False)
    except OSError as exc:  # the output folder: a file, read-only, disk full
        fail(f"cannot write the report: {os_error_line(exc)}", "agora-report", logged=False)
    print(inert(f"agora-report: compared {plural(len(runs), 'run')} -> {path}" + (f"; {told}" if told else ""),
                newlines=False))


def never_started(dirs: Sequence[str]) -> list[Unfinished]:
    """Points of each ``--multirun`` sweep at or below ``dirs`` (a folder holding Hydra's ``multirun.yaml``) that
    made no folder: the basic launcher stops a sweep at a point that exits, so later points never start. The
    points are the sweep's overrides expanded as Hydra's basic sweeper expands them; a point has started when a
    run folder below the sweep holds its overrides (``.hydra/overrides.yaml``) or is named by its number."""
    import yaml
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from sim.report.compare import Unfinished

    out: list[Unfinished] = []
    for sweep in sorted({m.parent for d in map(Path, dirs) if d.is_dir() for m in d.rglob("multirun.yaml")}):
        try:
            hydra_cfg = OmegaConf.load(sweep / "multirun.yaml").hydra
            if not str(hydra_cfg.sweeper.get("_target_", "")).endswith(".BasicSweeper"):
                continue  # another sweeper (Optuna, Ax...) chooses its points as it goes
            given = hydra_cfg.sweeper.get("params")
            params = [f"{k}={v}" for k, v in (OmegaConf.to_container(given, resolve=False) if given else {}).items()]
            task = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)
            (points,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides([*params, *task]), None)
        except Exception:  # noqa: BLE001 — an unreadable or foreign multirun.yaml: nothing to add
            continue
        started: Counter[tuple[str, ...]] = Counter()  # two points of a sweep may have the same overrides
        for ov in sweep.rglob(".hydra/overrides.yaml"):
            try:
                started[tuple(sorted(map(str, yaml.safe_load(ov.read_text()) or [])))] += 1
            except (OSError, yaml.YAMLError, UnicodeDecodeError):
                continue
        for i, point in enumerate(points):
            if started[tuple(sorted(point))] > 0:
                started[tuple(sorted(point))] -= 1
            elif not (sweep / str(i)).exists():
                out.append(Unfinished(str(sweep / str(i)), " ".join(point), f"never started: no folder; point #{i} of "
                                      f"{len(points)}"))
    return out


def default_report_dir(dirs: list[Path]) -> Path:
    """Where ``agora-report`` writes without ``-o`` (as its ``--help`` says)."""
    if len(dirs) != 1:
        return Path("agora_report")
    return dirs[0] / "agora_report" if (dirs[0] / "summary.json").is_file() else dirs[0]


# -- agora-sanity, agora-injection: measurements with their own small argument lists -------------
def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [``low``, ``high``] (a bad count fails at once, not after the model loads)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:,}, got {value:,}")
        return value
    return parse


def _path(text: str) -> Path:
    """An argparse type: a non-empty path (``Path('')`` is the current folder, never what was meant)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a path, got ''")
    return Path(text)


def _file_path(text: str) -> Path:
    """An argparse type: a file's path; a name ending in a separator means a folder (``Path`` would drop the slash)."""
    if text.strip() and text.rstrip().endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(f"names a file, got the folder '{text}' (e.g. {text.rstrip('/' + os.sep)}/injection.json)")
    return _path(text)


SEED = _int_in(0, 2**32 - 1)  # torch.manual_seed and numpy's legacy seeding take 32-bit seeds


def _writable_output(ap: argparse.ArgumentParser, path: Path, folder: bool) -> None:
    """Fail before the work, in one line, when the result could not be written at the end."""
    try:
        if folder:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.parent.is_dir() or path.is_dir():
            raise NotADirectoryError(2, "no such folder" if not path.parent.is_dir() else "is a folder", str(path))
    except OSError as exc:
        ap.error(f"cannot write {os_error_line(exc)}")


def _measure(prog: str, work: Callable[[], None]) -> None:
    """Run a measurement command's work with its input and backend errors (missing weights, a file it cannot
    write) as one ``PROG: error:`` line, exit 2."""
    from sim.run.checkpoint import RunComplete

    try:
        interruptible(work, prog)
    except RunComplete as exc:  # the same command again after it finished
        print(inert(f"{prog}: {exc}", newlines=False))
    except (InputError, BackendError) as exc:
        fail(str(exc), prog, logged=False)
    except OSError as exc:
        fail(os_error_line(exc), prog, logged=False)


def sanity_main(argv: Sequence[str] | None = None) -> None:
    from alignment.sanity import max_pairs

    ap = OneLineParser(prog="agora-sanity", description="Known-rule sanity check: do the reward model and DPO "
                       "learn a rule planted in synthetic preferences? (a run like every run: report.md, summary.json; "
                       "the same command again resumes a stopped one)")
    ap.add_argument("--out", type=_path, default=Path("outputs/sanity"), help="output folder (default outputs/sanity)")
    ap.add_argument("--train", type=_int_in(2, max_pairs() - 2), default=64, help="training pairs (default 64)")
    ap.add_argument("--eval", type=_int_in(2, max_pairs() - 2), default=32, help="held-out pairs (default 32)")
    ap.add_argument("--seed", type=SEED, default=0)
    args = ap.parse_args(argv)
    if args.train + args.eval > max_pairs():
        ap.error(f"--train + --eval must be <= {max_pairs()} (two pairs per bundled dilemma), got {args.train + args.eval}")
    _writable_output(ap, args.out, folder=True)
    _measure("agora-sanity", lambda: _sanity(args.out, args.train, args.eval, args.seed))


def _sanity(out: Path, train: int, held_out: int, seed: int) -> None:
    from agents.llm.embedded.weights import require_default_weights
    from sim.experiments.entry_points import run_sanity_command, sanity_lines

    require_default_weights(minilm=True)  # the reward model's backbone and the policy, before any training
    print("\n".join(sanity_lines(run_sanity_command(out, train, held_out, seed))))


def injection_main(argv: Sequence[str] | None = None) -> None:
    from scenarios.dilemma import load_dilemmas

    pool = len(load_dilemmas("default"))
    ap = OneLineParser(prog="agora-injection", description="How often does text an agent writes move a judge's "
                       "label? Before and after agora's mitigations (writes --out, and report.md and summary.json beside "
                       "it: its folder is the run's; the same command again resumes a stopped one).")
    ap.add_argument("--dilemmas", type=_int_in(1, pool), default=40,
                    help=f"answer pairs, one per dilemma of the bundled set (default 40, at most {pool})")
    ap.add_argument("--seed", type=SEED, default=0)
    ap.add_argument("--out", type=_file_path, default=Path("outputs/injection/injection.json"),
                    help="output file (default outputs/injection/injection.json); its folder is the run's")
    args = ap.parse_args(argv)
    if args.out == Path("outputs/injection/injection.json"):
        args.out.parent.mkdir(parents=True, exist_ok=True)
    _writable_output(ap, args.out, folder=False)
    _measure("agora-injection", lambda: _injection(args.dilemmas, args.seed, args.out))


def _injection(n: int, seed: int, out: Path) -> None:
    from sim.experiments.entry_points import injection_lines, run_injection_command

    print("\n".join(injection_lines(run_injection_command(n, seed, out))))


if __name__ == "__main__":
    main()
