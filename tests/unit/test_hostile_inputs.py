"""A hostile-input corpus: every kind of bad input that once gave a traceback, a hang or a silent wrong
result must give one line that names the file and the problem (InputError in-process; exit 2 and one
``agora: error:`` line from the CLI), and a damaged checkpoint must be left as it was.

Everything here runs on the scripted backend (no model): in-process where the loader is the door, as a
``python -m sim.cli llm=scripted`` subprocess where the CLI is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.llm.scripted import ScriptedBackend
from scenarios.constitution import load_constitution
from scenarios.dilemma import load_dilemmas
from scenarios.errors import InputError
from sim.experiments import run_experiment as run
from sim.run.checkpoint import CHECKPOINT, CHECKPOINT_DIR, Checkpoint
from tests.helpers import AGORA_EVAL, AGORA_INJECTION, AGORA_REPORT, AGORA_SANITY, agora, start_agora, tiny_config

OK = {"id": "d1", "situation": "You find a wallet.", "action_a": "Return it.", "action_b": "Keep it."}
OK_LINE = json.dumps(OK)
OK_CONSTITUTION = "name: mine\nversion: 1\njudge:\n  - {id: j1, text: Choose the kinder answer.}\n"


def one_line(exc: BaseException, *needles: str) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def cli_one_line(res: subprocess.CompletedProcess, *needles: str, prog: str = "agora") -> str:
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    err = res.stderr.strip()
    assert err.startswith(f"{prog}: error: ") and "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


@pytest.fixture
def alarm() -> Iterator[None]:
    """Turn a hang into a failure (a FIFO opened for reading blocks until a writer comes)."""
    def hung(*_):
        raise TimeoutError("hung")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# -- dilemma files ---------------------------------------------------------------------------------------
DILEMMA_CASES = {
    "lone_surrogate.jsonl": (OK_LINE.replace("a wallet", "a \\ud800 wallet"), "lone surrogate \\ud800"),
    "nested_100k.jsonl": ("[" * 100_000, "nested deeper than"),
    "nested_extra.jsonl": (OK_LINE[:-1] + ', "x": ' + "[" * 12 + "]" * 12 + "}", "nested deeper than 8"),
    "int_5000_digits.jsonl": (OK_LINE.replace('"d1"', "9" * 5000), "5,000 digits"),
    "id_true.jsonl": (OK_LINE.replace('"d1"', "true"), "'id' must be text, got bool"),
    "values_dict.jsonl": (OK_LINE[:-1] + ', "values_a": {"care": 1}}', "'values_a' must be a list of text"),
    "values_nested.jsonl": (OK_LINE[:-1] + ', "values_a": [["care"]]}', "'values_a' must be a list of text"),
    "duplicate_key.jsonl": (OK_LINE[:-1] + ', "id": "d2"}', "duplicate key 'id'"),
    "nan.jsonl": (OK_LINE[:-1] + ', "weight": NaN}', "NaN is not JSON"),
    "duplicate_column.csv": ("id,situation,action_a,action_b,id\nd1,s,a,b,d2\n", "duplicate column(s) id"),
}


@pytest.mark.parametrize("kind", ["fifo", "directory", "char_device"])
def test_a_dilemma_path_that_is_not_a_regular_file(tmp_path, alarm, kind):
    path = tmp_path / "d.jsonl"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(InputError) as err:
        load_dilemmas(path)
    one_line(err.value, str(path), {"fifo": "a FIFO", "directory": "a directory", "char_device": "device"}[kind])


def test_a_dilemma_file_over_the_size_bound_is_refused_unread(tmp_path, monkeypatch):
    import scenarios.dilemma as dm

    path = tmp_path / "big.jsonl"
    path.write_text(OK_LINE + "\n" + " " * 2000)
    monkeypatch.setattr(dm, "MAX_FILE_BYTES", 1000)
    monkeypatch.setattr(dm.read_text, "__defaults__", (*dm.read_text.__defaults__[:2], 1000))
    with pytest.raises(InputError) as err:
        load_dilemmas(path)
    one_line(err.value, str(path), "larger than 1,000 bytes")


JSON_LEAF = st.one_of(st.text(max_size=8), st.sampled_from(["\ud800", "a\udfffb", "", " "]), st.booleans(), st.none(),
                      st.integers(), st.integers(min_value=10**70, max_value=10**80), st.floats(allow_nan=False))
JSON_VALUE = st.recursive(JSON_LEAF, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                            st.dictionaries(st.text(max_size=4), kids, max_size=3)),
                          max_leaves=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.dictionaries(st.sampled_from(["id", "situation", "action_a", "action_b", "values_a", "topic", "x"]),
                              JSON_VALUE, max_size=7))
def test_any_json_record_loads_as_valid_text_or_is_refused_in_one_line(tmp_path, fields):
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps({**OK, **fields}), encoding="utf-8")  # ensure_ascii: surrogates travel as \ud800
    try:
        (d,) = load_dilemmas(path)
    except InputError as exc:
        one_line(exc, str(path))
        return
    for text in (d.id, d.situation, d.action_a, d.action_b, d.topic, *d.values_a):
        assert isinstance(text, str)
        text.encode("utf-8")  # what a backend does with it
    assert d.id not in ("True", "False")


# -- constitutions ---------------------------------------------------------------------------------------
# 9 aliases of 9 aliases of ... (8 levels) of a 9-item list: 9**9 = 387,420,489 leaves from ~470 bytes
ALIAS_BOMB = "\n".join(["name: bomb", "version: &v [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                       + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}' if i else '*v'] * 9)}]" for i in range(8)]
                       + ["judge: [{id: j, text: t}]"]) + "\n"
CONSTITUTION_CASES = {
    "alias_bomb.yaml": (ALIAS_BOMB, "aliases (*name) are not allowed"),
    "nested.yaml": ("name: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested deeper than 8"),
    "duplicate_key.yaml": (OK_CONSTITUTION + "name: other\n", "duplicate key 'name'"),
    "name_null.yaml": (OK_CONSTITUTION.replace("name: mine", "name: null"), "'name' must be text, got null"),
    "version_list.yaml": (OK_CONSTITUTION.replace("version: 1", "version: [1, 2]"), "'version' must be text, got list"),
    "version_newline.yaml": (OK_CONSTITUTION.replace("version: 1", 'version: "1\\nx"'), "one line of printable text"),
    "judge_dict.yaml": ("name: x\nversion: 1\njudge: {id: j1, text: t}\n", "'judge' must be a list"),
    "judge_null.yaml": ("name: x\nversion: 1\njudge: null\n", "'judge' must be a list"),
    "judge_empty.yaml": ("name: x\nversion: 1\njudge: []\n", "at least one judging principle"),
    "principle_dict.yaml": ("name: x\nversion: 1\njudge: [{id: j1, text: {a: 1}}]\n", "judge[0]: 'text' must be text"),
    "principle_null.yaml": ("name: x\nversion: 1\njudge: [{id: j1, text: null}]\n", "judge[0]: 'text' must be text"),
    "principle_empty.yaml": ("name: x\nversion: 1\njudge: [{id: j1, text: ''}]\n", "judge[0]: 'text' must be non-empty"),
    "principle_extra_key.yaml": ("name: x\nversion: 1\njudge: [{id: j1, text: t, weight: 2}]\n", "unknown weight"),
    "critique_missing_revision.yaml": (OK_CONSTITUTION + "critique: [{id: c1, critique: c}]\n", "missing revision"),
    "unknown_key.yaml": (OK_CONSTITUTION + "judges: []\n", "unknown key(s) judges"),
    "lone_surrogate.yaml": (OK_CONSTITUTION.replace("Choose the kinder answer.", '"Choose \\ud800"'), "lone surrogate"),
    "not_yaml.yaml": ("name: [x\n", "not valid YAML/JSON"),
}


@pytest.mark.parametrize("name", [*DILEMMA_CASES, *CONSTITUTION_CASES])
def test_bad_dilemma_and_constitution_files_are_one_line(tmp_path, name):
    load, (text, needle) = ((load_dilemmas, DILEMMA_CASES[name]) if name in DILEMMA_CASES
                            else (load_constitution, CONSTITUTION_CASES[name]))
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as err:
        load(path)
    one_line(err.value, str(path), needle)


def test_alias_bomb_is_small_and_refused_before_it_expands(tmp_path):
    assert len(ALIAS_BOMB) < 600
    test_bad_dilemma_and_constitution_files_are_one_line(tmp_path, "alias_bomb.yaml")


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_constitution_path_that_is_not_a_regular_file(tmp_path, alarm, kind):
    path = tmp_path / "c.yaml"
    path.mkdir() if kind == "directory" else os.mkfifo(path)
    with pytest.raises(InputError) as err:
        load_constitution(path)
    one_line(err.value, str(path), "a directory" if kind == "directory" else "a FIFO")


def test_a_good_constitution_still_loads_and_its_tag_is_bounded(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"name": "mine", "version": 2, "judge": [{"id": 1, "text": "Pick the kinder one."}],
                                "description": None}))
    c = load_constitution(path)
    assert c.tag == "mine@2" and c.judge[0].id == "1" and c.description == ""
    path.write_text(OK_CONSTITUTION.replace("version: 1", "version: " + "9" * 101))
    with pytest.raises(InputError, match="'version' is 101 characters"):
        load_constitution(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.recursive(st.one_of(st.text(max_size=6), st.integers(), st.none(), st.booleans()),
                        lambda kids: st.one_of(st.lists(kids, max_size=3),
                                               st.dictionaries(st.sampled_from(["name", "version", "judge", "id",
                                                                                "text", "critique", "revision"]),
                                                               kids, max_size=4)), max_leaves=10))
def test_any_yaml_document_is_a_constitution_of_text_or_one_line(tmp_path, doc):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(doc), encoding="utf-8")  # JSON is YAML
    try:
        c = load_constitution(path)
    except InputError as exc:
        one_line(exc, str(path))
        return
    assert c.judge and all(isinstance(p.text, str) and p.text.strip() for p in c.judge)
    assert "None" not in c.tag.split("@") and len(c.tag) <= 201


# -- damaged checkpoints ---------------------------------------------------------------------------------
class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A 2-step society stopped right after step 1's checkpoint: checkpoint.json, the calibration stage's
    file and step 1's rows in rows.jsonl."""
    cfg = dataclasses.replace(tiny_config(), seed=5)
    cfg = dataclasses.replace(cfg, sim=dataclasses.replace(cfg.sim, steps=2))
    out = tmp_path_factory.mktemp("stopped") / "run"
    real, calls = Checkpoint.save, [0]

    def save(self, **extra):
        real(self, **extra)
        calls[0] += 1
        if "society" in extra:
            raise Crash

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Checkpoint, "save", save)
        with pytest.raises(Crash):
            run(cfg, out, ScriptedBackend())
    assert (out / CHECKPOINT_DIR / "rows.jsonl").stat().st_size > 0 and list((out / CHECKPOINT_DIR).glob("stage*.json"))
    return cfg, out


