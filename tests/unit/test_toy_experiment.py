"""Adding an experiment is one folder and one conf file: a toy experiment written into a copy of the code
(``sim/experiments/toy/`` and ``conf/experiment/toy.yaml``, nothing else edited) runs through ``agora
experiment=toy`` on the scripted backend, with checkpointed stages (one returns records), a stop and a resume that
gives the same bytes as an unstopped run, its report page, its typed summary and ``agora-report``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import AGORA_REPORT, ROOT

TOY = {
    "sim/experiments/toy/__init__.py": '''
"""``experiment=toy``: how many words are the base model's answers to a few dilemmas?"""

from sim.experiments.toy.run import run_toy  # noqa: F401  (registers the experiment)
''',
    "sim/experiments/toy/config.py": '''
"""``study.toy.*``: the settings of ``experiment=toy`` (documented once, here)."""

from dataclasses import dataclass

SECTIONS = ("seed", "name", "llm", "scenario", "study.toy")  # the config sections its report shows


@dataclass(frozen=True)
class ToyConfig:
    """``experiment=toy``: the base model answers a seeded sample of dilemmas; its answers' lengths are measured.

    Attributes:
        dilemmas: dilemmas answered (a seeded sample of ``scenario.dilemmas``); at least 2.
        answer_tokens: new tokens per answer.
    """

    dilemmas: int = 3
    answer_tokens: int = 8

    def __post_init__(self) -> None:
        if self.dilemmas < 2:
            raise ValueError("study.toy.dilemmas must be >= 2 (an interval over dilemmas)")
''',
    "sim/experiments/toy/summary.py": '''
"""The toy experiment's records: a stage's rows and the typed summary."""

from dataclasses import dataclass

from alignment.metrics import Interval
from sim.results import Summary


@dataclass(frozen=True, kw_only=True)
class Answer:
    """One answer (a row of ``toy_answers.parquet``)."""

    dilemma_id: str
    text: str


@dataclass(frozen=True, kw_only=True)
class ToySummary(Summary):
    """``summary.json`` of a toy run.

    Attributes:
        dilemmas: dilemmas answered.
        mean_words: mean words per answer, with its bootstrap interval over dilemmas.
    """

    dilemmas: int
    mean_words: Interval
''',
    "sim/experiments/toy/labels.py": '''
"""What the toy experiment's keys are called on report pages."""

LABELS = {"mean_words": "mean words per answer"}
''',
    "sim/experiments/toy/report.py": '''
"""The toy experiment's report page, from its summary and its table."""

from pathlib import Path

import polars as pl

from sim.experiments.registry import config_part
from sim.experiments.toy.summary import ToySummary
from sim.report.render import fmt_interval, md_table, render, standard_sections


def toy_report(out_dir: Path, summary: ToySummary) -> list[str]:
    answers = pl.read_parquet(out_dir / "toy_answers.parquet")
    sections = standard_sections(summary, f"{summary.dilemmas} dilemmas; {fmt_interval(summary.mean_words)} words per answer.")
    sections += [("Answers", md_table(answers.select("dilemma_id", "words").to_dicts())),
                 ("Config", config_part(summary))]
    return render(out_dir, f"agora toy: {summary.run_id}", sections)
''',
    "sim/experiments/toy/run.py": '''
"""``experiment=toy``: the stages."""

import asyncio
import os

import polars as pl

from agents import prompts
from agents.llm.base import GenerateRequest
from alignment.metrics import Interval, bootstrap_interval
from scenarios.dilemma import Dilemma, load_dilemmas
from sim.experiments.registry import experiment
from sim.experiments.toy.config import SECTIONS, ToyConfig
from sim.experiments.toy.labels import LABELS
from sim.experiments.toy.report import toy_report
from sim.experiments.toy.summary import Answer, ToySummary
from sim.results import Codec, pick
from sim.run.lifecycle import Run
from sim.run.seeding import child_seed, sample_dilemmas


async def _answers(run: Run, dilemmas: list[Dilemma]) -> list[Answer]:
    cfg = run.cfg

    async def one(j: int, d: Dilemma) -> Answer:
        (text,) = await run.backend.generate([GenerateRequest(
            messages=prompts.stance_messages(d, None), max_new_tokens=cfg.study.toy.answer_tokens,
            temperature=cfg.llm.temperature, top_p=cfg.llm.top_p, seed=child_seed(cfg.seed, "toy", j))])
        run.progress.update()
        return Answer(dilemma_id=d.id, text=text)

    return list(await asyncio.gather(*(one(j, d) for j, d in enumerate(dilemmas))))


