"""A ``--multirun`` sweep checked point by point before its first point runs (and Hydra's own argument parser's
mistakes as one line)."""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from agents.llm.base import BackendError
from sim.commands.errors import checked_config, fail, hydra_error_line
from sim.config import AgoraConfig

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


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