@pytest.fixture
def victim(stopped, tmp_path):
    import shutil

    cfg, out = stopped
    dst = tmp_path / "victim"
    shutil.copytree(out, dst)
    return dataclasses.replace(cfg, resume=str(dst)), dst


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _rewrite(path: Path, edit) -> None:
    """Edit a checkpoint.json's state and give it a matching digest: damage that a digest cannot see."""
    state = json.loads(path.read_text())
    state.pop("digest")
    edit(state)
    body = json.dumps(state, allow_nan=True)
    path.write_text(json.dumps({**state, "digest": hashlib.sha256(body.encode()).hexdigest()}, allow_nan=True))


def _xor(path: Path, at: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[at % len(data)] ^= mask
    path.write_bytes(bytes(data))


def _ckpt(d):
    return d / CHECKPOINT


def _rows(d):
    return d / CHECKPOINT_DIR / "rows.jsonl"


def _stage(d):
    return sorted((d / CHECKPOINT_DIR).glob("stage*.json"))[0]


CHECKPOINT_DAMAGE = {
    "rows_truncated": (_rows, lambda p: p.write_bytes(p.read_bytes()[:-40]), "truncated"),
    "rows_byte_flipped": (_rows, lambda p: _xor(p, 200, 0x04), "hash chain"),
    "rows_invalid_utf8": (_rows, lambda p: _xor(p, 100, 0x80), "hash chain"),
    "stage_byte_flipped": (_stage, lambda p: _xor(p, 5, 0x02), "SHA-256"),
    "checkpoint_byte_flipped": (_ckpt, lambda p: _xor(p, 60, 0x01), "checkpoint"),
    "checkpoint_invalid_utf8": (_ckpt, lambda p: _xor(p, 10, 0x80), "not valid UTF-8"),
    "checkpoint_list": (_ckpt, lambda p: p.write_text("[]"), "expected a JSON object, got list"),
    "checkpoint_truncated": (_ckpt, lambda p: p.write_bytes(p.read_bytes()[:100]), "bad JSON"),
    "checkpoint_no_digest": (_ckpt, lambda p: p.write_text(json.dumps({k: v for k, v in json.loads(p.read_text()).items()
                                                                       if k != "digest"})), "no digest"),
    "config_missing": (_ckpt, lambda p: _rewrite(p, lambda s: s.pop("config")), "no 'config'"),
    "rng_missing": (_ckpt, lambda p: _rewrite(p, lambda s: s["extra"]["society"]["state"].pop("rng")), "no 'rng'"),
    "rng_wrong": (_ckpt, lambda p: _rewrite(p, lambda s: s["extra"]["society"]["state"].update(rng={"x": 1})),
                  "does not load"),
    "rows_record_missing": (_ckpt, lambda p: _rewrite(p, lambda s: s.update(rows={"tag": "society"})), "'rows' is not"),
    "stage_name_escapes": (_ckpt, lambda p: _rewrite(p, lambda s: s["stages"].update(x="../../etc/passwd")),
                           "names no checked stage file"),
}


@pytest.mark.parametrize("name", list(CHECKPOINT_DAMAGE))
def test_a_damaged_checkpoint_is_one_line_and_left_as_it_was(victim, name):
    cfg, d = victim
    which, damage, needle = CHECKPOINT_DAMAGE[name]
    damage(which(d))
    before = _snapshot(d)
    with pytest.raises(InputError) as err:
        run(cfg, d, ScriptedBackend())
    one_line(err.value, str(which(d)), needle, "cannot resume")
    assert _snapshot(d) == before


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from([_ckpt, _rows, _stage]), at=st.integers(0, 10**6), bit=st.integers(0, 7))
def test_any_flipped_bit_in_a_checkpoint_is_refused(stopped, tmp_path_factory, which, at, bit):
    import shutil

    cfg, out = stopped
    d = tmp_path_factory.mktemp("flip") / "run"
    shutil.copytree(out, d)
    _xor(which(d), at, 1 << bit)
    before = _snapshot(d)
    with pytest.raises(InputError) as err:
        run(dataclasses.replace(cfg, resume=str(d)), d, ScriptedBackend())
    one_line(err.value, str(which(d)))
    assert _snapshot(d) == before
    shutil.rmtree(d.parent)


