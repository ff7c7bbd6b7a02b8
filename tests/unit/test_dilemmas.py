import json

import pytest

from scenarios.constitution import bundled_constitutions, load_constitution
from scenarios.dilemma import load_dilemmas
from scenarios.errors import InputError
from tests.helpers import agora


def test_bundled_default_has_at_least_40_real_dilemmas():
    ds = load_dilemmas("default")
    assert len(ds) >= 40
    assert {d.source.split(" ")[0] for d in ds} == {"MoralChoice", "DailyDilemmas"}
    assert len({d.id for d in ds}) == len(ds)


def test_bundled_default_matches_shared_data(shared_data):
    from scenarios.bundled import build_default

    assert [r["id"] for r in build_default(shared_data)] == [d.id for d in load_dilemmas("default")]


def test_jsonl_and_csv_load_with_optional_and_unknown_columns(tmp_path):
    j = tmp_path / "d.jsonl"
    j.write_text(json.dumps({"id": 1, "situation": "S", "action_a": "A", "action_b": "B", "values_a": ["care"],
                             "topic": "t", "note": "kept"}) + "\n\n")
    (d,) = load_dilemmas(j)
    assert d.id == "1" and d.values_a == ("care",) and d.extra == {"note": "kept"}
    c = tmp_path / "d.csv"
    c.write_text("id,situation,action_a,action_b,values_b,extra_col\nx,\"S, with comma\",A,B,honesty;care,9\n")
    (d,) = load_dilemmas(c)
    assert d.situation == "S, with comma" and d.values_b == ("honesty", "care") and d.extra == {"extra_col": "9"}


@pytest.mark.parametrize("name,content,expected", [
    ("missing.csv", "id,situation,action_a\n1,s,a\n", r"missing.csv:1: missing required column\(s\) action_b"),
    ("badjson.jsonl", '{"id":"1","situation":"s","action_a":"a","action_b":"b"}\n{oops\n', r"badjson.jsonl:2: bad JSON"),
    ("empty.jsonl", "\n  \n", r"empty.jsonl: empty file"),
    ("dup.jsonl", '{"id":"1","situation":"s","action_a":"a","action_b":"b"}\n'
                  '{"id":"1","situation":"t","action_a":"a","action_b":"b"}\n', r"duplicate id '1'"),
    ("blank.jsonl", '{"id":"1","situation":"  ","action_a":"a","action_b":"b"}\n', r"blank.jsonl:1: 'situation' must be"),
    ("list.jsonl", '[1,2]\n', r"list.jsonl:1: expected a JSON object"),
    ("types.jsonl", '{"id":"1","situation":{"x":1},"action_a":"a","action_b":"b"}\n', r"'situation' must be text"),
    ("ragged.csv", "id,situation,action_a,action_b\n1,s,a,b,extra\n", r"ragged.csv:2: more fields"),
    ("d.txt", "whatever", r"unsupported dilemma file type"),
])
def test_malformed_inputs_name_file_line_and_problem(tmp_path, name, content, expected):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(InputError, match=expected):
        load_dilemmas(p)


def test_non_utf8_and_binary_files(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes("id,situation,action_a,action_b\n1,caf\xe9,a,b\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1.csv:2: not valid UTF-8"):
        load_dilemmas(p)
    q = tmp_path / "bin.jsonl"
    q.write_bytes(b'{"id":"1"}\n\x00\x00')
    with pytest.raises(InputError, match="NUL byte"):
        load_dilemmas(q)


def test_huge_field_is_refused(tmp_path):
    p = tmp_path / "huge.jsonl"
    p.write_text(json.dumps({"id": "1", "situation": "x" * 1_000_000, "action_a": "a", "action_b": "b"}))
    with pytest.raises(InputError, match="1,000,000 characters"):
        load_dilemmas(p)


def test_cli_reports_bad_dilemma_file_in_one_line_without_traceback(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id":"1","situation":"s","action_a":"a"}\n')
    out = agora("llm=scripted", f"scenario.dilemmas={p}", f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert out.returncode == 2
    lines = [x for x in out.stderr.splitlines() if x.strip()]
    assert lines == [f"agora: error: {p}:1: missing required column(s) action_b"]
    assert not (tmp_path / "run" / "summary.json").exists()


def test_constitutions_keep_critique_and_judging_apart():
    assert {"harmlessness", "multiplex"} <= set(bundled_constitutions())
    for name in ("harmlessness", "multiplex"):
        c = load_constitution(name)
        assert c.critique and c.judge and c.tag == f"{name}@1.0"
        assert not {p.id for p in c.critique} & {p.id for p in c.judge}


def test_bad_constitution_files(tmp_path):
    with pytest.raises(InputError, match="unknown constitution 'nope'"):
        load_constitution("nope")
    p = tmp_path / "c.yaml"
    p.write_text("name: x\nversion: 1\ncritique: []\n")
    with pytest.raises(InputError, match="missing key 'judge'"):
        load_constitution(p)
    p.write_text("name: x\nversion: 1\njudge: []\n")
    with pytest.raises(InputError, match="at least one judging principle"):
        load_constitution(p)
