"""The ``agora`` command: Hydra at the edge, dataclasses below it."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from agents.llm.base import BackendError
from alignment.launch import TrainingError
from alignment.preferences import SchemaError
from scenarios.errors import InputError
from sim.config import AgoraConfig, schema

ConfigStore.instance().store(name="agora_schema", node=schema())
log = logging.getLogger("agora")


def fail(msg: str) -> NoReturn:
    print(f"agora: error: {' '.join(msg.splitlines())}", file=sys.stderr)
    sys.exit(2)


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


def run_hydra(entry: Callable[[], None]) -> None:
    """Run a ``@hydra.main`` entry point with Hydra's own errors as one ``agora: error:`` line, exit 2.

    Hydra 1.3 prints composition and override errors itself (``run_and_report``: several lines, exit 1)
    unless ``HYDRA_FULL_ERROR=1``, when it raises them. Set, the errors reach us; a user who set it
    gets the full trace as before. OSErrors raised by Hydra itself come from making the run's output
    folder (``hydra.run.dir`` naming a file, a read-only folder).
    """
    traces = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        entry()
    except (HydraException, OmegaConfBaseException) as exc:
        if traces:
            raise
        fail(f"bad config: {hydra_error_line(exc)}")
    except OSError as exc:
        if traces:
            raise
        fail(f"cannot write the run's output folder (hydra.run.dir): {os_error_line(exc)}")


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
    fail(msg)


def typed_config(dcfg: DictConfig) -> AgoraConfig:
    """The checked dataclass config of a Hydra entry point (quiet library loggers); bad values fail in one line."""
    for name in ("autogen_core", "autogen_core.events", "autogen_agentchat", "httpx", "httpx2", "openai", "MESA"):
        logging.getLogger(name).setLevel(logging.WARNING)
    unknown = unknown_key(dcfg)
    if unknown:
        bad_config(f"bad config: Could not append '{unknown[0]}': Key '{unknown[0].rsplit('.', 1)[-1]}' not in "
                   f"'{unknown[1]}'")
    try:
        cfg = OmegaConf.to_object(dcfg)
    except Exception as exc:  # __post_init__ checks and OmegaConf type errors
        bad_config(f"bad config: {str(exc).splitlines()[0]}")
    assert isinstance(cfg, AgoraConfig)
    return cfg


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _main(dcfg: DictConfig) -> None:
    cfg = typed_config(dcfg)
    out = Path(HydraConfig.get().runtime.output_dir)
    if not cfg.resume and any(_key(o) == "resume" for o in HydraConfig.get().overrides.task):
        bad_config("resume= needs the folder of the run to continue (resume=outputs/NAME/TIMESTAMP)")
    if cfg.resume:
        cfg, out = _resumed(cfg.resume)
    from sim.experiments import run_experiment
    from sim.report.console import finished_lines

    try:
        summary = run_experiment(cfg, out)
    except (InputError, BackendError, SchemaError) as exc:
        fail(str(exc))
    except TrainingError as exc:  # a training child failed: what it finished is kept, a resume retrains from its checkpoint
        fail(str(exc) + _kept(out))
    except OSError as exc:  # e.g. disk full, a folder that became read-only: the last checkpoint stays
        fail(os_error_line(exc) + _kept(out))
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see main)
        print(f"agora: interrupted{_kept(out)}", file=sys.stderr)
        sys.exit(130)
    print(finished_lines(summary, out))


def _kept(out: Path) -> str:
    from sim.checkpoint import CHECKPOINT

    return f" (the last checkpoint is kept: agora resume={out})" if (out / CHECKPOINT).is_file() else ""


def _interrupted(signum: int, frame: object) -> NoReturn:
    # a kill (SIGTERM) stops a run the way Ctrl-C does: one line, checkpoint kept. The event loop then
    # cancels the agents' tasks, whose cancellation asyncio would log as tracebacks: not news here.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    raise KeyboardInterrupt


def interruptible(entry: Callable[[], None], prog: str) -> None:
    """Run ``entry`` with SIGTERM treated as Ctrl-C and either one as one line (exit 130)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupted)
    try:
        entry()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)