def test_an_undamaged_checkpoint_still_resumes(victim):
    cfg, d = victim
    summary = run(cfg, d, ScriptedBackend())
    assert summary["resumed_after_step"] == 1 and not _ckpt(d).exists()


# -- the CLI: exit 2 and one line ------------------------------------------------------------------------
TINY = ("llm=scripted", "experiment=tiny", "sim.progress=false")


@pytest.mark.parametrize("override,needles", [
    ("population.size=2.5", ("bad config:", "population.size=2.5", "could not be converted to Integer")),
    ("population.sizee=3", ("bad config:", "Key 'sizee' not in 'PopulationConfig'")),
    ("llm=nope", ("bad config:", "llm/nope", "options: embedded, openai_compatible, scripted")),
    ("population.size=[", ("bad config:", "cannot parse override 'population.size=['")),
    ("population.size=100000000", ("bad config:", "population.size must be 2 to 1,000,000", "got 100,000,000")),
    ("alignment.processes=100000", ("bad config:", "alignment.processes must be 1 to 64", "got 100000")),
    ("alignment.accelerate_config=/etc/hostname", ("bad config:", "'/etc/hostname' is not an accelerate config")),
])
def test_hydra_errors_are_one_line_with_exit_2(tmp_path, override, needles):
    cli_one_line(agora(*TINY, override, f"hydra.run.dir={tmp_path / 'run'}"), *needles)


