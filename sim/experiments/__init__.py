"""Everything ``agora`` can run. An experiment is one folder (``sim/experiments/<name>/``, see
:mod:`sim.experiments.registry`, which finds the folders and runs them); the society run and the generations loop
are ``society/``. What several share (``shared/``, ``collective`` votes, ``evaluate`` suites, ``injection``
measurement) stays beside them.

:func:`run_experiment` (or :func:`runner_for`) runs any config; :func:`preflight` refuses, before any work, a run
that cannot mean anything or a setting that cannot be honoured (the driver calls it first, so the CLI and a sweep
get the same one-line error)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.llm.base import LLMBackend
from scenarios.dilemma import Dilemma, load_dilemmas
from scenarios.errors import InputError
from sim.config import AgoraConfig
from sim.study_config import StudyConfig

Runner = Callable[[AgoraConfig, Path, LLMBackend | None], dict[str, Any]]


class Refused(InputError):
    """A run refused by :func:`preflight`, before any work: nothing of it is worth keeping (the CLI removes the
    folder it made for the run, as for a bad config)."""


def runner_for(cfg: AgoraConfig) -> Runner:
    """What runs ``cfg``: ``runner(cfg, out_dir, backend=None) -> summary.json contents`` (the registry's driver;
    refuses a kind that is not registered, one line)."""
    from sim.experiments.registry import for_config

    for_config(cfg)
    return run_experiment


def study_dilemmas(cfg: AgoraConfig, n: int, setting: str, minimum: int = 1) -> list[Dilemma]:
    """The pool of ``scenario.dilemmas`` an experiment samples ``n`` from (its ``setting``), refused in one
    line when the file has fewer than ``n`` (a seeded sample would silently be the whole, smaller file) or
    than the experiment's ``minimum``."""
    pool = load_dilemmas(cfg.scenario.dilemmas)
    if len(pool) < minimum:
        raise InputError(f"{cfg.scenario.dilemmas}: {len(pool)} dilemma(s); experiment={cfg.study.kind} needs at least "
                         f"{minimum} (its intervals are over dilemmas)")
    if len(pool) < n:
        raise InputError(f"{cfg.scenario.dilemmas}: {len(pool)} dilemma(s), fewer than {setting}={n} "
                         f"(set it to at most {len(pool)})")
    return pool


def preflight(cfg: AgoraConfig) -> None:
    """Every check a run makes before any work (:class:`Refused`, one line): the label-quality gate's
    slice sizes, then the experiment's own inputs and settings. Reads input files; loads no model."""
    from sim.experiments.registry import for_config
    from sim.gate.calibration import check as check_gate

    try:
        check_gate(cfg)
        for_config(cfg).check(cfg)
    except Refused:
        raise
    except InputError as exc:
        raise Refused(str(exc)) from None


def trains(cfg: AgoraConfig) -> tuple[bool, bool]:
    """Whether a run of ``cfg`` trains a reward model and whether it DPO-tunes a policy (the runners that do)."""
    from sim.experiments.registry import for_config

    return for_config(cfg).trains(cfg)


def _model_folder(value: str, where: str) -> None:
    path = Path(value)
    if not path.is_dir():
        raise InputError(f"{where}={value}: {'not a folder' if path.exists() else 'no such folder'} (a local Hugging "
                         "Face model folder)")
    if not (path / "config.json").is_file():
        raise InputError(f"{where}={value}: not a Hugging Face model folder (no config.json)")


def check_inputs(cfg: AgoraConfig) -> None:
    """What a run of ``cfg`` reads from outside, checked before any model work, each problem one line
    (:class:`InputError`, or :class:`~agents.llm.base.BackendError` for missing weights): the dilemma and
    constitution files (loaded: the runner loads them again), model folders (``llm.model_path``,
    ``alignment.reward.backbone``), the cached weights its training needs (a society run trains after
    the society has run), and the evaluation's paths. ``eval.suites`` is refused where the run would ignore
    it (only a society run evaluates; ``agora-eval`` evaluates any config). Last, :func:`preflight` (the
    experiment's own refusals). ``agora`` calls this for a run and for every point of a sweep before the
    first one runs."""
    from scenarios.constitution import load_constitution
    from scenarios.dilemma import load_dilemmas

    load_dilemmas(cfg.scenario.dilemmas)
    load_constitution(cfg.constitution.name)  # an experiment's own constitutions: its check (preflight, below)
    if cfg.llm.model_path:
        _model_folder(cfg.llm.model_path, "llm.model_path")
    backbone = cfg.alignment.reward.backbone
    if backbone not in ("minilm", "policy"):
        _model_folder(backbone, "alignment.reward.backbone")
    reward, policy = trains(cfg)
    if reward or policy:
        from agents.llm.embedded.weights import minilm_path, require_default_weights

        if reward and backbone == "minilm":
            minilm_path()
        if (policy or (reward and backbone == "policy")) and not cfg.llm.model_path:
            require_default_weights()  # the policy the loop tunes starts from the default model
    if cfg.eval.suites:
        from sim.experiments.registry import for_config, get

        if for_config(cfg) is not get(StudyConfig.kind):
            what = f"study.kind={cfg.study.kind}" if cfg.study.kind != StudyConfig.kind else "a generations run"
            raise InputError(f"eval.suites={cfg.eval.suites}: {what} does not evaluate (a society run does, and "
                             "agora-eval evaluates any config); leave eval.suites empty")
        from sim.gate.probes import eval_paths

        eval_paths(cfg.eval, cfg.eval.suites)
    preflight(cfg)


def run_experiment(cfg: AgoraConfig, out_dir: Path, backend: LLMBackend | None = None) -> dict[str, Any]:
    """Run ``cfg`` into ``out_dir`` (:func:`sim.experiments.registry.run_experiment`); its ``summary.json`` contents."""
    from sim.experiments.registry import run_experiment as drive

    return drive(cfg, out_dir, backend)
