"""Everything ``agora`` can run, each in its own module: the society run (``society_run``), the
generations loop (``generations``), the research experiments (``study.kind``: ``pluralism``,
``norms``, ``ablation``, ``overton``) and what they share (``collective`` votes, ``evaluate`` suites,
``injection`` measurement). :func:`runner_for` is the one place a config is mapped to its runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.llm.base import LLMBackend
from scenarios.errors import InputError
from sim.config import AgoraConfig

Runner = Callable[[AgoraConfig, Path, LLMBackend | None], dict[str, Any]]


def runner_for(cfg: AgoraConfig) -> Runner:
    """The entry point that runs ``cfg``: an experiment (``study.kind``), the generations loop
    (``alignment.generations > 0``) or one society run."""
    kind = cfg.study.kind
    if kind == "pluralism":
        from sim.experiments.pluralism import run_pluralism

        return run_pluralism
    if kind == "evolving_norms":
        from sim.experiments.norms import run_evolving_norms

        return run_evolving_norms
    if kind == "constitution_ablation":
        from sim.experiments.ablation import run_constitution_ablation

        return run_constitution_ablation
    if kind == "inverse_constitution":
        from sim.experiments.inverse import run_inverse_constitution

        return run_inverse_constitution
    if kind == "overton":
        from sim.experiments.overton import run_overton

        return run_overton
    if kind == "human_distributions":
        from sim.experiments.human import run_human_distributions

        return run_human_distributions
    if kind != "society":
        raise InputError(f"study.kind '{kind}' is not an experiment")
    if cfg.alignment.generations > 0:
        from sim.experiments.generations import run_generations

        return run_generations
    from sim.experiments.society_run import run

    return run


def trains(cfg: AgoraConfig) -> tuple[bool, bool]:
    """Whether a run of ``cfg`` trains a reward model and whether it DPO-tunes a policy (the runners that do)."""
    kind, a = cfg.study.kind, cfg.alignment
    if kind == "society":
        return a.generations > 0, a.generations > 1  # the last generation's feedback is measured, not trained on
    study = cfg.study
    return kind == "constitution_ablation" and study.ablation.train_reward, kind == "evolving_norms" and study.norms.train_policy


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
    it (only a society run evaluates; ``agora-eval`` evaluates any config). ``agora`` calls this for a
    run and for every point of a sweep before the first one runs."""
    from scenarios.constitution import load_constitution
    from scenarios.dilemma import load_dilemmas

    load_dilemmas(cfg.scenario.dilemmas)
    for name in dict.fromkeys([cfg.constitution.name, *(cfg.study.ablation.constitutions
                                                         if cfg.study.kind == "constitution_ablation" else [])]):
        load_constitution(name)
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
        if cfg.study.kind != "society" or cfg.alignment.generations > 0:
            what = f"study.kind={cfg.study.kind}" if cfg.study.kind != "society" else "a generations run"
            raise InputError(f"eval.suites={cfg.eval.suites}: {what} does not evaluate (a society run does, and "
                             "agora-eval evaluates any config); leave eval.suites empty")
        from sim.probes import eval_paths

        eval_paths(cfg.eval, cfg.eval.suites)


def run_experiment(cfg: AgoraConfig, out_dir: Path, backend: LLMBackend | None = None) -> dict[str, Any]:
    """Run ``cfg`` into ``out_dir`` (see :func:`runner_for`); its ``summary.json`` contents."""
    return runner_for(cfg)(cfg, out_dir, backend)