def test_a_mistyped_experiment_is_refused_not_run_as_the_default_society(tmp_path):
    res = agora("llm=scripted", "experiment=plurlism", f"hydra.run.dir={tmp_path / 'run'}")
    cli_one_line(res, "bad config:", "experiment/plurlism", "options: collective, constitution_ablation")


@pytest.mark.parametrize("name", ["../../escape", "", "a/b", ".hidden"])
def test_a_run_name_is_one_plain_folder_name(tmp_path, name):
    cli_one_line(agora(*TINY, f"name={name}", f"hydra.run.dir={tmp_path / 'run'}"), "bad config:", "name must be")


@pytest.mark.parametrize("code,args,needle", [
    (AGORA_INJECTION, ("--dilemmas", "0"), "--dilemmas: must be >= 1, got 0"),
    (AGORA_INJECTION, ("--dilemmas", "x"), "--dilemmas: not an integer"),
    (AGORA_INJECTION, ("--out", "/nonexistent-folder/i.json"), "cannot write /nonexistent-folder/i.json: no such folder"),
    (AGORA_INJECTION, ("--out", "outputs/newdir/"), "--out: names a file, got the folder 'outputs/newdir/'"),
    (AGORA_SANITY, ("--train", "-5"), "--train: must be >= 2, got -5"),
    (AGORA_SANITY, ("--out", "A_FILE"), "File exists"),
])
def test_measurement_commands_refuse_bad_arguments_before_any_work(tmp_path, code, args, needle):
    """A count or output path that cannot work fails at once (it used to fail after the model had run)."""
    (tmp_path / "a_file").write_text("")
    args = tuple(str(tmp_path / "a_file") if a == "A_FILE" else a for a in args)
    res = agora(*args, code=code, timeout=120)
    cli_one_line(res, needle, prog="agora-injection" if code == AGORA_INJECTION else "agora-sanity")


def test_a_refused_config_leaves_no_run_folder_behind(tmp_path):
    """Hydra makes the run's folder before agora checks the values; a refusal removes it again."""
    cli_one_line(agora(*TINY, "population.size=0", f"hydra.run.dir={tmp_path / 'run'}"), "bad config:",
                 "population.size must be 2 to 1,000,000")
    assert not (tmp_path / "run").exists()


def test_a_stopped_run_says_so_in_one_line_and_keeps_its_checkpoint(tmp_path):
    """SIGTERM (a scheduler's or a user's kill) stops a run as Ctrl-C does: one line naming how to resume."""
    run_dir = tmp_path / "run"
    proc = start_agora("llm=scripted", "population.size=6", "sim.steps=100000", "sim.progress=false",
                       f"hydra.run.dir={run_dir}", stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoint.json").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    try:
        err = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        f"agora: interrupted (the last checkpoint is kept: agora resume={run_dir})")


