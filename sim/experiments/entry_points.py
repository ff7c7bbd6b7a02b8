"""``agora-eval``, ``agora-sanity`` and ``agora-injection``: runs of their own kind, through
:class:`~sim.run.lifecycle.Run` like every run.

Each takes its folder's lock (a second command into the folder is refused in one line while the first runs), has a
run id (``summary.json``'s ``run_id``; :mod:`sim.run.ids`), keeps its long work as checkpointed stages (the same command
into the same folder after a stop resumes after the last finished stage; a finished folder is left as it is), writes
every file atomically (:mod:`sim.run.store`), then ``report.md`` and ``summary.json`` last. They skip the label-quality
gate: each measures something else. The command-line options of ``agora-sanity`` and ``agora-injection`` become
a settings node of their own kind (``study.sanity``, ``study.injection``), so the run id is over what was asked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.llm.base import LLMBackend
from scenarios.dilemma import load_dilemmas
from sim.config import AgoraConfig, SimConfig
from sim.display import inert_lines
from sim.experiments.evaluate import EvalInputs, evaluate
from sim.experiments.registry import study_node
from sim.report.eval import report_lines
from sim.run import store
from sim.run.lifecycle import Run

EVAL, SANITY, INJECTION = "eval", "sanity", "injection"
OUT = "--out"  # the option that names the folder of agora-sanity and agora-injection
QUIET = SimConfig(progress=False)  # no stage bars: the trainers draw their own, and the readings' counts are not fed in


@dataclass(frozen=True, kw_only=True)
class SanitySettings:
    """``agora-sanity``'s settings: its command-line options (the seed is the run's ``seed``).

    Attributes:
        train: training pairs (``--train``).
        held_out: held-out pairs (``--eval``).
    """

    train: int = 64
    held_out: int = 32


@dataclass(frozen=True, kw_only=True)
class InjectionSettings:
    """``agora-injection``'s settings: its command-line options (the seed is the run's ``seed``).

    Attributes:
        dilemmas: answer pairs, one per dilemma of the bundled set (``--dilemmas``).
    """

    dilemmas: int = 40


def _node(kind: str, settings: type) -> Any:
    node = study_node(kind, kind, settings, published_id=False)
    node.__module__ = __name__  # pickled by reference, as a module attribute below
    return node


SanityStudy = _node(SANITY, SanitySettings)
InjectionStudy = _node(INJECTION, InjectionSettings)


def _report(title: str, lines: list[str]) -> Any:
    def write(out_dir: Path, summary: dict[str, Any]) -> list[str]:
        text = "\n".join([f"# {title}", "", f"Run `{summary['run_id']}` ({summary['wall_seconds']} s).", "", *lines])
        store.atomic_write_bytes(out_dir / "report.md", (inert_lines(text.splitlines()) + "\n").encode())
        return ["report.md"]

    return write


# -- agora-eval -------------------------------------------------------------------------------------------------
def run_eval(cfg: AgoraConfig, out_dir: Path, inputs: EvalInputs, backend: LLMBackend | None = None) -> dict[str, Any]:
    """``agora-eval``: the suites into ``out_dir`` (``eval_items.parquet``, ``eval.json``, plots, ``eval.md``), each
    suite's readings a stage. Returns the eval block (``eval.json``'s contents); ``summary.json`` holds it too."""
    with Run(cfg, out_dir, backend, kind=EVAL, gated=False) as run:
        block = evaluate(cfg, run.backend, out_dir, inputs=inputs, run=run)
        lines = report_lines(block)
        store.atomic_write_bytes(out_dir / "eval.md", (inert_lines(lines) + "\n").encode())
        summary = {k: v for k, v in block.items() if k != "wall_seconds"} | {"seconds": block["wall_seconds"]}
        run.finish(summary, _report("agora-eval", lines))
    return block


# -- agora-sanity -----------------------------------------------------------------------------------------------
def sanity_config(train: int, held_out: int, seed: int) -> AgoraConfig:
    """The config of ``agora-sanity --train TRAIN --eval HELD_OUT --seed SEED``."""
    return AgoraConfig(name=SANITY, seed=seed, study=SanityStudy(sanity=SanitySettings(train=train, held_out=held_out)),
                       sim=QUIET)


def sanity_lines(result: dict[str, Any]) -> list[str]:
    """The reward model's and DPO's figures, one line each."""
    rm, dp = result["reward_model"], result["dpo"]
    return [f"reward model: held-out accuracy {rm['eval']['accuracy']:.3f} (chance 0.5), ECE {rm['eval']['ece']:.3f}, "
            f"{rm['pairs_per_s']:.1f} pairs/s",
            f"DPO (1 epoch): held-out implicit reward margin {dp['eval_margin_before']:.4f} -> "
            f"{dp['eval_margin_after']:.4f}, margin accuracy {dp['eval_margin_accuracy']:.3f}, "
            f"{dp['pairs_per_s']:.2f} pairs/s"]


def run_sanity_command(out_dir: Path, train: int, held_out: int, seed: int) -> dict[str, Any]:
    """``agora-sanity``: the reward model and DPO on the planted rule into ``out_dir`` (``reward_model/``,
    ``policy/``, ``sanity.json``), each training a stage. Returns ``sanity.json``'s contents."""
    from agents.llm.scripted import ScriptedBackend
    from alignment.sanity import run_sanity

    # it trains on synthetic pairs and reads no model through a backend: this one is never called (its counts stay 0)
    idle = ScriptedBackend(record=False, name="none")
    with Run(sanity_config(train, held_out, seed), out_dir, idle, kind=SANITY, gated=False, folder=OUT) as run:
        # the trainers' figures hold a few non-JSON values (paths): as sanity.json always wrote them, as text
        result = run_sanity(out_dir, train, held_out, seed,
                            stage=lambda name, work: run.stage(name, lambda: json.loads(json.dumps(work(), default=str))))
        store.atomic_write_bytes(out_dir / "sanity.json", json.dumps(result, indent=2, default=str).encode())
        run.finish(result | {"seconds": run.seconds}, _report("agora-sanity", [f"- {line}" for line in sanity_lines(result)]))
    return result


