"""The ``agora`` and ``agora-eval`` commands: Hydra at the edge, dataclasses below it. This module parses and
dispatches; the command line's pieces are in ``sim/commands/`` (one-line errors, sweep checks, run folders, and
``agora-report``, ``agora-sanity`` and ``agora-injection``). The console scripts start in ``sim/launch.py``."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from agents.llm.base import BackendError
from alignment.launch import TrainingError
from alignment.preferences import SchemaError
from scenarios.errors import InputError
from sim.commands.errors import (
    PROG,
    Failed,
    SweepPointFailed,
    bad_config,
    fail,
    interruptible,
    os_error_line,
    run_hydra,
    to_run_log,
    typed_config,
)
from sim.commands.folders import check_run_dir_free, check_run_folder, kept_note, override_key, resume_argv, resumed_run
from sim.commands.sweeps import check_sweep
from sim.commands.tools import injection_main, report_main, sanity_main
from sim.config import schema, structured
from sim.display import inert, inert_lines
from sim.study_config import StudyConfig

__all__ = ["eval_main", "injection_main", "main", "report_main", "sanity_main"]

log = logging.getLogger("agora")
NOTHING_KEPT = " (before its first checkpoint: nothing to resume, the same command starts it again)"


def register_configs() -> None:
    """Hydra's ConfigStore entries: the schema (``agora_schema``) and the ``study`` group: each registered
    experiment's node (``society``, the default, in ``conf/config.yaml``; another selected by its
    ``conf/experiment/<name>.yaml``: ``override /study: <name>``)."""
    from sim.experiments.registry import broken, leave_out, options

    store = ConfigStore.instance()
    store.store(name="agora_schema", node=schema())
    for name, exp in options().items():
        try:
            node = structured(exp.study)
        except Exception as exc:  # e.g. a settings default its own check refuses: that experiment is left out
            leave_out(exp.run.__module__.split(".")[2], exc)
            continue
        store.store(group="study", name=name, node=node)
    prog = Path(sys.argv[0]).name if Path(sys.argv[0]).name.startswith("agora") else "agora"
    for folder, why in broken().items():  # a developer's mistake in one folder, named in one line; the rest runs
        print(inert(f"{prog}: warning: sim/experiments/{folder}/ is left out, it does not load: {why}", newlines=False),
              file=sys.stderr)


register_configs()


def ray_gpus(*devices: str) -> int:
    """``${agora_gpus:...}`` in ``conf/hydra/launcher/ray_cluster.yaml``: 1 GPU per sweep point when any of the
    run's device settings says ``cuda``, else 0 (``auto`` asks for none: Ray gives a task only what it asks for)."""
    return int(any(str(d).startswith("cuda") for d in devices))


OmegaConf.register_new_resolver("agora_gpus", ray_gpus, replace=True)


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
    choices = HydraConfig.get().runtime.choices
    study, preset = choices.get("study"), choices.get("experiment")
    if not cfg.resume and preset is None and study not in (None, StudyConfig.kind):
        # the settings node alone would run that experiment under the society's name and folder
        bad_config(f"study={study} is the settings of experiment={study}: run agora experiment={study}")
    if not cfg.resume and preset is not None and study != preset and \
            any(override_key(o) in ("study", "/study") for o in HydraConfig.get().overrides.task):
        # another experiment's settings under the preset's name and folder
        bad_config(f"study={study} with experiment={preset}: the preset chooses its own settings; leave study= out "
                   f"(or run agora experiment={study})")
    if not cfg.resume and any(override_key(o) == "resume" for o in HydraConfig.get().overrides.task):
        bad_config("resume= needs the folder of the run to continue (resume=outputs/NAME/TIMESTAMP)")
    if cfg.resume:
        cfg, out = resumed_run(cfg.resume)

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
        fail(str(exc) + kept_note(out))
    except OSError as exc:  # e.g. disk full, a folder that became read-only: the last checkpoint stays
        fail(os_error_line(exc) + kept_note(out))
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (sim.commands.errors.interruptible)
        note = kept_note(out) or NOTHING_KEPT
        to_run_log(f"agora: interrupted{note}")
        print(inert(f"agora: interrupted{note}", newlines=False), file=sys.stderr)
        sys.exit(130)
    exp = get(summary["kind"])
    print(finished_lines(summary, out, exp.console if exp is not None else None))


def main() -> None:
    PROG.set("agora")
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
        cfg, out = resumed_run(cfg.resume)
    try:
        inputs = eval_inputs(cfg)  # every path and file checked before the model loads
    except InputError as exc:
        bad_config(str(exc))
    try:
        summary = run_eval(cfg, out, inputs)
    except RunComplete as exc:
        print(inert(f"agora-eval: {exc}", newlines=False))
        return
    except InputError as exc:  # a refused folder or input: its line says what to do
        fail(str(exc))
    except BackendError as exc:
        fail(str(exc) + kept_note(out, "agora-eval"))
    except OSError as exc:
        fail(os_error_line(exc) + kept_note(out, "agora-eval"))
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM: the finished suites are kept
        note = kept_note(out, "agora-eval") or NOTHING_KEPT
        to_run_log(f"agora-eval: interrupted{note}")
        print(inert(f"agora-eval: interrupted{note}", newlines=False), file=sys.stderr)
        sys.exit(130)
    print(inert(f"agora-eval: {', '.join(summary['suites'])} -> {out}", newlines=False) + "\n"
          + inert_lines(report_lines(summary)))


def eval_main() -> None:
    PROG.set("agora-eval")  # its errors before the run starts (a sweep's point, resume=) name it too
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


if __name__ == "__main__":
    main()