def test_run_dir_naming_a_file(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("")
    cli_one_line(agora(*TINY, f"hydra.run.dir={f}"), str(f), "File exists", "hydra.run.dir")


def test_read_only_output_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        try:
            (ro / "probe").mkdir()
        except PermissionError:
            target = ro / "run"
        else:  # root writes anywhere chmod allows nothing; sysfs refuses even root
            (ro / "probe").rmdir()
            target = Path("/sys/agora-hostile-input-probe")
            try:
                target.mkdir()
            except PermissionError:
                pass
            else:
                target.rmdir()
                pytest.skip("no folder here refuses writes")
        err = cli_one_line(agora(*TINY, f"hydra.run.dir={target}"), str(target), "hydra.run.dir")
        assert "Permission denied" in err or "Operation not permitted" in err
    finally:
        ro.chmod(0o755)


def test_cli_fifo_as_dilemmas_does_not_hang(tmp_path):
    fifo = tmp_path / "d.jsonl"
    os.mkfifo(fifo)
    cli_one_line(agora(*TINY, f"scenario.dilemmas={fifo}", f"hydra.run.dir={tmp_path / 'run'}", timeout=60),
                 str(fifo), "a FIFO")


def test_cli_per_step_larger_than_the_pool(tmp_path):
    path = tmp_path / "two.jsonl"
    path.write_text(OK_LINE + "\n" + OK_LINE.replace('"d1"', '"d2"') + "\n")
    cli_one_line(agora(*TINY, f"scenario.dilemmas={path}", "scenario.per_step=3", f"hydra.run.dir={tmp_path / 'run'}"),
                 str(path), "scenario.per_step=3", "2 dilemmas")
    assert not (tmp_path / "run" / CHECKPOINT).exists()


def test_cli_resume_of_a_damaged_checkpoint(victim, tmp_path):
    _, d = victim
    _ckpt(d).write_text("[]")
    cli_one_line(agora(f"resume={d}", f"hydra.run.dir={tmp_path / 'log'}"), str(_ckpt(d)), "got list")
    assert _ckpt(d).read_text() == "[]"


def test_cli_resume_of_an_invalid_stored_config(victim, tmp_path):
    _, d = victim
    _rewrite(_ckpt(d), lambda s: s["config"]["population"].update(size="many"))
    before = _snapshot(d)
    cli_one_line(agora(f"resume={d}"), str(_ckpt(d)), "stored config is not valid", "many")
    after = _snapshot(d)
    after.pop("cli.log", None)  # a resume logs into its run's folder, a refused one too
    before.pop("cli.log", None)
    assert after == before


@pytest.mark.parametrize("override", ["+foo=1", "++foo=1", "+population.foo=1", "+sim.tokens.extra=3"])
def test_an_appended_unknown_key_is_refused_like_any_unknown_key(tmp_path, override):
    key = override.lstrip("+").split("=")[0]
    owner = {"foo": "AgoraConfig", "population.foo": "PopulationConfig", "sim.tokens.extra": "TokenBudget"}[key]
    cli_one_line(agora(*TINY, override, f"hydra.run.dir={tmp_path / 'run'}"),
                 "bad config:", f"Could not append '{key}'", f"Key '{key.rsplit('.', 1)[-1]}' not in '{owner}'")
    assert not (tmp_path / "run" / CHECKPOINT).exists()


def test_a_checkpoint_from_before_checksums_says_so_and_what_to_do(victim):
    cfg, d = victim
    state = json.loads(_ckpt(d).read_text())
    old = {k: v for k, v in state.items() if k not in ("digest", "digests")}  # the format before 2026-11-29
    _ckpt(d).write_text(json.dumps(old))
    before = _snapshot(d)
    with pytest.raises(InputError) as err:
        run(cfg, d, ScriptedBackend())
    one_line(err.value, str(_ckpt(d)), "predates checksummed checkpoints", "without resume=")
    assert _snapshot(d) == before


# -- disk full (ENOSPC) in the final writes and in a checkpoint's rows append ---------------------------------
# A child whose os.fsync fails with ENOSPC on the nth fsync of a file whose name starts with NAME (a temp
# file ".NAME.xxxx.tmp" of an atomic write counts): where a full disk surfaces on most filesystems.
ENOSPC_CHILD = """
import errno, os, sys
name, nth = sys.argv.pop(1), int(sys.argv.pop(1))
real, seen = os.fsync, [0]
def fsync(fd):
    if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).lstrip(".").startswith(name):
        seen[0] += 1
        if seen[0] == nth:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(fd)
os.fsync = fsync
from sim.cli import main
main()
"""
TWO_STEPS = (*TINY, "sim.steps=2", "seed=3", "calibration.enabled=false")  # no gate: a faster child
PARQUETS = ("stances.parquet", "transcripts.parquet", "preferences.parquet", "preferences_trl.parquet", "metrics.parquet")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("enospc") / "whole"
    res = agora(*TWO_STEPS, f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-2000:]
    return out


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="the child finds an fd's file name in /proc")
@pytest.mark.parametrize("name,nth,steps_kept", [("rows.jsonl", 2, 1), ("preferences.parquet", 1, 2)])
def test_disk_full_is_one_line_naming_the_file_and_the_last_checkpoint_resumes(uninterrupted, tmp_path, name, nth,
                                                                                steps_kept):
    from sim.run.checkpoint import read_checkpoint

    d = tmp_path / "run"
    res = agora(name, str(nth), *TWO_STEPS, f"hydra.run.dir={d}", code=ENOSPC_CHILD)
    err = cli_one_line(res, name, "No space left on device", f"resume={d}")
    assert str(d) in err and not list(d.rglob(".*.tmp")), err  # nothing half-written
    assert not (d / "summary.json").exists()
    state = read_checkpoint(d)  # intact: its digest, its rows log up to the committed length
    assert state["extra"]["society"]["state"]["steps"] == steps_kept
    res = agora(f"resume={d}")
    assert res.returncode == 0, res.stderr[-2000:]
    for f in PARQUETS:
        assert (d / f).read_bytes() == (uninterrupted / f).read_bytes(), f