# -- agora-injection --------------------------------------------------------------------------------------------
def injection_config(dilemmas: int, seed: int) -> AgoraConfig:
    """The config of ``agora-injection --dilemmas DILEMMAS --seed SEED`` (the embedded model, its defaults)."""
    return AgoraConfig(name=INJECTION, seed=seed, study=InjectionStudy(injection=InjectionSettings(dilemmas=dilemmas)),
                       sim=QUIET)


def injection_lines(result: dict[str, Any]) -> list[str]:
    """One line per judge prompt and injection."""
    return [f"{pname:7s} {iname:20s} moved (one order) {r['moved_one_order']:.3f}  moved (both) {r['moved']:.3f}  "
            f"shift {r['shift']:+.4f}  max |shift| {r['max_abs_shift']:.4f}"
            for pname, res in result["prompts"].items() for iname, r in res.items()]


def run_injection_command(dilemmas: int, seed: int, out_file: Path, backend: LLMBackend | None = None) -> dict[str, Any]:
    """``agora-injection``: the figures into ``out_file``; its folder is the run's (``report.md``, ``summary.json``).
    The honest answers and the judged labels are a stage each. ``backend``: None for the embedded model."""
    from sim.experiments.injection import answers, measure
    from sim.run.seeding import sample_dilemmas

    with Run(injection_config(dilemmas, seed), out_file.parent, backend, kind=INJECTION, gated=False, folder=OUT) as run:
        ds = sample_dilemmas(load_dilemmas("default"), dilemmas, seed, INJECTION)
        pairs = [(h, a) for h, a in run.stage("answers", answers(run.backend, ds, seed))]
        result = run.stage("labels", measure(run.backend, ds, pairs)) | {"model": run.backend.name, "seed": seed}
        store.atomic_write_bytes(out_file, (json.dumps(result, indent=1) + "\n").encode())
        table = ["```", *injection_lines(result), "```"]
        run.finish({"output": out_file.name, **result, "seconds": run.seconds}, _report("agora-injection", table))
    return result
