import dataclasses
import os

import polars as pl
import pytest

from alignment.preferences import PREFERENCE_SCHEMA, SchemaError, validate_preferences
from sim.run import store
from sim.society.records import TRANSCRIPT_SCHEMA, Message, Preference, Stance


def _pref(i: int, p_a: float) -> dict:
    return {"pref_id": f"p{i}", "run_id": "r", "generation": 0, "step": 1, "dilemma_id": "d", "prompt": "P",
            "response_a": f"a{i}", "response_b": f"b{i}", "author_a": 0, "author_b": 1, "cluster_a": "x",
            "cluster_b": "y", "pair_kind": "cross_cluster", "judge_id": 2, "judge_cluster": "x",
            "principle_id": "harm", "p_a": p_a, "p_a_presented": p_a, "p_a_reversed": p_a, "order_swapped": False,
            "position_flip": False, "judge_model": "m", "constitution_version": "c@1", "seed": 7}


def test_frame_rejects_missing_and_extra_columns_and_bad_types():
    with pytest.raises(SchemaError, match="missing"):
        store.frame([{k: v for k, v in _pref(0, 0.5).items() if k != "p_a"}], PREFERENCE_SCHEMA, "prefs")
    with pytest.raises(SchemaError, match="unexpected"):
        store.frame([{**_pref(0, 0.5), "junk": 1}], PREFERENCE_SCHEMA, "prefs")
    with pytest.raises(SchemaError):
        store.frame([{**_pref(0, 0.5), "p_a": "high"}], PREFERENCE_SCHEMA, "prefs")


def test_validate_rejects_out_of_range_and_duplicate_ids():
    with pytest.raises(SchemaError, match="outside"):
        validate_preferences(store.frame([_pref(0, 1.5)], PREFERENCE_SCHEMA, "p"))
    with pytest.raises(SchemaError, match="duplicate"):
        validate_preferences(store.frame([_pref(0, 0.2), _pref(0, 0.3)], PREFERENCE_SCHEMA, "p"))


def test_trl_export_orders_chosen_by_label_and_loads_with_datasets(tmp_path):
    from datasets import load_dataset

    prefs = store.frame([_pref(0, 0.8), _pref(1, 0.3)], PREFERENCE_SCHEMA, "p")
    trl = store.to_trl(prefs)
    assert trl["chosen"].to_list() == ["a0", "b1"] and trl["rejected"].to_list() == ["b0", "a1"]
    assert trl["score_chosen"].to_list() == pytest.approx([0.8, 0.7])
    path = tmp_path / "preferences_trl.parquet"
    store.write_parquet(trl, path)
    ds = load_dataset("parquet", data_files=str(path), split="train")
    assert ds.column_names[:5] == ["prompt", "chosen", "rejected", "score_chosen", "score_rejected"]
    assert ds[0]["chosen"] == "a0"


def test_trl_exports_leave_ties_out_and_the_chat_form_is_trls_conversational_format(tmp_path):
    from datasets import load_dataset

    prefs = store.frame([_pref(0, 0.8), _pref(1, 0.5), _pref(2, 0.3)], PREFERENCE_SCHEMA, "p")
    empty = pl.DataFrame()
    export = store.write_feedback(tmp_path, empty, empty, prefs)
    assert export == {"files": ["preferences_trl.parquet", "preferences_trl_chat.parquet"], "pairs": 2, "ties_left_out": 1}
    plain = pl.read_parquet(tmp_path / "preferences_trl.parquet")
    assert plain["pref_id"].to_list() == ["p0", "p2"] and plain["chosen"].to_list() == ["a0", "b2"]
    assert len(pl.read_parquet(tmp_path / "preferences.parquet")) == 3  # the tie stays in the full table
    ds = load_dataset("parquet", data_files=str(tmp_path / "preferences_trl_chat.parquet"), split="train",
                      cache_dir=str(tmp_path / "hf"))
    assert ds.column_names == ["prompt", "chosen", "rejected", "score_chosen", "score_rejected", "pref_id"]
    row = ds[1]
    # TRL's is_conversational: prompt/chosen/rejected are lists of {"role", "content"} messages
    assert row["prompt"] == [{"role": "user", "content": "P"}]
    assert row["chosen"] == [{"role": "assistant", "content": "b2"}] and row["rejected"] == [{"role": "assistant", "content": "a2"}]
    assert row["score_chosen"] == pytest.approx(0.7) and row["pref_id"] == "p2"