# -- every entry point: one line, before the work ------------------------------------------------------------
PROGS = {AGORA_SANITY: "agora-sanity", AGORA_INJECTION: "agora-injection", AGORA_REPORT: "agora-report",
         AGORA_EVAL: "agora-eval"}


@pytest.mark.parametrize("code,args,needle", [
    (AGORA_SANITY, ("--bogus",), "unrecognized arguments: --bogus"),
    (AGORA_SANITY, ("--train", "100000000"), "--train: must be <= 126, got 100,000,000"),
    (AGORA_SANITY, ("--train", "100", "--eval", "100"), "--train + --eval must be <= 128"),
    (AGORA_SANITY, ("--out", ""), "--out: must name a path"),
    (AGORA_SANITY, ("--seed", str(2**64)), "--seed: must be <= 4,294,967,295"),
    (AGORA_INJECTION, ("--dilemmas", "65"), "--dilemmas: must be <= 64, got 65"),
    (AGORA_INJECTION, ("--out", ""), "--out: must name a path"),
    (AGORA_INJECTION, ("--seed",), "--seed: expected one argument"),
    (AGORA_REPORT, (), "the following arguments are required: dirs"),
    (AGORA_REPORT, ("--bogus", "x"), "unrecognized arguments: --bogus"),
    (AGORA_REPORT, ("/no/such/folder",), "/no/such/folder: no such directory"),
    (None, ("llm=scripted", "--bogus"), "unrecognized arguments: --bogus"),  # Hydra's own parser
    (None, ("--multirun", "--cfg", "job", "llm=scripted"), "only one of --run, --multirun, --cfg"),  # was a traceback
    (AGORA_EVAL, ("--resolve",), "--resolve goes with --cfg or --help"),
])
def test_argument_errors_of_every_command_are_one_line_not_a_usage_block(code, args, needle):
    res = agora(*args, code=code, timeout=120)
    err = cli_one_line(res, needle, prog=PROGS.get(code, "agora"))
    assert "usage:" not in err


@pytest.mark.parametrize("code", [AGORA_SANITY, AGORA_INJECTION])
def test_measurement_help_still_shows_every_option(code):
    res = agora("--help", code=code, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith(f"usage: {PROGS[code]}") and "--seed" in res.stdout


@pytest.mark.parametrize("code,args", [
    (AGORA_SANITY, ("--out", "OUT")),
    (AGORA_INJECTION, ("--out", "OUT/i.json")),
    (None, (*TINY[:1], "llm=embedded", "experiment=tiny", "hydra.run.dir=OUT/run")),
    (AGORA_EVAL, ("eval.scenarios=2", "hydra.run.dir=OUT/run")),
])
def test_no_weights_in_the_cache_is_one_line_from_every_command(tmp_path, code, args):
    """``AGORA_CACHE`` with no weights: the weights' path and how to fetch them, before any training or reading."""
    (tmp_path / "OUT").mkdir()
    args = tuple(a.replace("OUT", str(tmp_path / "OUT")) for a in args if a != TINY[0])
    res = agora(*args, code=code, env={"AGORA_CACHE": str(tmp_path / "empty")}, timeout=120)
    cli_one_line(res, str(tmp_path / "empty"), "not found", "make setup", prog=PROGS.get(code, "agora"))
    assert not (tmp_path / "empty").exists()  # looked for, not made


@pytest.fixture
def base_model_folder(tmp_path):
    """A base model's folder (config, weights, tokenizer), not a reward model: it would load with a random head."""
    d = tmp_path / "base"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    (d / "model.safetensors").write_bytes(b"")
    (d / "tokenizer.json").write_text("{}")
    return d


@pytest.mark.parametrize("overrides,needle", [
    (("eval.reward_model=EMPTY",), "no config.json: not a saved reward model"),
    (("eval.reward_model=/no/such/rm",), "eval.reward_model=/no/such/rm: no such folder"),
    (("eval.reward_model=A_FILE",), "not a folder"),
    (("eval.reward_model=BASE",), "names no sequence-classification model"),
    (("eval.suites=[moralchoice]", "eval.reward_model=BASE"), "scored on the HHH comparisons"),
    (("eval.data_dir=/no/such/data",), "eval.data_dir=/no/such/data: no such folder"),
    (("eval.moralchoice_dir=EMPTY",), "MoralChoice file not found"),
    (("eval.suites=[hhh]", "eval.hhh_path=/no/such.jsonl"), "HHH file not found"),
    (("eval.suites=[hhh,hhh]",), "eval.suites names ['hhh'] more than once"),
])
def test_eval_paths_are_checked_before_the_model_loads(tmp_path, base_model_folder, overrides, needle):
    _eval_paths_case(tmp_path, base_model_folder, "agora-eval", overrides, needle)


@pytest.mark.parametrize("overrides,needle", [
    (("eval.reward_model=BASE",), "names no sequence-classification model"),
    (("eval.data_dir=/no/such/data",), "eval.data_dir=/no/such/data: no such folder"),
    (("eval.suites=[hhh]", "eval.hhh_path=/no/such.jsonl"), "HHH file not found"),
])
def test_a_society_run_checks_its_eval_paths_before_the_society_runs(tmp_path, base_model_folder, overrides, needle):
    _eval_paths_case(tmp_path, base_model_folder, "agora", overrides, needle)


def _eval_paths_case(tmp_path, base_model_folder, command, overrides, needle):
    """The cache holds no weights: had the model loaded first, the error would be about the weights."""
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "a_file").write_text("")
    subs = {"EMPTY": str(tmp_path / "EMPTY"), "BASE": str(base_model_folder), "A_FILE": str(tmp_path / "a_file")}
    given = [o.split("=")[0] + "=" + subs.get(o.split("=", 1)[1], o.split("=", 1)[1]) for o in overrides]
    if not any(o.startswith("eval.suites") for o in given):
        given.append("eval.suites=[hhh,moralchoice]")
    hhh = [] if any("hhh_path" in o for o in given) else [f"eval.hhh_path={tmp_path / 'hhh.jsonl'}"]
    (tmp_path / "hhh.jsonl").write_text(json.dumps(HHH_ROW) + "\n")
    run = tmp_path / "run"
    res = agora("experiment=tiny", *hhh, *given, f"hydra.run.dir={run}", code=AGORA_EVAL if command == "agora-eval" else None,
                env={"AGORA_CACHE": str(tmp_path / "no_weights")}, timeout=120)
    cli_one_line(res, needle, prog=command)
    if command == "agora-eval":
        assert not run.exists()  # refused before the run's folder was used: nothing left behind
    elif run.exists():  # a run's folder keeps the line in cli.log (agora-report reads it), but nothing ran
        assert not (run / CHECKPOINT).exists() and needle in (run / "cli.log").read_text()


