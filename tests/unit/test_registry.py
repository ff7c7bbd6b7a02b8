"""The experiment registry, its settings nodes (the Hydra ``study`` option), the run lifecycle (``with Run(...)``,
``run.stage``), typed results and the run-id rules (``sim/run/ids.py``)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import warnings

import pytest

from agents.llm.scripted import ScriptedBackend
from alignment.metrics import NA, Interval
from scenarios.errors import InputError
from sim.experiments.registry import experiments, get, study_class
from sim.results import Codec, PairedDifference, Summary, from_json, pick, to_json
from sim.run.checkpoint import CHECKPOINT, Checkpoint, read_checkpoint
from sim.run.ids import ADDED_LATER, PUBLISHED_STUDIES, id_settings, run_id_for
from sim.run.lifecycle import Run
from sim.run.lock import check_unlocked
from sim.study_config import StudyConfig
from tests.helpers import ROOT, agora, compose


# -- the registry and its settings nodes ------------------------------------------------------------------------
def test_every_registered_experiment_has_its_folder_its_preset_and_its_node():
    found = experiments()
    assert "overton" in found
    for name, exp in found.items():
        if exp.of is not None:  # the generations loop: the society's folder and node
            assert exp.run.__module__.startswith(f"sim.experiments.{exp.of}.") and exp.study is found[exp.of].study, name
            continue
        assert exp.run.__module__.startswith(f"sim.experiments.{name}."), name  # its folder
        if name == StudyConfig.kind:  # the default: conf/config.yaml selects it
            assert "- study: society" in (ROOT / "conf" / "config.yaml").read_text()
            cfg = compose()
            assert type(cfg.study) is exp.study and type(compose(f"study={name}").study) is exp.study
            continue
        assert (ROOT / "conf" / "experiment" / f"{name}.yaml").is_file(), name  # its one conf file
        cfg = compose(f"experiment={name}")
        assert type(cfg.study) is exp.study is study_class(name) and cfg.study.kind == name
        assert issubclass(exp.study, StudyConfig) and exp.study.published_id == exp.published_id
        if exp.key is not None:
            assert isinstance(getattr(cfg.study, exp.key), exp.config) and cfg.study.settings_key == exp.key
        assert [f.name for f in dataclasses.fields(cfg.study)] == ["kind", *([exp.key] if exp.key else [])]
        assert type(compose(f"study={name}").study) is exp.study  # the option alone, without the preset's values


def test_only_the_selected_experiments_settings_exist():
    with pytest.raises(Exception, match="Could not override 'study.overton.voices'"):
        compose("study.overton.voices=3")  # the society run has no overton settings
    with pytest.raises(Exception, match="Could not override 'study.pluralism.dilemmas'"):
        compose("experiment=overton", "study.pluralism.dilemmas=3")  # nor another experiment's run
    assert compose("experiment=overton", "study.overton.voices=1").study.overton.voices == 1


def test_a_kind_that_does_not_match_its_settings_node_is_refused():
    with pytest.raises(Exception, match="study.kind=society does not match the settings of study=overton"):
        compose("experiment=overton", "study.kind=society")
    with pytest.raises(Exception, match="study.kind=overton does not match the settings of study=society"):
        compose("study.kind=overton")  # the default node is the society run's
    with pytest.raises(ValueError, match="study.kind=nope"):
        get("society").study(kind="nope")


def test_a_name_is_registered_once():
    from sim.experiments.registry import experiment
    from sim.results import Summary

    def run_other(run):  # noqa: ANN001, ANN202
        return Summary()

    for name in ("overton", "society", "generations"):
        with pytest.raises(ValueError, match="registered twice"):
            experiment(name, summary=Summary, report=lambda out, s: [])(run_other)
    assert get("overton").run.__name__ == "run_overton" and get("society").run.__name__ == "run_society"


@pytest.mark.parametrize("key", ["kind", "published_id", "Bad-Key"])
def test_a_settings_key_the_study_node_already_has_is_refused(key):
    """``key="kind"`` made a node with a duplicated field; ``key="published_id"`` shadowed what the run-id shim reads."""
    from dataclasses import dataclass

    from sim.experiments.registry import experiment
    from sim.results import Summary

    @dataclass(frozen=True)
    class Settings:
        n: int = 1

    with pytest.raises(ValueError, match="must be a lower-case name the study node does not already have"):
        experiment("keytest", key=key, config=Settings, summary=Summary, report=lambda out, s: [])
    assert get("keytest") is None


def test_a_settings_key_is_one_experiments():
    from dataclasses import dataclass

    from sim.experiments.registry import experiment
    from sim.results import Summary

    @dataclass(frozen=True)
    class Settings:
        n: int = 1

    with pytest.raises(ValueError, match="key='overton' is experiment overton's settings key"):
        experiment("keytest", key="overton", config=Settings, summary=Summary, report=lambda out, s: [])(lambda run: None)
    assert get("keytest") is None


def test_study_nodes_pickle_by_reference():
    """A sweep launcher (Ray, Submitit) pickles the composed config: the made node class must be importable."""
    import pickle

    cfg = compose("experiment=overton")
    assert pickle.loads(pickle.dumps(cfg)) == cfg


def test_importing_the_cli_which_registers_every_experiment_loads_no_heavy_library():
    """The CLI imports every experiment folder to register its settings node: each folder keeps Mesa, matplotlib,
    torch and scipy out of its module-level imports, so `agora --help` and a refused config stay quick."""
    probe = ("import sys, sim.cli; from sim.experiments.registry import experiments; assert experiments(); "
             "print(sorted(m for m in ('torch', 'transformers', 'mesa', 'matplotlib', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]"]


# -- run ids -----------------------------------------------------------------------------------------------------
def test_published_ids_hash_the_three_studies_at_their_published_defaults():
    overton = id_settings(compose("experiment=overton"))["study"]
    assert set(overton) == {"kind", "overton", *PUBLISHED_STUDIES}
    assert {k: overton[k] for k in PUBLISHED_STUDIES} == PUBLISHED_STUDIES
    society = id_settings(compose())["study"]  # the legacy node holds the three: hashed as they are
    assert set(society) == {"kind", *PUBLISHED_STUDIES} and {k: society[k] for k in PUBLISHED_STUDIES} == PUBLISHED_STUDIES
    assert "pluralism" in id_settings(compose("experiment=pluralism", "study.pluralism.dilemmas=5"))["study"]


def test_a_setting_added_later_enters_the_id_only_when_set_away_from_its_default(monkeypatch):
    """As if ``sim.judge_persona`` (default true) had been added after the ids were published: at its default the
    id is the one the run had without the setting; set to false, it enters the id."""
    cfg, off = compose(), compose("sim.judge_persona=false")
    without = id_settings(cfg)
    without["sim"].pop("judge_persona")
    monkeypatch.setitem(ADDED_LATER, "sim.judge_persona", True)
    assert id_settings(cfg) == without
    assert id_settings(off)["sim"]["judge_persona"] is False and run_id_for(off) != run_id_for(cfg)


def test_every_setting_listed_as_added_later_exists_with_that_default():
    from sim.config import AgoraConfig

    defaults = dataclasses.asdict(AgoraConfig())
    for path, default in ADDED_LATER.items():
        node = defaults
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f"ADDED_LATER names {path}, which the config lacks"
            node = node[part]
        assert node == default, f"ADDED_LATER gives {path} the default {default!r}; the config's is {node!r}"


# -- typed results --------------------------------------------------------------------------------------------
def test_interval_carries_the_na_reason_and_keeps_the_summary_json_shape():
    assert Interval.of((0.5, NA("one value: no interval"), NA("one value: no interval"))).to_json() == {
        "value": 0.5, "low": None, "high": None, "na": "one value: no interval"}
    assert Interval.of((0.1234567, 0.0, 1.0), n=3).to_json() == {"value": 0.123457, "low": 0.0, "high": 1.0, "n": 3}
    assert Interval.of((0.1234567, 0.0, 1.0), digits=None).value == 0.1234567
    assert Interval.na("no values").to_json() == {"value": None, "low": None, "high": None, "na": "no values"}
    assert Interval.from_json(0.25) == Interval(value=0.25)  # a society headline figure is a bare number
    diff = PairedDifference.of_differences([0.2, 0.4, 0.1], seed=0, n_resamples=200)
    assert set(diff.to_json()) == {"value", "low", "high", "n", "permutation_p"}
    assert pick(diff) == pick(diff.to_json()) == Interval(value=diff.value, low=diff.low, high=diff.high)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Row:
    name: str
    share: Interval
    tags: list[str]
    note: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class RowSummary(Summary):
    rows: dict[str, Row]
    diff: PairedDifference


def test_records_round_trip_through_json():
    row = Row(name="a", share=Interval.of((0.5, 0.25, 0.75), n=4), tags=["x"])
    s = RowSummary(run_id="r", kind="k", rows={"a": row}, diff=PairedDifference.of_differences([1.0], seed=0),
                   headline={"a": pick(row.share), "plain": 3.0})
    data = json.loads(json.dumps(s.to_json()))
    assert RowSummary.from_json(data) == s
    assert Summary.from_json(data).headline == s.headline  # any run's summary, read by its common fields
    assert from_json(list[Row], to_json([row, row])) == [row, row]


# -- the run lifecycle -------------------------------------------------------------------------------------------
def _cfg():
    return compose("experiment=overton", "calibration.enabled=false")


async def _loop_id(run: Run, n: int) -> list[int]:
    for _ in range(n):
        run.progress.update()
    return [id(asyncio.get_running_loop())] * n


def test_stages_run_on_one_loop_replay_records_and_record_their_seconds(tmp_path):
    cfg, seen = _cfg(), []

    def rows() -> list[Row]:
        seen.append("rows")
        return [Row(name="a", share=Interval.of((0.5, 0.4, 0.6)), tags=["t"])]

    with Run(cfg, tmp_path, ScriptedBackend(), kind="overton") as run:
        first = run.stage("first", _loop_id(run, 3), total=3)
        second = run.stage("second", lambda: _loop_id(run, 2), total=2)  # a callable returning a coroutine
        got = run.stage("rows", rows, codec=Codec(list[Row]))
        assert first[0] == second[0]  # one event loop for the run
        assert got == [Row(name="a", share=Interval.of((0.5, 0.4, 0.6)), tags=["t"])]
        assert list(run.seconds) == ["first", "second", "rows"]
        run.ckpt.save()
    # the run stopped before its summary: its checkpoint is resumed, each stage replayed, not recomputed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a replayed coroutine is closed, not left "never awaited"
        with Run(dataclasses.replace(cfg, resume=str(tmp_path)), tmp_path, ScriptedBackend(), kind="overton") as run:
            assert run.stage("first", _loop_id(run, 3)) == first
            replayed = run.stage("rows", rows, codec=Codec(list[Row]))
    assert replayed == got and isinstance(replayed[0], Row) and isinstance(replayed[0].share, Interval)
    assert seen == ["rows"]


class Boom(Exception):
    pass


def test_leaving_a_run_on_an_error_saves_its_counters_and_releases_the_folder(tmp_path):
    backend = ScriptedBackend()
    with pytest.raises(Boom), Run(_cfg(), tmp_path, backend, kind="overton") as run:
        run.stage("first", lambda: 1)
        backend.stats.generate_calls += 5  # work after the last checkpoint
        raise Boom
    check_unlocked(tmp_path)  # the lock is released
    assert read_checkpoint(tmp_path)["backend_stats"]["generate_calls"] == 5


def test_a_run_refused_at_start_leaves_the_folder_unlocked(tmp_path):
    (tmp_path / CHECKPOINT).write_text("{}")
    with pytest.raises(InputError), Run(_cfg(), tmp_path, ScriptedBackend(), kind="overton"):
        pass
    check_unlocked(tmp_path)


# -- resume of a checkpoint written before each experiment had its own settings node ---------------------------
def test_a_checkpoint_whose_config_holds_every_studys_settings_resumes(tmp_path, monkeypatch):
    """Checkpoints written before this change stored every experiment's settings under ``study``: ``agora
    resume=DIR`` keeps the resumed kind's and drops the others, and the run id (checked on resume) is the same."""
    from sim.experiments import runner_for

    cfg, ref, out = _cfg(), tmp_path / "ref", tmp_path / "run"
    reference = runner_for(cfg)(cfg, ref, ScriptedBackend())
    real, calls = Checkpoint.save, [0]

    def stop(self, *args, **kwargs):  # noqa: ANN001, ANN202
        real(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == 2:
            raise Boom

    monkeypatch.setattr(Checkpoint, "save", stop)
    with pytest.raises(Boom):
        runner_for(cfg)(cfg, out, ScriptedBackend())
    monkeypatch.undo()
    state = read_checkpoint(out)
    legacy = dataclasses.asdict(StudyConfig())  # the old default node: kind=society, no settings of its own
    state["config"]["study"] = {**legacy, "kind": "overton", "overton": state["config"]["study"]["overton"]}
    from sim.run.checkpoint import _body
    from sim.run.rowlog import sha256_hex

    (out / CHECKPOINT).write_bytes(_body({**state, "digest": sha256_hex(_body(state))}))
    res = agora(f"resume={out}", "sim.progress=false")
    assert res.returncode == 0, res.stderr
    done = json.loads((out / "summary.json").read_text())
    assert done["run_id"] == reference["run_id"] and list(done["config"]["study"]) == ["kind", "overton"]
    assert {p.name: p.read_bytes() for p in out.glob("*.parquet")} == {p.name: p.read_bytes() for p in ref.glob("*.parquet")}
    assert not (out / CHECKPOINT).exists()


def test_an_experiments_name_arg_phrases_reach_every_page_and_a_second_meaning_is_refused():
    from sim.report.labels import add_labels, label

    assert get("evolving_norms").templates["population_lag"] == "population lag (generations) to {}"
    assert label("population_lag[fairness_first]") == "population lag (generations) to fairness_first"
    assert label("change[founders_alive]") == "change over the run in founders alive"
    with pytest.raises(ValueError, match="named twice"):
        add_labels({}, templates={"population_lag": "lag to {}"})