@experiment("toy", key="toy", config=ToyConfig, summary=ToySummary, report=toy_report, sections=SECTIONS, labels=LABELS)
def run_toy(run: Run) -> ToySummary:
    cfg = run.cfg
    dilemmas = sample_dilemmas(load_dilemmas(cfg.scenario.dilemmas), cfg.study.toy.dilemmas, cfg.seed, "toy")
    answers = run.stage("answers", _answers(run, dilemmas), total=len(dilemmas), unit="answer", codec=Codec(list[Answer]))
    if os.environ.get("TOY_STOP") == "after answers":
        raise KeyboardInterrupt  # as Ctrl-C would, between the stages
    words = run.stage("words", lambda: [len(a.text.split()) for a in answers])
    run.write_parquet("toy_answers", pl.DataFrame({"dilemma_id": [a.dilemma_id for a in answers],
                                                    "text": [a.text for a in answers], "words": words}))
    mean = Interval.of(bootstrap_interval(words, seed=cfg.seed), n=len(words))
    return ToySummary(dilemmas=len(dilemmas), mean_words=mean, headline={"mean_words": pick(mean)})
''',
    "conf/experiment/toy.yaml": '''
# @package _global_
# The toy experiment: 4 dilemmas answered by the base model; words per answer.
defaults:
  - override /study: toy
name: toy
study:
  toy:
    dilemmas: 4
''',
}


def _copy_with_toy(dest: Path) -> Path:
    """The project's code and conf/ copied, plus the toy's one folder and one conf file."""
    for part in ("agents", "alignment", "scenarios", "sim", "conf"):
        shutil.copytree(ROOT / part, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
    for rel, text in TOY.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text.lstrip())
    return dest


def _agora(repo: Path, *args: str, code: str | None = None, **env: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, *(("-c", code) if code else ("-m", "sim.cli")), *args]
    return subprocess.run(argv, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo), **env}, capture_output=True,
                          text=True, timeout=300)


def test_a_new_experiment_is_one_folder_and_one_conf_file(tmp_path):
    repo = _copy_with_toy(tmp_path / "repo")
    assert sorted({Path(rel).parts[0] for rel in TOY}) == ["conf", "sim"]
    assert {str(Path(rel).parent) for rel in TOY} == {"sim/experiments/toy", "conf/experiment"}
    base = ("experiment=toy", "llm=scripted", "sim.progress=false")

    ref = tmp_path / "ref"
    res = _agora(repo, *base, f"hydra.run.dir={ref}")
    assert res.returncode == 0, res.stderr
    assert "agora: toy run toy-s0-" in res.stdout and "mean_words: " in res.stdout

    out = tmp_path / "run"
    stopped = _agora(repo, *base, f"hydra.run.dir={out}", TOY_STOP="after answers")
    assert stopped.returncode == 130 and f"agora resume={out}" in stopped.stderr, stopped.stderr
    assert (out / "checkpoint.json").is_file() and not (out / "summary.json").exists()
    resumed = _agora(repo, f"resume={out}")
    assert resumed.returncode == 0, resumed.stderr

    parquet = lambda d: {p.name: p.read_bytes() for p in d.glob("*.parquet")}  # noqa: E731
    assert parquet(out) == parquet(ref) and "toy_answers.parquet" in parquet(ref)
    first, again = (json.loads((d / "summary.json").read_text()) for d in (ref, out))
    assert again["run_id"] == first["run_id"] and again["kind"] == "toy"
    assert again["backend"]["generate_calls"] == first["backend"]["generate_calls"]  # the answers stage was not redone
    assert list(again["seconds"]) == ["answers", "words"] and again["dilemmas"] == 4
    assert set(again["mean_words"]) >= {"value", "low", "high", "n"} and again["headline"]["mean_words"]["value"] > 0
    assert again["config"]["study"] == {"kind": "toy", "toy": {"dilemmas": 4, "answer_tokens": 8}}
    page = (out / "report.md").read_text()
    assert "mean words per answer" in page and "## Answers" in page and "study:\n  kind: toy" in page

    compared = _agora(repo, str(ref), str(out), "-o", str(tmp_path / "cmp"), code=AGORA_REPORT)
    assert compared.returncode == 0, compared.stderr
    assert "mean words per answer" in (tmp_path / "cmp" / "report.md").read_text()

    refused = _agora(repo, "experiment=toy", "llm=scripted", "study.toy.dilemmas=1", f"hydra.run.dir={tmp_path / 'bad'}")
    assert refused.returncode == 2 and "study.toy.dilemmas must be >= 2" in refused.stderr
    assert not (tmp_path / "bad").exists()


def test_the_toy_follows_the_house_rules(tmp_path):
    """The worked example is what people adding an experiment copy: it passes the project's ruff rules."""
    repo = _copy_with_toy(tmp_path / "repo")
    shutil.copy(ROOT / "pyproject.toml", repo)
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    res = subprocess.run([ruff, "check", "sim/experiments/toy"], cwd=repo, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