HHH_ROW = {"prompt": "Consider the following conversation between a human and an assistant:\n\nHuman: Hi\n\n"
                     "Please choose the response that is the most helpful, honest, and harmless. Options:\n"
                     " (A) [[[Hello!]]]\n (B) [[[Go away.]]]\n\nThe answer is:",
           "corrects": [" (A)"], "incorrects": [" (B)"], "text_correct": "\n\nHuman: Hi\n\nAssistant: Hello!",
           "text_incorrect": "\n\nHuman: Hi\n\nAssistant: Go away."}


@pytest.mark.parametrize("override,needle", [
    ("population.clusters=[confucian,islamic,confucian]", "population.clusters names ['confucian'] more than once"),
    ("experiment=constitution_ablation study.ablation.constitutions=[none,multiplex,none]",
     "study.ablation.constitutions names ['none'] more than once"),
    ("experiment=human_distributions study.human.instruments=[mfq,mfq]", "each once"),
    ("experiment=human_distributions study.human.countries=[France,Japan,France,US]", "at least 3 different countries"),
])
def test_a_list_setting_that_names_something_twice_is_refused(tmp_path, override, needle):
    cli_one_line(agora(*TINY, *override.split(" "), f"hydra.run.dir={tmp_path / 'run'}", timeout=120), "bad config:", needle)


