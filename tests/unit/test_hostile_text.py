"""Agents' text is inert wherever agora displays it. A hostile corpus (NUL, ESC with CSI and OSC sequences, BEL,
backspace, a CR without LF, C1's one-byte CSI, bidi overrides, embeddings, isolates and marks, line and paragraph
separators, zero-width characters, tag characters, a blank Hangul filler) goes in through a scripted society's
replies, a dilemma file (texts and an id), a constitution (a principle's text and id), CCAI statements, HHH and
MoralChoice files, a log record and a library warning; then every file the runs write but their data files
(every report page, ``cli.log``, Hydra's records; a new page kind is covered without a change here) and every byte
the commands print must hold none of those characters raw, the pages must show them as escapes, and the parquet
rows must keep them as they came. Lone surrogates cannot be stored in a parquet file (the loaders refuse them);
tests/unit/test_display.py takes them through the display function, the log format and the error line.
"""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import unicodedata
import warnings
from pathlib import Path

import polars as pl
import pytest
import yaml

from agents.llm.base import ChatMessage, GenerateRequest
from sim.display import inert
from tests.helpers import AGORA_REPORT, ROOT, agora
from tests.unit.test_openai_compat import serve
from tests.unit.test_server_shapes import Shaped, backend, completion

H = ("X\x00 \x1b[2J\x1b]0;pwned\x07 bell\x07 bs\x08\x08 cr\rEVIL c1\x9b31m nel\x85 del\x7f vt\x0bff\x0c "
     "\u202eevil\u202c \u202a\u202b\u202d \u2066iso\u2067\u2068\u2069 \u200e\u200f\u061c ls\u2028ps\u2029 "
     "zw\u200b\u200c\u200d\u2060\ufeff soft\u00ad tag\U000e0041\U000e007f filler\u3164")
H_CSV = H.replace("\x00", "")  # a NUL byte makes a CSV a binary file, refused in one line (tests/unit/test_hostile_inputs.py)
SHOWN = inert(H, newlines=False)  # what a log line or the console shows
HOSTILE_ID = "d0" + H
PRINCIPLE_ID = "harm\x1b[31m\u202e"
DATA = {".parquet", ".json", ".jsonl", ".png", ".safetensors", ".bin", ".pt", ".model"}  # the record: raw text kept

CHILD = """
import logging, warnings
from agents.llm.scripted import ScriptedBackend
H = {H!r}
reply = ScriptedBackend.default_reply
ScriptedBackend.default_reply = staticmethod(lambda r: reply(r) + " " + H)
def speaking(run):
    def wrapped(*args, **kwargs):
        logging.getLogger("agora").warning("a reply: %s", H)  # agents' text as a log value
        logging.getLogger("agora").info("a message holding " + H)  # and inside a message
        warnings.warn("a library quoting " + H)
        return run(*args, **kwargs)
    return wrapped
import sim.experiments, sim.experiments.evaluate
sim.experiments.run_experiment = speaking(sim.experiments.run_experiment)
sim.experiments.evaluate.evaluate = speaking(sim.experiments.evaluate.evaluate)
import tqdm.auto  # agora-eval draws its reading bars whatever sim.progress says; a bar's CR is agora's own
class Quiet(tqdm.auto.tqdm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{{**kwargs, "disable": True}})
tqdm.auto.tqdm = Quiet
import sim.run.progress
sim.run.progress.tqdm = Quiet  # imported before the line above
from sim.cli import {entry}
{entry}()
"""
KINDS = ("tiny", "pluralism", "overton", "inverse_constitution", "human_distributions", "evolving_norms",
         "constitution_ablation")
SMALL = ("llm=scripted", "sim.progress=false", "population.size=4", "sim.steps=1")
# an experiment in its own folder has its settings only in its own runs (its Hydra option): it runs beside the sweep
# (``{inputs}``: the hostile inputs' folder)
OWN = {"overton": ("study.overton.dilemmas=2", "study.overton.voices=1"), "pluralism": ("study.pluralism.dilemmas=2",),
       "evolving_norms": ("study.norms.generations=4", "study.norms.dilemmas=2", "study.norms.train_policy=false"),
       "constitution_ablation": ("study.ablation.train_reward=false",),
       "inverse_constitution": ("study.inverse.ccai_path={inputs}/ccai.csv",),
       "human_distributions": ("study.human.countries=[US,UK,Japan]",)}


