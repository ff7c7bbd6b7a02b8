"""The run folder a command writes into, checked before Hydra touches it: ``resume=DIR`` sent back into the run's
own folder with its stored config, a folder held by a running run refused, another run's folder refused and this
run's finished folder left as it is."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from scenarios.errors import InputError
from sim.commands.errors import bad_config, fail, unknown_key
from sim.commands.sweeps import CONF_DIR
from sim.config import AgoraConfig
from sim.display import inert

log = logging.getLogger("agora")


def kept_note(out: Path, prog: str = "agora") -> str:
    """How to go on from a stopped run's folder, when it holds a checkpoint."""
    from sim.run.checkpoint import CHECKPOINT

    return f" (the last checkpoint is kept: {prog} resume={out})" if (out / CHECKPOINT).is_file() else ""


def resumed_run(run_dir: str) -> tuple[AgoraConfig, Path]:
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


def override_key(override: str) -> str:
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
    values = [a.split("=", 1)[1] for a in argv if "=" in a and override_key(a) == "resume"]
    if not values:
        return argv
    run_dir = values[-1].strip("'\"")
    if run_dir == "":
        bad_config("resume= needs the folder of the run to continue (resume=outputs/NAME/TIMESTAMP)")
    if not Path(run_dir).is_dir():  # before Hydra makes it to hold cli.log
        fail(f"resume={run_dir}: no such run folder")
    kept = [a for a in argv if override_key(a) not in ("hydra.run.dir", "hydra.output_subdir")]
    return kept + ["hydra.run.dir=${resume}", "hydra.output_subdir=null"]


def check_run_dir_free(argv: list[str], prog: str = "agora") -> None:
    """Fail (one line, exit 2) if a running run holds the folder this command would write into, before
    Hydra appends to its ``cli.log`` and rewrites its ``.hydra/``: ``resume=DIR``, or a literal
    ``hydra.run.dir=DIR`` (a timestamped default folder is new). The run's own lock decides the rest."""
    from sim.run.lock import check_unlocked

    value = lambda key: [a.split("=", 1)[1].strip("'\"") for a in argv if "=" in a and override_key(a) == key]  # noqa: E731
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

    value = lambda key: [a.split("=", 1)[1].strip("'\"") for a in argv if "=" in a and override_key(a) == key]  # noqa: E731
    dirs = value("hydra.run.dir")[-1:]
    if not dirs or "${" in dirs[0] or value("resume") or any(a.startswith("-") for a in argv):
        return
    out = Path(dirs[0])
    if not ((out / "summary.json").is_file() or (out / CHECKPOINT).is_file()):
        return
    from hydra import compose, initialize_config_dir

    from sim.run.lifecycle import run_id_for

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            dcfg = compose(config_name, overrides=argv)
        cfg = None if unknown_key(dcfg) else OmegaConf.to_object(dcfg)
    except Exception:  # Hydra and the config's checks say what is wrong, in one line, once it runs
        return
    if not isinstance(cfg, AgoraConfig):
        return
    try:
        claim(out, run_id_for(cfg, kind), None, config=dataclasses.asdict(cfg))
    except RunComplete as exc:
        print(inert(f"{prog}: {exc}", newlines=False))
        sys.exit(0)
    except InputError as exc:
        fail(str(exc), prog)

