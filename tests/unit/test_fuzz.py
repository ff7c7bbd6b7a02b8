"""Hostile and random input at every door: each loader and the config either accept the input or
refuse it with one clear line (InputError / a config error) — never another exception."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenarios.constitution import load_constitution
from scenarios.dilemma import load_dilemmas
from scenarios.errors import InputError
from scenarios.external import load_hhh, load_moralchoice

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
EDGE_TEXT = st.sampled_from(["", " ", "\u200b", "\u202e evil", "é" * 3, "🙂" * 5, "a\x00b", "\r\n", "\ufeffid",
                             "x" * 1_000_001, "<|im_end|>", "]]]", "\\", "\"", "None"])
TEXT = st.one_of(st.text(max_size=40), EDGE_TEXT)
VALUE = st.one_of(TEXT, st.integers(), st.floats(allow_nan=True), st.booleans(), st.none(),
                  st.lists(TEXT, max_size=3), st.dictionaries(TEXT, TEXT, max_size=2))


def _refused_cleanly(fn, path):
    try:
        out = fn(path)
    except InputError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg and "Traceback" not in msg
        return None
    return out


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".jsonl", ".csv"]))
def test_random_bytes_never_escape_the_loaders(tmp_path, data, suffix):
    for name, fn in (("d", load_dilemmas), ("m", load_moralchoice), ("h", load_hhh)):
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(data)
        _refused_cleanly(fn, path)
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    _refused_cleanly(load_constitution, path)


@FUZZ
@given(records=st.lists(st.dictionaries(st.sampled_from(["id", "situation", "action_a", "action_b", "values_a",
                                                         "topic", "extra"]), VALUE, max_size=7), min_size=1, max_size=4))
def test_random_dilemma_records_load_as_text_or_are_refused(tmp_path, records):
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    out = _refused_cleanly(load_dilemmas, path)
    for d in out or []:
        for f in (d.id, d.situation, d.action_a, d.action_b):
            assert isinstance(f, str) and f.strip() and len(f) <= 20_000


@FUZZ
@given(rows=st.lists(st.tuples(TEXT, TEXT, TEXT, TEXT), min_size=1, max_size=3))
def test_random_moralchoice_rows(tmp_path, rows):
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["scenario_id", "context", "action1", "action2"])
    w.writerows(rows)
    path = tmp_path / "mc.csv"
    path.write_bytes(buf.getvalue().encode("utf-8", "surrogatepass"))
    _refused_cleanly(load_moralchoice, path)


CONFIG_KEYS = ["population.size", "population.clusters", "population.spread", "sim.steps", "sim.group_size",
               "sim.tokens.stance", "llm.max_batch_size", "llm.temperature", "network.kind", "scenario.per_step",
               "alignment.generations", "eval.suites", "seed", "no_such_key", "sim.no_such_key"]
YAML_VALUE = st.one_of(st.integers(-5, 10**12).map(str), st.sampled_from(["-1", "0", "1e309", "nan", "null", "[]", "{}",
                                                                           "[a,b]", "'x'", "true", "''", "ü", "🙂"]),
                       st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=8))


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(CONFIG_KEYS), value=YAML_VALUE)
def test_config_overrides_with_wrong_types_fail_with_a_config_error(key, value):
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from tests.helpers import compose

    try:
        compose(f"{key}={value}", scripted=False)
    except (HydraException, OmegaConfBaseException, ValueError, InputError) as exc:
        assert str(exc).strip().splitlines()[0]  # the CLI prints this first line
    # accepted values are fine too: the dataclass checks in __post_init__ passed


def test_cli_bad_dilemma_file_leaves_no_complete_looking_output(tmp_path):
    from tests.helpers import agora

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "situation": 3.5}\n')
    out = tmp_path / "out"
    res = agora(f"scenario.dilemmas={bad}", "llm=scripted", f"hydra.run.dir={out}", timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert not (out / "summary.json").exists() and not (out / "preferences.parquet").exists()


@pytest.mark.parametrize("size", [1_000_001])
def test_a_1mb_situation_is_refused_in_one_line(tmp_path, size):
    path = tmp_path / "huge.jsonl"
    path.write_text(json.dumps({"id": "h", "situation": "x" * size, "action_a": "a", "action_b": "b"}))
    with pytest.raises(InputError, match="characters"):
        load_dilemmas(path)