def _resumed(run_dir: str) -> tuple[AgoraConfig, Path]:
    """The config stored in an unfinished run's checkpoint, and that run's folder (outputs go back there)."""
    from sim.checkpoint import read_checkpoint

    out = Path(run_dir)
    try:
        state = read_checkpoint(out)
    except InputError as exc:
        fail(str(exc))
    from sim.lifecycle import TRANSPORT_KEYS

    allowed = tuple(f"llm.{k}=" for k in TRANSPORT_KEYS) + ("sim.progress=", "alignment.require_informative_labels=")
    given = [o for o in HydraConfig.get().overrides.task if not o.startswith(("resume=", "hydra."))]
    kept = [o for o in given if o.startswith(allowed)]  # e.g. the server moved: point the run at it
    ignored = [o for o in given if o not in kept]
    if ignored:
        log.warning("resume: using the config stored in %s; ignoring %s (only %s may change)", out, " ".join(ignored),
                    ", ".join(a.rstrip("=") for a in allowed))
    from sim.checkpoint import CHECKPOINT

    try:
        merged = OmegaConf.merge(schema(), state["config"], OmegaConf.from_dotlist(kept))
        cfg = OmegaConf.to_object(merged)
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


def check_run_dir_free(argv: list[str]) -> None:
    """Fail (one line, exit 2) if a running run holds the folder this command would write into, before
    Hydra appends to its ``cli.log`` and rewrites its ``.hydra/``: ``resume=DIR``, or a literal
    ``hydra.run.dir=DIR`` (a timestamped default folder is new). The run's own lock decides the rest."""
    from sim.lock import check_unlocked

    value = lambda key: [a.split("=", 1)[1].strip("'\"") for a in argv if "=" in a and _key(a) == key]  # noqa: E731
    dirs = [d for d in (value("resume") or value("hydra.run.dir"))[-1:] if d and "${" not in d]
    try:
        for d in dirs:
            check_unlocked(Path(d))
    except InputError as exc:
        fail(str(exc))


def main() -> None:
    check_run_dir_free(sys.argv[1:])
    sys.argv[1:] = resume_argv(sys.argv[1:])
    interruptible(lambda: run_hydra(_main), "agora")



# -- agora-eval ----------------------------------------------------------------------------------
@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def _eval_main(dcfg: DictConfig) -> None:
    cfg = typed_config(dcfg)
    out = Path(HydraConfig.get().runtime.output_dir)
    from sim.experiments.evaluate import evaluate
    from sim.lifecycle import make_backend
    from sim.report.eval import report_lines
    from sim.store import atomic_write_bytes

    try:
        summary = evaluate(cfg, make_backend(cfg.llm), out)
    except (InputError, BackendError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_error_line(exc))
    text = "\n".join(report_lines(summary))
    atomic_write_bytes(out / "eval.md", (text + "\n").encode())
    print(f"agora-eval: {', '.join(summary['suites'])} -> {out}\n{text}")


def eval_main() -> None:
    if {"-h", "--help"} & set(sys.argv[1:]):  # Hydra's --help would print agora's page (its config is agora's)
        from sim.report.console import eval_help

        print(eval_help())
        return
    interruptible(lambda: run_hydra(_eval_main), "agora-eval")



# -- agora-report --------------------------------------------------------------------------------
def report_main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="agora-report", description="Compare finished agora runs or a --multirun sweep "
                                 "side by side (report.md, report.html, comparison.parquet, plots).")
    ap.add_argument("dirs", nargs="+", help="run folders, or folders holding runs (a sweep's multirun/... folder)")
    ap.add_argument("-o", "--out", help="output folder (default: the one folder given when it holds runs, e.g. a "
                    "sweep; DIR/agora_report for one run folder, whose own report.md stays; ./agora_report for several)")
    args = ap.parse_args(argv)
    from sim.report.compare import NotARun, compare, find_runs

    out = Path(args.out) if args.out else default_report_dir([Path(d) for d in args.dirs])
    try:
        path = compare(args.dirs, out)
    except (FileNotFoundError, NotARun) as exc:
        ap.exit(2, f"agora-report: error: {exc}\n")
    except OSError as exc:  # the output folder: a file, read-only, disk full
        ap.exit(2, f"agora-report: error: cannot write the report: {os_error_line(exc)}\n")
    print(f"agora-report: compared {len(find_runs(args.dirs))} runs -> {path}")


