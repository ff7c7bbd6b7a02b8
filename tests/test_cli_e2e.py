"""End-to-end runs of the ``agora`` CLI on the real embedded model."""

import json
import socket
from pathlib import Path

import polars as pl
import pytest

from sim import store
from sim.run import OUTPUT_FILES
from tests.helpers import agora


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    dirs = {}
    for label, seed in (("a", 0), ("b", 0), ("c", 1)):
        out = base / label
        res = agora("experiment=tiny", f"seed={seed}", "sim.progress=false", f"hydra.run.dir={out}")
        assert res.returncode == 0, res.stderr[-2000:]
        dirs[label] = (out, res)
    return dirs


def test_tiny_run_writes_every_output(tiny_runs):
    out, res = tiny_runs["a"]
    for name in OUTPUT_FILES:
        assert (out / name).stat().st_size > 0, name
    assert (out / "stance_shares.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    prefs = pl.read_parquet(out / "preferences.parquet")
    assert dict(prefs.schema) == store.PREFERENCE_SCHEMA
    store.validate_preferences(prefs)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["agents"] == 4 and summary["counts"]["preferences"] == len(prefs) == 6
    assert summary["backend"]["name"].startswith("SmolLM2") and summary["backend"]["generated_tokens"] > 0
    assert summary["judge"]["position_flip_rate"] is None  # the default likelihood judge shows no answer first
    assert prefs["p_a"].is_between(0, 1).all() and prefs["p_a_reversed"].is_null().all()
    q = summary["label_quality"]
    assert q["stance"]["reader"] == "likelihood" and q["stance"]["items"] == 24 and q["judge"]["items"] == 40
    assert "label quality: stances" in res.stdout
    assert "finished" in res.stdout and "preferences/s" in res.stdout


def test_trl_export_loads_with_datasets(tiny_runs):
    from datasets import load_dataset

    out, _ = tiny_runs["a"]
    ds = load_dataset("parquet", data_files=str(out / "preferences_trl.parquet"), split="train")
    assert len(ds) == 6 and {"prompt", "chosen", "rejected", "score_chosen", "score_rejected"} <= set(ds.column_names)
    assert all(c >= r for c, r in zip(ds["score_chosen"], ds["score_rejected"], strict=True))


def test_same_seed_is_byte_identical_and_other_seed_differs(tiny_runs):
    a, b, c = (tiny_runs[k][0] for k in "abc")
    for name in ("preferences.parquet", "stances.parquet", "transcripts.parquet"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "preferences.parquet").read_bytes() != (c / "preferences.parquet").read_bytes()


def test_help_lists_config_groups():
    res = agora("--help", timeout=120)
    assert res.returncode == 0
    for group in ("llm: embedded, openai_compatible, scripted", "network: complete, scale_free, small_world",
                  "constitution: harmlessness, multiplex", "population", "scenario"):
        assert group in res.stdout


def test_unknown_key_fails_with_hydras_message(tmp_path):
    res = agora("population.sizee=3", f"hydra.run.dir={tmp_path}", timeout=120)
    assert res.returncode != 0 and "Key 'sizee' not in 'PopulationConfig'" in res.stderr


def test_bad_value_fails_in_one_line(tmp_path):
    res = agora("llm=scripted", "network.kind=ring", f"hydra.run.dir={tmp_path}", timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["agora: error: bad config: network.kind must be one of "
                                               "('small_world', 'scale_free', 'complete'), got 'ring'"]


def test_unreachable_model_server_fails_in_one_line(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    res = agora("llm=openai_compatible", f"llm.base_url=http://127.0.0.1:{port}/v1", "llm.max_retries=0",
                "llm.timeout_s=5", "experiment=tiny", "sim.progress=false", f"hydra.run.dir={tmp_path}", timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"agora: error: model server http://127.0.0.1:{port}/v1 failed")
    assert not (Path(tmp_path) / "summary.json").exists()
