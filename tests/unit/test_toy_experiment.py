"""Adding an experiment is one folder and one conf file: the toy experiment of the docs page
``docs/experiments/adding.md``, its files read from the page and written into a copy of the code
(``sim/experiments/toy/`` and ``conf/experiment/toy.yaml``, nothing else edited), runs through ``agora
experiment=toy`` on the scripted backend, with checkpointed stages (one returns records), a stop and a resume that
gives the same bytes as an unstopped run, its report page, its typed summary and ``agora-report``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import AGORA_REPORT, ROOT

PAGE = ROOT / "docs" / "experiments" / "adding.md"


def _files_on_the_page() -> dict[str, str]:
    """The worked example's files: each ``## `PATH` `` heading of the docs page and the code block under it."""
    found = re.findall(r"^## `([^`]+)`\n.*?^```\w*\n(.*?)^```$", PAGE.read_text(), flags=re.M | re.S)
    return dict(found)


TOY = _files_on_the_page()


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


def test_the_page_holds_the_whole_toy():
    assert len(TOY) == 7 and "conf/experiment/toy.yaml" in TOY and "sim/experiments/toy/run.py" in TOY
    assert all(text.strip() for text in TOY.values())


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