def test_a_write_that_fails_without_naming_a_file_names_it(tmp_path, monkeypatch):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as err:
        store.write_json({"a": 1}, tmp_path / "summary.json")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "summary.json")
    assert list(tmp_path.iterdir()) == []  # no temp file left behind


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "x.parquet"
    store.write_parquet(pl.DataFrame({"a": [1]}), path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.write_parquet(pl.DataFrame({"a": [2]}), path)
    assert pl.read_parquet(path)["a"].to_list() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["x.parquet"]  # no temp file left


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_get_the_mode_the_umask_gives_like_the_log(tmp_path, mask, mode):
    """mkstemp's temp files are 0600 whatever the umask; renamed into place they must read like cli.log."""
    old = os.umask(mask)
    try:
        assert store._umask() == mask
        store.write_parquet(pl.DataFrame({"x": [1]}), tmp_path / "m.parquet")
        store.write_json({"a": 1}, tmp_path / "summary.json")
        store.write_json({"a": 2}, tmp_path / "summary.json")  # replacing a file: the new one gets the mode too
        (tmp_path / "cli.log").write_text("log\n")
    finally:
        os.umask(old)
    for name in ("m.parquet", "summary.json", "cli.log"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


@pytest.mark.parametrize(("record", "schema"), [(Stance, store.STANCE_SCHEMA), (Message, store.TRANSCRIPT_SCHEMA),
                                                (Preference, PREFERENCE_SCHEMA)])
def test_each_record_has_its_schemas_columns_in_order(record, schema):
    assert [f.name for f in dataclasses.fields(record)] == list(schema)


def test_a_preference_outside_0_1_is_refused_where_it_is_built():
    with pytest.raises(SchemaError, match="outside"):
        Preference(**_pref(0, 1.5))
    assert dataclasses.asdict(Preference(**_pref(0, 0.25))) == _pref(0, 0.25)


def test_frames_built_from_records_equal_those_built_from_their_dicts(tmp_path):
    from scenarios.constitution import load_constitution
    from scenarios.dilemma import load_dilemmas
    from sim.run.lifecycle import make_backend
    from sim.society.model import Society
    from tests.helpers import tiny_config

    cfg = tiny_config(steps=2)
    soc = Society(cfg, load_dilemmas("default"), load_constitution(cfg.constitution.name), make_backend(cfg.llm), run_id="t")
    soc.step()
    soc.step()
    assert soc.judge_backend.seen_generate == [] == soc.judge_backend.seen_score  # a run's backend keeps no requests
    tables = (soc.stances, soc.transcripts, soc.preferences)
    by_column = store.record_tables(*tables)
    by_row = store.feedback_tables(*([dataclasses.asdict(r) for r in t] for t in tables))
    for a, b, name in zip(by_column, by_row, ("s", "t", "p"), strict=True):
        assert a.equals(b, null_equal=True) and a.schema == b.schema and len(a) > 0
        store.write_parquet(a, tmp_path / f"{name}1.parquet")
        store.write_parquet(b, tmp_path / f"{name}2.parquet")
        assert (tmp_path / f"{name}1.parquet").read_bytes() == (tmp_path / f"{name}2.parquet").read_bytes()
    with pytest.raises(SchemaError, match="not the schema's columns"):
        store.record_frame(soc.stances, TRANSCRIPT_SCHEMA, "transcripts")