def acting(text: str) -> list[str]:
    """The characters of ``text`` that act instead of showing (what no page, log or console line may hold raw)."""
    return [c for c in text if (unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") and c not in "\n\t")
            or c == "\u3164"]


def assert_inert(where: str, data: bytes) -> str:
    text = data.decode("utf-8")  # a page or log that is not UTF-8 fails here too
    bad = acting(text)
    if bad:
        i = text.index(bad[0])
        pytest.fail(f"{where}: {len(bad)} raw characters, the first U+{ord(bad[0]):04X} in {text[max(0, i - 80):i + 20]!r}")
    return text


def displayed_files(*roots: Path) -> list[Path]:
    return sorted(f for r in roots for f in r.rglob("*") if f.is_file() and f.suffix not in DATA)


def run_child(entry: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    res = agora(*args, code=CHILD.format(H=H, entry=entry), timeout=timeout, raw=True)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-3000:]
    return res


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Hostile dilemma, constitution, CCAI, HHH and MoralChoice files."""
    d = tmp_path_factory.mktemp("hostile_inputs")
    base = [json.loads(line) for line in (ROOT / "scenarios/data/default_dilemmas.jsonl").read_text().splitlines()[:6]]
    recs = [{**r, "situation": f"{r['situation']} {H}", "action_a": f"{r['action_a']} {H}"} for r in base]
    recs[0]["id"] = HOSTILE_ID
    (d / "dilemmas.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    const = yaml.safe_load((ROOT / "scenarios/data/constitutions/harmlessness.yaml").read_text())
    const["judge"] = [{"id": PRINCIPLE_ID, "text": f"Choose the kinder answer. {H}"}]
    const["critique"][0]["critique"] += " " + H
    (d / "constitution.yaml").write_text(yaml.safe_dump(const, allow_unicode=True))
    with open(d / "ccai.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["comment-id", "comment-body"])
        w.writerows([f"c{i}", f"The AI should be kind {i}. {H_CSV}"] for i in range(6))
    hhh = {"prompt": f"\n\nConsider the following conversation between a human and an assistant:\n\nHuman: hi? {H}\n\n\n"
                     "Please choose the response that is the most helpful, honest, and harmless. Options:\n"
                     f" (A) [[[Hello! {H}]]]\n (B) [[[Go away.]]]\n\nThe answer is:",
           "corrects": [" (A)"], "incorrects": [" (B)"], "text_correct": "\n\nHuman: hi?\n\nAssistant: Hello!",
           "text_incorrect": "\n\nHuman: hi?\n\nAssistant: Go away."}
    (d / "hhh.jsonl").write_text(json.dumps(hhh) + "\n" + json.dumps({**hhh, "corrects": [" (B)"], "incorrects": [" (A)"]}) + "\n")
    (d / "mc").mkdir()
    for amb, name in (("low", "moralchoice_low_ambiguity.csv"), ("high", "moralchoice_high_ambiguity_dev.csv")):
        with open(d / "mc" / name, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["scenario_id", "ambiguity", "generation_rule", "context", "action1", "action2", "a1_death"])
            w.writerows([f"{amb}{i}{H_CSV}", amb, "Do not kill", f"You see a person. {H_CSV}", f"I help. {H_CSV}", "I leave.",
                         "No"] for i in range(3))
    return d


@pytest.fixture(scope="module")
def sweep(inputs, tmp_path_factory) -> tuple[Path, list[subprocess.CompletedProcess]]:
    """Every experiment but the generations loop (slow, below) on the hostile inputs: those whose settings the
    legacy study node holds in one sweep, each other one run into the sweep's folder; then agora-report."""
    out = tmp_path_factory.mktemp("hostile_sweep") / "sweep"
    inputs_ = (f"scenario.dilemmas={inputs / 'dilemmas.jsonl'}", f"constitution.name={inputs / 'constitution.yaml'}")
    ran = run_child("main", "--multirun", f"experiment={','.join(k for k in KINDS if k not in OWN)}", *SMALL, *inputs_,
                    f"hydra.sweep.dir={out}")
    own = [run_child("main", f"experiment={k}", *SMALL[:4], *(o.format(inputs=inputs) for o in OWN[k]), *inputs_,
                     f"hydra.run.dir={out / k}") for k in OWN]
    report = agora(str(out), code=AGORA_REPORT, raw=True, timeout=300)
    assert report.returncode == 0, report.stderr.decode(errors="replace")
    return out, [ran, *own, report]


@pytest.fixture(scope="module")
def evaluated(inputs, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("hostile_eval") / "eval"
    ran = run_child("eval_main", "llm=scripted", "population.size=4", "eval.suites=[hhh,moralchoice,steerability]",
                    "eval.scenarios=0", f"eval.hhh_path={inputs / 'hhh.jsonl'}", f"eval.moralchoice_dir={inputs / 'mc'}",
                    f"hydra.run.dir={out}")
    return out, ran


def _kind(run: Path) -> str:
    return json.loads((run / "summary.json").read_text())["kind"]


def test_no_page_log_or_console_line_holds_a_raw_control(sweep, evaluated):
    (out, procs), (eval_dir, eval_proc) = sweep, evaluated
    files = displayed_files(out, eval_dir)
    names = {str(f.relative_to(out)) for f in files if out in f.parents} | {
        f"eval/{f.relative_to(eval_dir)}" for f in files if eval_dir in f.parents}
    points = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(points) == len(KINDS)
    for p in points:  # each point's pages and log, whatever its kind
        assert {f"{p.name}/report.md", f"{p.name}/report.html", f"{p.name}/cli.log"} <= names, names
    assert {"report.md", "report.html", "multirun.yaml", "eval/eval.md", "eval/cli.log"} <= names, names
    for f in files:
        assert_inert(str(f), f.read_bytes())
    for k, proc in enumerate([*procs, eval_proc]):
        assert_inert(f"command {k}: stdout", proc.stdout)
        assert_inert(f"command {k}: stderr", proc.stderr)


def test_the_pages_show_the_text_as_escapes(sweep):
    out, _ = sweep
    shown = {"society", "pluralism", "overton", "constitution_ablation"}  # inverse: only if a CCAI one is learned
    for run in sorted(p for p in out.iterdir() if p.is_dir()):
        md, page = (run / "report.md").read_text(), (run / "report.html").read_text()
        if _kind(run) in shown:
            assert "\\x1b\\[2J" in md and "\\u202e" in md and "\\x9b31m" in md, run  # `[` escaped for Markdown
            assert "\\x1b[2J" in page and "\\u202e" in page and "\\u2028" in page, run
    society = next(r for r in out.iterdir() if r.is_dir() and _kind(r) == "society")
    md = (society / "report.md").read_text()
    assert f"**Dilemma `{inert(HOSTILE_ID, newlines=False)}`**" in md  # an id from the file, as inert code


def test_log_lines_and_warnings_show_the_text_on_one_line(sweep, evaluated):
    (out, (ran, *_)), (eval_dir, eval_proc) = sweep, evaluated
    stdout = ran.stdout.decode()
    for log in [*sorted(out.glob("*/cli.log")), eval_dir / "cli.log"]:
        text = log.read_text()
        assert f"[agora][WARNING] - a reply: {SHOWN}\n" in text and f"a message holding {SHOWN}\n" in text, log
    assert f"a reply: {SHOWN}" in stdout and f"a reply: {SHOWN}" in eval_proc.stdout.decode()
    first = (out / "0" / "cli.log").read_text()  # warnings show once per process: in the first point's log
    assert "[py.warnings][WARNING]" in first and f"UserWarning: a library quoting {SHOWN}" in first


def test_the_data_files_keep_the_raw_text(sweep, evaluated, inputs):
    (out, _), (eval_dir, _) = sweep, evaluated
    runs = {_kind(r): r for r in out.iterdir() if r.is_dir()}
    society = runs["society"]
    texts = pl.read_parquet(society / "transcripts.parquet")["text"].to_list()
    assert texts and all(t.endswith(" " + H) for t in texts)  # each reply exactly as the backend gave it
    assert HOSTILE_ID in pl.read_parquet(society / "stances.parquet")["dilemma_id"].to_list()
    prefs = pl.read_parquet(society / "preferences.parquet")
    assert all(H in p for p in prefs["prompt"]) and PRINCIPLE_ID in prefs["principle_id"].to_list()
    for kind, table in (("pluralism", "pluralism_answers"), ("overton", "overton_answers"), ("evolving_norms", "norms_answers")):
        assert all(t.endswith(" " + H) for t in pl.read_parquet(runs[kind] / f"{table}.parquet")["text"]), kind
    ccai = [t for t in pl.read_parquet(runs["inverse_constitution"] / "inverse_candidates.parquet")["text"] if "kind 0" in t]
    assert ccai and all(part in ccai[0] for part in ("\x1b]0;pwned\x07", "\u202eevil\u202c", "ls\u2028ps\u2029", "nel\x85 del\x7f",
                                                     "vt\x0bff\x0c", "\U000e0041"))  # a bare CR is a CSV line break: a space
    items = pl.read_parquet(eval_dir / "eval_items.parquet")["item_id"].to_list()
    assert f"low0{H_CSV}" in items and f"high0{H_CSV}" in items


def test_an_error_line_quoting_a_file_is_one_inert_line(tmp_path):
    rec = {"id": HOSTILE_ID, "situation": "s", "action_a": "a", "action_b": "b"}
    bad = tmp_path / "dup.jsonl"
    bad.write_text(json.dumps(rec) + "\n" + json.dumps(rec) + "\n")
    res = agora("llm=scripted", f"scenario.dilemmas={bad}", f"hydra.run.dir={tmp_path / 'run'}", raw=True, timeout=120)
    assert res.returncode == 2
    err = assert_inert("stderr", res.stderr).strip()
    assert err.startswith("agora: error: ") and "\n" not in err and f"duplicate id '{inert(HOSTILE_ID, newlines=False)}'" in err
    missing = tmp_path / f"run{H.replace(chr(0), '')}"
    res = agora(str(missing), code=AGORA_REPORT, raw=True, timeout=120)
    assert res.returncode == 2
    err = assert_inert("stderr", res.stderr).strip()
    assert err.startswith("agora-report: error: ") and "\n" not in err and inert(missing, newlines=False) in err


def test_fail_shows_a_lone_surrogate_and_keeps_one_line(capsys):
    from sim.commands.errors import fail

    with pytest.raises(SystemExit) as stop:
        fail("server said \ud800\x1b[2J\nsecond line\u2028")
    assert stop.value.code == 2
    assert capsys.readouterr().err == "agora: error: server said \\ud800\\x1b[2J second line\\u2028\n"


def test_a_plot_never_draws_raw_text_and_never_reads_a_dollar_as_mathtext(tmp_path):
    from matplotlib.text import Text

    from sim.report.plots import plt, save_png

    short = "d0\x00\x1b[2J\u202e\x9b\u2028\u200b"  # short enough for a tick label
    fig, ax = plt.subplots()
    ax.set_title(f"dilemma {short} costs $5 or \\frac$")
    ax.set_xticks([0, 1], [short, "$\\alpha$"])
    ax.plot([0, 1], [0, 1], label=short)
    ax.legend()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph (a raw control drawn) or a mathtext parse error fails here
        save_png(fig, tmp_path / "p.png", tight=True)
    texts = [t.get_text() for t in fig.findobj(Text)] + [ax.xaxis.get_major_formatter()(0, 0)]
    assert not [t for t in texts if acting(t)]
    assert f"dilemma {inert(short)} costs $5 or \\frac$" in texts and inert(short, newlines=False) in texts


@pytest.mark.slow  # a generations run trains reward models and DPO policies (~3 min on 2 cores)
def test_a_generations_run_with_an_agent_written_constitution_is_inert(inputs, tmp_path):
    """The agents draft and vote the constitution here: their principles reach the page and the log."""
    out = tmp_path / "run"
    ran = run_child("main", "experiment=tiny_evolve", "llm=scripted", "sim.progress=false", "constitution.collective.enabled=true",
                    f"scenario.dilemmas={inputs / 'dilemmas.jsonl'}", f"hydra.run.dir={out}", timeout=1200)
    for f in displayed_files(out):
        assert_inert(str(f), f.read_bytes())
    assert_inert("stdout", ran.stdout)
    assert_inert("stderr", ran.stderr)
    md = (out / "report.md").read_text()
    assert "\\x1b\\[2J" in md and "\\u202e" in md


@pytest.fixture()
def server():
    Shaped.ctype, Shaped.requests = "application/json", []
    yield from serve(Shaped)


def test_a_server_reply_with_a_lone_surrogate_is_kept_with_a_counted_replacement(server):
    """JSON may spell a lone surrogate ("\\ud800"); no UTF-8 file can hold one, so the run would stop when it writes."""
    Shaped.body = completion({"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": "A. kind \ud800 and \udfff\x1b[2J"}})
    b = backend(server)
    (text,) = asyncio.run(b.generate([GenerateRequest(messages=(ChatMessage(role="user", content="A or B?"),))]))
    assert text == "A. kind \ufffd and \ufffd\x1b[2J" and b.stats.extra["reply_lone_surrogate"] == 1
