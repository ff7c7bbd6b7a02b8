"""The ``agora`` command: Hydra at the edge, dataclasses below it."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from agents.llm.base import BackendError
from scenarios.dilemma import InputError
from sim.config import AgoraConfig
from sim.store import SchemaError

ConfigStore.instance().store(name="agora_schema", node=AgoraConfig)
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


def eval_lines(block: dict) -> list[str]:
    from alignment.evaluate import report_lines

    return report_lines(block)


def report(summary: dict, out: Path) -> str:
    c, t, j, s = summary["counts"], summary["throughput"], summary["judge"], summary["steerability"]
    fmt = lambda x, p=3: "n/a" if x is None else f"{x:.{p}f}"  # noqa: E731
    return "\n".join([
        f"agora: run {summary['run_id']} finished in {summary['wall_seconds']:.0f} s -> {out}",
        f"  {c['agents']} agents x {c['steps']} steps: {c['stances']} stances "
        f"({c['unparsed_stance_texts']} of {c['initial_stances']} free-text replies unparseable), "
        f"{c['preferences']} preferences",
        f"  throughput: {fmt(t['stances_per_s'], 2)} stances/s, {fmt(t['preferences_per_s'], 2)} preferences/s",
        f"  judge: position-flip rate {fmt(j['position_flip_rate'], 2)}, "
        f"mean |p_a - 0.5| {fmt(j['label_informativeness_mean_abs_p_minus_half'])}",
        f"  steerability: mean spread of share choosing A across clusters {fmt(s['mean_cluster_share_spread'], 2)}, "
        f"of P(A) {fmt(s['mean_cluster_p_a_spread'], 4)}",
    ] + [f"  label quality: {line}" for line in quality_lines(summary.get("label_quality"))]
      + (["  " + line for line in eval_lines(summary["eval"]) if line] if "eval" in summary else []))


def quality_lines(block: dict | None) -> list[str]:
    from alignment.calibration import lines

    return lines(block) if block else []


def report_generations(summary: dict, out: Path) -> str:
    """Per-generation metrics as a table: one row per metric, one column per generation."""
    rows = summary["generations"]
    keys = [k for k in rows[0] if k not in ("generation",)]
    for r in rows[1:]:
        keys += [k for k in r if k not in keys and k != "generation"]
    width = max(len(k) for k in keys)
    lines = [f"agora: {len(rows)} generations in {summary['wall_seconds']:.0f} s -> {out}",
             f"  {'metric':<{width}}  " + "  ".join(f"{'gen ' + str(r['generation']):>12}" for r in rows)]
    for k in keys:
        cells = []
        for r in rows:
            v = r.get(k)
            cells.append(f"{v:>12.3f}" if isinstance(v, float) else f"{str(v if v is not None else '-')[:12]:>12}")
        lines.append(f"  {k:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def study_lines(summary: dict, out: Path) -> str:
    """An experiment's headline figures, one per line (the full report is in report.md)."""
    from sim.report import fmt_interval

    lines = [f"agora: {summary['kind']} run {summary['run_id']} finished in {summary['wall_seconds']:.0f} s -> {out}"]
    lines += [f"  {k}: {fmt_interval(v)}" for k, v in summary["headline"].items()]
    return "\n".join(lines + [f"  report: {out / 'report.md'}"])


def typed_config(dcfg: DictConfig) -> AgoraConfig:
    """The checked dataclass config of a Hydra entry point (quiet library loggers); bad values fail in one line."""
    for name in ("autogen_core", "autogen_core.events", "autogen_agentchat", "httpx", "httpx2", "openai", "MESA"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        cfg = OmegaConf.to_object(dcfg)
    except Exception as exc:  # __post_init__ checks and OmegaConf type errors
        fail(f"bad config: {str(exc).splitlines()[0]}")
    assert isinstance(cfg, AgoraConfig)
    return cfg


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _main(dcfg: DictConfig) -> None:
    cfg = typed_config(dcfg)
    out = Path(HydraConfig.get().runtime.output_dir)
    if not cfg.resume and any(_key(o) == "resume" for o in HydraConfig.get().overrides.task):
        fail("resume= needs the folder of the run to continue (resume=outputs/NAME/TIMESTAMP)")
    if cfg.resume:
        cfg, out = _resumed(cfg.resume)
    from sim.studies import runner_for

    try:
        summary = runner_for(cfg)(cfg, out)
    except (InputError, BackendError, SchemaError) as exc:
        fail(str(exc))
    except OSError as exc:  # e.g. a resumed run's folder that became read-only; the last checkpoint stays
        fail(os_error_line(exc))
    lines = {"society": report, "generations": report_generations}.get(summary["kind"], study_lines)
    print(lines(summary, out))


def _resumed(run_dir: str) -> tuple[AgoraConfig, Path]:
    """The config stored in an unfinished run's checkpoint, and that run's folder (outputs go back there)."""
    from sim.checkpoint import read_checkpoint

    out = Path(run_dir)
    try:
        state = read_checkpoint(out)
    except InputError as exc:
        fail(str(exc))
    from sim.run import TRANSPORT_KEYS

    allowed = tuple(f"llm.{k}=" for k in TRANSPORT_KEYS) + ("sim.progress=", "alignment.require_informative_labels=")
    given = [o for o in HydraConfig.get().overrides.task if not o.startswith(("resume=", "hydra."))]
    kept = [o for o in given if o.startswith(allowed)]  # e.g. the server moved: point the run at it
    ignored = [o for o in given if o not in kept]
    if ignored:
        log.warning("resume: using the config stored in %s; ignoring %s (only %s may change)", out, " ".join(ignored),
                    ", ".join(a.rstrip("=") for a in allowed))
    from sim.checkpoint import CHECKPOINT

    try:
        merged = OmegaConf.merge(OmegaConf.structured(AgoraConfig), state["config"], OmegaConf.from_dotlist(kept))
        cfg = OmegaConf.to_object(merged)
    except Exception as exc:  # OmegaConf type errors and __post_init__ checks, as in typed_config
        fail(f"{out / CHECKPOINT}: the stored config is not valid: {str(exc).strip().splitlines()[0]}")
    assert isinstance(cfg, AgoraConfig)
    cfg.resume = str(out)
    return cfg, out


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
        fail("resume= needs the folder of the run to continue (resume=outputs/NAME/TIMESTAMP)")
    if not Path(run_dir).is_dir():  # before Hydra makes it to hold cli.log
        fail(f"resume={run_dir}: no such run folder")
    kept = [a for a in argv if _key(a) not in ("hydra.run.dir", "hydra.output_subdir")]
    return kept + ["hydra.run.dir=${resume}", "hydra.output_subdir=null"]


def check_run_dir_free(argv: list[str]) -> None:
    """Fail (one line, exit 2) if a running run holds the folder this command would write into, before
    Hydra appends to its ``cli.log`` and rewrites its ``.hydra/``: ``resume=DIR``, or a literal
    ``hydra.run.dir=DIR`` (a timestamped default folder is new). The run's own lock decides the rest."""
    from sim.checkpoint import check_unlocked

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
    run_hydra(_main)


if __name__ == "__main__":
    main()
