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
import time
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

    assert again["backend"]["score_calls"] == 0  # gated=False: no label-quality readings for an experiment that reads none

    for setting, line in (("study.toy.dilemmas=1", "study.toy.dilemmas must be >= 2"),
                          ("study.toy.answer_tokens=0", "study.toy.answer_tokens must be in [1, 512]"),
                          ("study.toy.dilemmas=100000", "fewer than study.toy.dilemmas=100000 (set it to at most")):
        refused = _agora(repo, "experiment=toy", "llm=scripted", setting, f"hydra.run.dir={tmp_path / 'bad'}")
        assert refused.returncode == 2 and line in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
        assert not (tmp_path / "bad").exists()


def test_the_toy_follows_the_house_rules(tmp_path):
    """The worked example is what people adding an experiment copy: it passes the project's ruff rules."""
    repo = _copy_with_toy(tmp_path / "repo")
    shutil.copy(ROOT / "pyproject.toml", repo)
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    res = subprocess.run([ruff, "check", "sim/experiments/toy"], cwd=repo, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
    # renamed as the page says (a long name), then `ruff check --fix` as it says: clean too
    for rel, text in _renamed("answer_lengths").items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text.lstrip())
    subprocess.run([ruff, "check", "--fix", "sim/experiments/answer_lengths"], cwd=repo, capture_output=True)
    res = subprocess.run([ruff, "check", "sim/experiments/answer_lengths"], cwd=repo, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def _renamed(name: str, edits: dict[str, tuple[str, str]] | None = None) -> dict[str, str]:
    """The toy's files with ``toy`` renamed ``name`` (as the page says to start one), and ``edits`` made per file."""
    out = {}
    for rel, text in TOY.items():
        rel = rel.replace("toy", name)
        text = text.replace("toy", name).replace("Toy", "".join(w.capitalize() for w in name.split("_")))
        old, new = (edits or {}).get(Path(rel).name, ("", ""))
        out[rel] = text.replace(old, new) if old else text
    return out


def test_a_broken_experiment_folder_is_left_out_with_one_line_and_the_rest_runs(tmp_path):
    """A mistake in one folder (a settings default its own check refuses, no __init__.py) leaves that experiment out,
    named in one line; every other command works. Of two folders that clash (a label named two ways, one experiment
    name registered twice), the one changed last is left out, whatever the names' order (``aaa_`` sorts first)."""
    repo = _copy_with_toy(tmp_path / "repo")
    time.sleep(0.05)  # the added folders are newer than the toy's
    dup = _renamed("aaa_dup")
    dup["sim/experiments/aaa_dup/run.py"] = dup["sim/experiments/aaa_dup/run.py"].replace(
        '@experiment("aaa_dup", key="aaa_dup"', '@experiment("toy", key="aaa_dup"')
    broken = {**_renamed("aaa_clash", {"labels.py": ("mean words per answer", "words per answer, on average")}),
              **_renamed("baddefault", {"config.py": ("dilemmas: int = 3", "dilemmas: int = 1")}), **dup,
              "sim/experiments/noinit/run.py": "X = 1\n"}
    for rel, text in broken.items():
        if rel.endswith("noinit/__init__.py"):
            continue
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text.lstrip())

    res = _agora(repo, "experiment=toy", "llm=scripted", "sim.progress=false", f"hydra.run.dir={tmp_path / 'ok'}")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "agora: toy run toy-s0-" in res.stdout
    lines = {line.split("/")[2]: line for line in res.stderr.splitlines() if "is left out" in line}
    assert set(lines) == {"aaa_clash", "baddefault", "aaa_dup", "noinit"}, res.stderr
    assert all(line.startswith("agora: warning: sim/experiments/") for line in lines.values())
    assert "labels named twice, differently" in lines["aaa_clash"] and "named so by toy" in lines["aaa_clash"]
    assert "study.baddefault.dilemmas must be >= 2" in lines["baddefault"]
    assert "experiment toy is registered twice" in lines["aaa_dup"]
    assert "no __init__.py" in lines["noinit"]
    page = (tmp_path / "ok" / "report.md").read_text()
    assert "mean words per answer" in page and "on average" not in page  # the left-out folder's label went with it

    asked = _agora(repo, "experiment=aaa_clash", "llm=scripted", f"hydra.run.dir={tmp_path / 'clash'}")
    assert asked.returncode != 0 and "Traceback" not in asked.stderr
    assert "sim/experiments/aaa_clash/ is left out" in asked.stderr
    assert not (tmp_path / "clash").exists()
    other = _agora(repo, "experiment=tiny", "study=toy", "llm=scripted", f"hydra.run.dir={tmp_path / 'mixed'}")
    assert other.returncode == 2 and "study=toy with experiment=tiny: the preset chooses its own settings" in other.stderr
    assert not (tmp_path / "mixed").exists()


def test_a_stage_name_used_twice_in_one_run_is_refused(tmp_path):
    """The checkpoint keys stages by name: a second stage of the same name would replay the first one's result."""
    repo = _copy_with_toy(tmp_path / "repo")
    run_py = repo / "sim/experiments/toy/run.py"
    text = run_py.read_text()
    line = '    words = run.stage("words", lambda: [len(a.text.split()) for a in answers])\n'
    assert line in text
    run_py.write_text(text.replace(line, line + '    words = run.stage("words", lambda: [2 * w for w in words])\n'))
    res = _agora(repo, "experiment=toy", "llm=scripted", "sim.progress=false", f"hydra.run.dir={tmp_path / 'run'}")
    assert res.returncode != 0 and "stage 'words' already ran in this run" in res.stderr