def default_report_dir(dirs: list[Path]) -> Path:
    """Where ``agora-report`` writes without ``-o`` (as its ``--help`` says)."""
    if len(dirs) != 1:
        return Path("agora_report")
    return dirs[0] / "agora_report" if (dirs[0] / "summary.json").is_file() else dirs[0]


# -- agora-sanity, agora-injection: measurements with their own small argument lists -------------
def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (a bad count fails at once, not after the model loads)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def _writable_output(ap: argparse.ArgumentParser, path: Path, folder: bool) -> None:
    """Fail before the work, in one line, when the result could not be written at the end."""
    try:
        if folder:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.parent.is_dir() or path.is_dir():
            raise NotADirectoryError(2, "no such folder" if not path.parent.is_dir() else "is a folder", str(path))
    except OSError as exc:
        ap.error(f"cannot write {os_error_line(exc)}")


def sanity_main() -> None:
    ap = argparse.ArgumentParser(prog="agora-sanity", description="Known-rule sanity check: do the reward model and DPO "
                                 "learn a rule planted in synthetic preferences?")
    ap.add_argument("--out", type=Path, default=Path("outputs/sanity"))
    ap.add_argument("--train", type=_at_least(2), default=64, help="training pairs (default 64)")
    ap.add_argument("--eval", type=_at_least(2), default=32, help="held-out pairs (default 32)")
    ap.add_argument("--seed", type=_at_least(0), default=0)
    args = ap.parse_args()
    _writable_output(ap, args.out, folder=True)
    from alignment.sanity import run_sanity

    result = run_sanity(args.out, args.train, args.eval, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sanity.json").write_text(json.dumps(result, indent=2, default=str))
    rm, dp = result["reward_model"], result["dpo"]
    print(f"reward model: held-out accuracy {rm['eval']['accuracy']:.3f} (chance 0.5), ECE {rm['eval']['ece']:.3f}, "
          f"{rm['pairs_per_s']:.1f} pairs/s")
    print(f"DPO (1 epoch): held-out implicit reward margin {dp['eval_margin_before']:.4f} -> {dp['eval_margin_after']:.4f}, "
          f"margin accuracy {dp['eval_margin_accuracy']:.3f}, {dp['pairs_per_s']:.2f} pairs/s")


def injection_main(argv: Sequence[str] | None = None) -> None:
    from agents.llm.embedded import EmbeddedBackend
    from scenarios.dilemma import load_dilemmas
    from sim.experiments.injection import answers, measure
    from sim.seeding import sample_dilemmas

    ap = argparse.ArgumentParser(prog="agora-injection", description="How often does text an agent writes move a judge's "
                                 "label? Before and after agora's mitigations (writes injection.json).")
    ap.add_argument("--dilemmas", type=_at_least(1), default=40, help="answer pairs, one per dilemma (default 40)")
    ap.add_argument("--seed", type=_at_least(0), default=0)
    ap.add_argument("--out", type=Path, default=Path("injection.json"))
    args = ap.parse_args(argv)
    _writable_output(ap, args.out, folder=False)
    backend = EmbeddedBackend()
    ds = sample_dilemmas(load_dilemmas("default"), args.dilemmas, args.seed, "injection")
    pairs = asyncio.run(answers(backend, ds, args.seed))
    result = asyncio.run(measure(backend, ds, pairs)) | {"model": backend.name, "seed": args.seed}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for pname, res in result["prompts"].items():
        for iname, r in res.items():
            print(f"{pname:7s} {iname:20s} moved (one order) {r['moved_one_order']:.3f}  moved (both) {r['moved']:.3f}  "
                  f"shift {r['shift']:+.4f}  max |shift| {r['max_abs_shift']:.4f}")

if __name__ == "__main__":
    main()