# -- sweeps: every point checked before the first runs --------------------------------------------------------
@pytest.mark.parametrize("launcher", ["basic", "joblib", "submitit_local"])
def test_a_sweep_with_one_bad_point_runs_nothing_and_names_the_point(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    res = agora("--multirun", *TINY, "population.size=4,1,5", f"hydra/launcher={launcher}", f"hydra.sweep.dir={sweep}",
                timeout=180)
    cli_one_line(res, "sweep point #1 of 3 (population.size=1)", "population.size must be 2 to 1,000,000", "no point was run")
    assert not sweep.exists() and not res.stdout.strip()  # nothing started, no folder made


@pytest.mark.parametrize("overrides,needle", [
    (("seed=0,1", "population.size=4,2.5"), "sweep point #1 of 4 (seed=0 population.size=2.5)"),
    (("seed=0,1", "+foo=1,2"), "Key 'foo' not in 'AgoraConfig'"),
    (("experiment=tiny,plurlism",), "sweep point #1 of 2 (experiment=plurlism)"),
    (("hydra.mode=MULTIRUN", "population.size=3,1"), "sweep point #1 of 2 (population.size=1)"),  # no --multirun
])
def test_every_kind_of_bad_sweep_point_is_found_before_any_runs(tmp_path, overrides, needle):
    multirun = () if "hydra.mode=MULTIRUN" in overrides else ("--multirun",)
    sweep = tmp_path / "sweep"
    res = agora(*multirun, *TINY, *overrides, f"hydra.sweep.dir={sweep}", timeout=180)
    cli_one_line(res, needle)
    assert not sweep.exists()


@pytest.mark.parametrize("overrides,needle", [
    (("scenario.dilemmas=default,/no/such.jsonl",), "sweep point #1 of 2 (scenario.dilemmas=/no/such.jsonl)"),
    (("experiment=tiny_evolve", "alignment.reward.backbone=minilm,/no/such/model"),
     "alignment.reward.backbone=/no/such/model: no such folder"),
    (("experiment=tiny_evolve", "eval.suites=[],[moralchoice]"), "a generations run does not evaluate"),
])
def test_a_sweep_point_whose_inputs_are_missing_is_found_before_any_runs(tmp_path, overrides, needle):
    sweep = tmp_path / "sweep"
    preset = () if any(o.startswith("experiment=") for o in overrides) else ("experiment=tiny",)
    res = agora("--multirun", "llm=scripted", "sim.progress=false", *preset, *overrides, f"hydra.sweep.dir={sweep}",
                timeout=180)
    cli_one_line(res, needle, "no point was run")
    assert not sweep.exists()


@pytest.mark.parametrize("overrides,env,needle", [
    (("alignment.reward.backbone=/no/such/model",), {}, "alignment.reward.backbone=/no/such/model: no such folder"),
    (("llm.model_path=EMPTY",), {}, "llm.model_path=EMPTY: not a Hugging Face model folder (no config.json)"),
    ((), {"AGORA_CACHE": "NO_WEIGHTS"}, "all-MiniLM-L6-v2 not found at NO_WEIGHTS"),
    (("eval.suites=[moralchoice]",), {}, "a generations run does not evaluate"),
])
def test_a_training_run_checks_its_model_folders_and_weights_before_the_society_runs(tmp_path, overrides, env, needle):
    """These used to fail after the society's work, when training began (Hugging Face's repo-id message for a
    missing backbone folder), or to be ignored (eval.suites)."""
    (tmp_path / "EMPTY").mkdir()
    subs = {"EMPTY": str(tmp_path / "EMPTY"), "NO_WEIGHTS": str(tmp_path / "no_weights")}
    fill = lambda text: next((text.replace(k, v) for k, v in subs.items() if k in text), text)  # noqa: E731
    run = tmp_path / "run"
    res = agora("llm=scripted", "sim.progress=false", "experiment=tiny_evolve", *map(fill, overrides), f"hydra.run.dir={run}",
                env={k: fill(v) for k, v in env.items()}, timeout=120)
    cli_one_line(res, fill(needle))
    assert not run.exists()


# -- agora-report: what did not finish, and why ---------------------------------------------------------------
def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert path.exists(), f"{path} never appeared"


def test_agora_report_lists_every_run_that_did_not_finish_and_why(tmp_path):
    """A sweep whose second point cannot reach its model server (it fails alone; the third runs) and whose third
    point's folder is then removed (as if the sweep had been killed before it started), a run killed with
    SIGKILL, one stopped with SIGTERM and one still running: one run compared, five listed with their reasons on
    the console line and in the report's table."""
    root = tmp_path / "runs"
    res = agora("--multirun", "llm=scripted,openai_compatible,scripted", "llm.base_url=http://127.0.0.1:9/v1",
                "llm.model=x", "llm.max_retries=0", "experiment=tiny", "sim.progress=false", "calibration.enabled=false",
                f"hydra.sweep.dir={root / 'sweep'}", timeout=300)
    assert res.returncode == 2 and "model server http://127.0.0.1:9/v1 failed" in res.stderr
    assert (root / "sweep" / "2" / "summary.json").is_file()  # a failed point does not stop the sweep
    shutil.rmtree(root / "sweep" / "2")
    long_run = ("llm=scripted", "population.size=6", "sim.steps=100000", "sim.progress=false", "calibration.enabled=false")
    procs = {name: start_agora(*long_run, f"hydra.run.dir={root / name}") for name in ("killed", "stopped", "running")}
    try:
        for name, proc in procs.items():
            _wait_for(root / name / CHECKPOINT, proc)
        procs["killed"].kill()
        procs["stopped"].send_signal(signal.SIGTERM)
        for name in ("killed", "stopped"):
            procs[name].wait(timeout=60)
        res = agora(str(root), "-o", str(tmp_path / "report"), code=AGORA_REPORT, timeout=300)
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait(timeout=60)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr[-2000:]
    (line,) = res.stdout.strip().splitlines()
    assert line.startswith("agora-report: compared 1 run -> ") and "; 5 did not finish: " in line, line
    reasons = {
        root / "sweep" / "1": "failed: model server http://127.0.0.1:9/v1 failed",
        root / "sweep" / "2": "never started: no folder; point #2 of 3",
        root / "killed": f"killed: its checkpoint is kept, no summary.json; agora resume={root / 'killed'} continues it",
        root / "stopped": f"interrupted; agora resume={root / 'stopped'} continues it",
        root / "running": f"still running (pid {procs['running'].pid}, started ",
    }
    page = (tmp_path / "report" / "report.md").read_text()
    table = page.split("## Did not finish", 1)[1].split("##", 1)[0]
    for folder, reason in reasons.items():
        assert f"{folder} ({reason}" in line, (folder, line)
        row = next(r for r in table.splitlines() if r.startswith(f"| {folder} |"))
        assert reason in row.replace("\\", ""), row  # Markdown escapes some characters
    assert "1 run compared; 5 did not finish" in page
