"""End-to-end runs of the commands (``agora``, ``agora-eval``, ``agora-report``) as child processes, on the
real embedded model unless a test says otherwise: a tiny society, every experiment preset, sweeps, evaluation."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sim.experiments.society.run import OUTPUT_FILES
from sim.run import store
from tests.helpers import AGORA_EVAL, AGORA_REPORT, ROOT, agora


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    dirs = {}
    # "a" as `agora` runs by default, progress bar and all; "b" without it (the bar changes no byte)
    for label, seed, bar in (("a", 0, ()), ("b", 0, ("sim.progress=false",)), ("c", 1, ("sim.progress=false",))):
        out = base / label
        res = agora("experiment=tiny", f"seed={seed}", *bar, f"hydra.run.dir={out}")
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


def test_a_run_prints_no_library_warning(tiny_runs):
    """The screen is agora's own: a library warning (the engine's deprecated transformers API once printed
    a FutureWarning per forward; a leaked semaphore, one at exit) or a library's load bar is a fault."""
    _, res = tiny_runs["a"]
    noise = [ln for ln in (res.stdout + res.stderr).splitlines() if "Warning" in ln or "warn(" in ln
             or "Loading weights" in ln]
    assert noise == []


def test_trl_export_loads_with_datasets(tiny_runs):
    from datasets import load_dataset

    out, _ = tiny_runs["a"]
    export = json.loads((out / "summary.json").read_text())["trl_export"]
    assert export["pairs"] + export["ties_left_out"] == 6  # ties (p_a exactly 0.5) have no chosen answer
    ds = load_dataset("parquet", data_files=str(out / "preferences_trl.parquet"), split="train")
    assert len(ds) == export["pairs"] and {"prompt", "chosen", "rejected", "score_chosen", "score_rejected"} <= set(ds.column_names)
    assert all(c > r for c, r in zip(ds["score_chosen"], ds["score_rejected"], strict=True))
    chat = load_dataset("parquet", data_files=str(out / "preferences_trl_chat.parquet"), split="train")
    assert chat["pref_id"] == ds["pref_id"]
    assert all(p == [{"role": "user", "content": q}] for p, q in zip(chat["prompt"], ds["prompt"], strict=True))


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


# -- generations: society, reward model, DPO, twice --------------------------------------------------------
@pytest.mark.slow  # ~3.5 min on 2 cores; `make test-slow` (and CI) run it
def test_evolve_runs_two_tiny_generations_end_to_end(tmp_path):
    res = agora("experiment=tiny_evolve", "sim.progress=false", "constitution.collective.enabled=true",
                "constitution.collective.proposers=2", f"hydra.run.dir={tmp_path}", timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    m = pl.read_parquet(tmp_path / "metrics_generations.parquet")
    assert m["generation"].to_list() == [0, 1]
    assert m["policy_model"].to_list()[1] == "policy-g1"
    assert m.columns.index("overton_coverage") == m.columns.index("pds_entropy") + 1
    assert m["overton_coverage"].is_between(0, 1).all() and (tmp_path / "gen_overton_coverage.png").exists()
    for col in ("pds_entropy", "js_policy_population", "value_drift_js", "rm_eval_accuracy", "consensus_initial",
                "consensus_post_debate", "judge_alpha_orders", "dpo_eval_margin_after"):
        assert col in m.columns
    assert (tmp_path / "generation_0" / "policy" / "model.safetensors").exists()
    assert (tmp_path / "gen_pds_entropy.png").exists() and (tmp_path / "gen_agreement_by_cluster.png").exists()
    stances = pl.read_parquet(tmp_path / "stances.parquet")
    models_g1 = set(stances.filter(pl.col("generation") == 1)["model"])
    assert models_g1 == {"policy-g1", "SmolLM2-135M-Instruct-Q4_1"}  # policy group and control group
    assert "gen 1" in res.stdout
    per = pl.read_parquet(tmp_path / "pluralism_per_dilemma.parquet")
    assert set(per["generation"]) == {0, 1} and per["js_policy_population"].is_between(0, 1).all()
    # the collective constitution: the base version plus one voted version per generation, each judged under
    versions = [json.loads(line) for line in (tmp_path / "constitutions.jsonl").read_text().splitlines()]
    assert [v["tag"] for v in versions] == ["harmlessness@1.0", "harmlessness+collective@g0", "harmlessness+collective@g1"]
    assert all(len(v["judge"]) == 4 for v in versions[1:])
    prefs = pl.read_parquet(tmp_path / "preferences.parquet")
    assert prefs.group_by("generation").agg(pl.col("constitution_version").unique())["constitution_version"].to_list() \
        in ([["harmlessness+collective@g0"], ["harmlessness+collective@g1"]],
            [["harmlessness+collective@g1"], ["harmlessness+collective@g0"]])
    votes = pl.read_parquet(tmp_path / "constitution_votes.parquet")
    assert votes.filter(pl.col("elected")).group_by("generation").len()["len"].to_list() == [4, 4]
    assert votes["approval"].is_between(0, 1).all() and votes["approval"].max() > 0  # relative rule: someone approves
    report = (tmp_path / "report.md").read_text()
    assert "Collective constitution" in report and (tmp_path / "report.html").exists()


# -- sweeps and agora-report ------------------------------------------------------------------------------------
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_multirun_sweep_then_agora_report(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    res = agora("--multirun", "experiment=pluralism", "llm=scripted", "study.pluralism.dilemmas=3", "population.size=4,8",
                "seed=0,1", f"hydra/launcher={launcher}", "sim.progress=false", f"hydra.sweep.dir={sweep}", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(runs) == 4 and all((r / "report.md").exists() and (r / "summary.json").exists() for r in runs)
    seeds = sorted(json.loads((r / "summary.json").read_text())["config"]["seed"] for r in runs)
    assert seeds == [0, 0, 1, 1]
    rep = agora(str(sweep), code=AGORA_REPORT)
    assert rep.returncode == 0, rep.stderr
    df = pl.read_parquet(sweep / "comparison.parquet")
    assert len(df) == 4 and set(df["label"]) == {f"population.size={n} seed={s}" for n in (4, 8) for s in (0, 1)}
    text = (sweep / "report.md").read_text()
    assert "Across seeds" in text and "entropy[panel]" in text and (sweep / "report.html").exists()
    assert (sweep / "compare_entropy_panel.png").exists()


def test_agora_report_compares_two_runs_and_fails_cleanly(tmp_path):
    for seed in (0, 1):
        res = agora("experiment=tiny", "llm=scripted", f"seed={seed}", "sim.progress=false", f"hydra.run.dir={tmp_path / str(seed)}")
        assert res.returncode == 0, res.stderr[-2000:]
        assert "## Sample transcript" in (tmp_path / str(seed) / "report.md").read_text()
    out = tmp_path / "cmp"
    rep = agora(str(tmp_path / "0"), str(tmp_path / "1"), "-o", str(out), code=AGORA_REPORT)
    assert rep.returncode == 0, rep.stderr
    df = pl.read_parquet(out / "comparison.parquet")
    assert df["label"].to_list() == ["seed=0", "seed=1"] and df["preferences_per_s"].is_not_null().all()
    assert "| seed=0 | society |" in (out / "report.md").read_text()
    # without -o: one run folder gets its comparison in RUN/agora_report/ (the run's own report stays), as --help says
    own = (tmp_path / "0" / "report.md").read_bytes()
    rep = agora(str(tmp_path / "0"), code=AGORA_REPORT, cwd=tmp_path)
    assert rep.returncode == 0 and f"-> {tmp_path / '0' / 'agora_report'}" in rep.stdout, rep.stdout + rep.stderr
    assert (tmp_path / "0" / "agora_report" / "report.md").is_file() and not (tmp_path / "agora_report").exists()
    assert (tmp_path / "0" / "report.md").read_bytes() == own
    bad = agora(str(tmp_path / "nowhere"), code=AGORA_REPORT)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "no such directory" in bad.stderr


# -- every preset end to end on the real embedded model, at toy size ---------------------------------------
def test_pluralism_preset_on_the_embedded_model(tmp_path):
    res = agora("experiment=pluralism", "study.pluralism.dilemmas=2", "study.pluralism.panel_size=2", "population.size=4",
                "population.clusters=[protestant_europe,confucian]", "study.pluralism.answer_tokens=16",
                "study.pluralism.synthesis_tokens=16", "sim.progress=false", f"hydra.run.dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["backend"]["name"].startswith("SmolLM2") and s["dilemmas"] == 2
    answers = pl.read_parquet(tmp_path / "pluralism_answers.parquet")
    assert len(answers) == 2 * (3 + 2) and (answers["text"].str.len_chars() > 0).all()
    dist = answers.select("p[protestant_europe]", "p[confucian]").to_numpy()
    assert (np.abs(dist.sum(axis=1) - 1) < 1e-6).all()
    # each row's entropy is its distribution's (normalised over 2 clusters); each condition reports their mean
    h = [0.0 if min(d) == 0 else -float((d * np.log2(d)).sum()) for d in dist]
    assert answers["entropy"].to_list() == pytest.approx(h, abs=1e-6)
    for c in ("single", "contextual", "panel"):
        e = s["conditions"][c]["entropy"]
        assert e["value"] == pytest.approx(answers.filter(pl.col("condition") == c)["entropy"].mean(), abs=1e-6)
        assert 0 <= e["low"] <= e["value"] <= e["high"] <= 1
    assert "entropy[panel]" in res.stdout and (tmp_path / "report.html").exists()


def test_overton_preset_on_the_embedded_model(tmp_path):
    res = agora("experiment=overton", "study.overton.dilemmas=2", "study.overton.panel_size=2", "study.overton.voices=1",
                "population.size=4", "population.clusters=[protestant_europe,confucian]", "study.overton.answer_tokens=16",
                "study.overton.synthesis_tokens=16", "sim.progress=false", f"hydra.run.dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["backend"]["name"].startswith("SmolLM2") and s["dilemmas"] == 2
    assert s["positions_per_dilemma"] == {"mean": 2.0, "min": 2, "max": 2}  # one per cluster, not merged
    answers = pl.read_parquet(tmp_path / "overton_answers.parquet")
    assert len(answers) == 2 * (3 + 2) and (answers["text"].str.len_chars() > 0).all()
    assert (answers["coverage"] == answers["covered"] / answers["positions"]).all() and (answers["positions"] == 2).all()
    pairs = pl.read_parquet(tmp_path / "overton_coverage.parquet")
    assert len(pairs) == 2 * 5 * 2 and pairs["p_yes"].is_between(0, 1).all()
    assert (pairs["covered"] == (pairs["p_yes"] > 0.5)).all()
    for c in ("single", "contextual", "panel"):
        v = s["conditions"][c]["coverage"]
        assert v["value"] == pytest.approx(answers.filter(pl.col("condition") == c)["coverage"].mean(), abs=1e-6)
        assert 0 <= v["low"] <= v["value"] <= v["high"] <= 1
    assert "coverage[panel]" in res.stdout and (tmp_path / "report.html").exists()


def test_evolving_norms_preset_on_the_embedded_model_with_a_tuned_policy(tmp_path):
    res = agora("experiment=evolving_norms", "study.norms.generations=4", "study.norms.dilemmas=1", "population.size=4",
                "study.norms.answer_tokens=12", "study.norms.train_policy=true", "alignment.dpo.max_length=192",
                "sim.progress=false", f"hydra.run.dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    assert [g["norm"] for g in s["generations"]] == ["loyalty_first"] * 3 + ["fairness_first"]
    assert all(g["replaced"] == 1 for g in s["generations"])
    # each generation's fit figures are the means of its stored answers'
    answers = pl.read_parquet(tmp_path / "norms_answers.parquet")
    assert [g["mean_fit"] for g in s["generations"]] == pytest.approx(
        [answers.filter(pl.col("generation") == g["generation"])["fit"].mean() for g in s["generations"]])
    assert s["shifts"][0]["generation"] == 3 and "population_lag[fairness_first]" in s["headline"]
    assert "policy_lag[fairness_first]" in s["headline"]
    tuned = [g for g in s["generations"] if "dpo_train_margin_after" in g]
    assert tuned and (tmp_path / f"generation_{tuned[0]['generation']}" / "policy" / "model.safetensors").exists()
    policy = pl.read_parquet(tmp_path / "norms_policy_answers.parquet")
    assert policy["generation"].to_list() == [0, 1, 2, 3]
    assert [g["policy_fit"] for g in s["generations"]] == pytest.approx(policy["fit"].to_list())
    assert (tmp_path / "norms_tracking.png").exists() and "Tracking each shift" in (tmp_path / "report.md").read_text()


def test_constitution_ablation_preset_on_the_embedded_model(tmp_path):
    res = agora("experiment=constitution_ablation", "study.ablation.constitutions=[none,harmlessness,single_care]",
                "population.size=4", "sim.steps=2", "sim.group_size=2", "sim.debate_rounds=0", "sim.tokens.stance=12",
                "sim.tokens.critique=12", "sim.tokens.revision=12", "alignment.reward.epochs=1", "sim.progress=false",
                f"hydra.run.dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    prefs = pl.read_parquet(tmp_path / "preferences.parquet")
    table = pl.read_parquet(tmp_path / "ablation_pairs.parquet")
    assert s["pairs"] == len(prefs) == len(table) > 0
    for arm in ("none", "harmlessness", "single_care"):
        assert table[f"p_a[{arm}]"].is_between(0, 1).all()
    assert set(s["effects"]) == {"none", "harmlessness", "single_care"}
    assert s["effects"]["none"]["harmlessness"]["value"] == 0.0  # the reference against itself
    assert set(s["reward"]) == {"none", "harmlessness", "single_care"} and (tmp_path / "reward_none").is_dir()
    assert "shift[single_care→single_care]" in s["headline"] and (tmp_path / "ablation_shift.png").exists()


def test_human_distributions_preset_on_the_embedded_model(tmp_path):
    res = agora("experiment=human_distributions", "study.human.countries=[US,Japan,Turkey]", "calibration.enabled=false",
                "sim.progress=false", f"hydra.run.dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-3000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    answers = pl.read_parquet(tmp_path / "human_answers.parquet")
    assert len(answers) == (3 + 1) * (32 + 18)  # three countries and the no-persona baseline
    mfq = answers.filter(pl.col("instrument") == "mfq")
    dist = mfq.select(f"p{k}" for k in range(6)).to_numpy()
    assert np.allclose(dist.sum(axis=1), 1) and np.allclose(dist @ np.arange(6), mfq["value"].to_numpy())
    mm = answers.filter(pl.col("instrument") == "moral_machine")
    assert np.allclose(2 * mm["p_preferred"].to_numpy() - 1, mm["value"].to_numpy())
    profiles = pl.read_parquet(tmp_path / "human_profiles.parquet")
    for inst in ("mfq", "moral_machine"):
        p = profiles.filter(pl.col("instrument") == inst)
        rms = ((p["model"] - p["human"]) ** 2).to_numpy().reshape(3, -1).mean(axis=1) ** 0.5
        assert s["results"][inst]["model"]["distance"]["value"] == pytest.approx(rms.mean(), abs=1e-5)
        assert s["results"][inst]["no_persona"]["correlation"]["value"] is None
    assert "mfq.distance[model]" in res.stdout and (tmp_path / "human_agreement.png").exists()


# -- agora-eval ----------------------------------------------------------------------------------------------
def test_agora_eval_command_runs_every_suite(shared_data, tmp_path):
    out = tmp_path / "ev"
    res = agora(f"eval.data_dir={shared_data}", "eval.suites=[hhh,moralchoice,steerability]", "eval.hhh_items=3",
                "eval.scenarios=2", "population.size=4", f"hydra.run.dir={out}", code=AGORA_EVAL)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "eval.json").read_text())
    assert set(summary) >= {"hhh", "moralchoice", "steerability"}
    assert summary["moralchoice"]["scenarios"] == {"low": 2, "high": 2}
    # the reported entropy is the one the stored item rows give: per scenario, the bits of the society's split
    high = pl.read_parquet(out / "eval_items.parquet").filter(pl.col("suite") == "moralchoice_high")
    q = high.group_by("item_id").agg((pl.col("p_action1") > 0.5).mean())["p_action1"].to_numpy()
    bits = [0.0 if x in (0, 1) else -(x * np.log2(x) + (1 - x) * np.log2(1 - x)) for x in q]
    high_entropy = summary["moralchoice"]["high_entropy"]
    assert high_entropy["mean_bits"]["value"] == pytest.approx(np.mean(bits), abs=1e-6)
    assert high_entropy["unanimous_share"] == pytest.approx(np.mean([x in (0, 1) for x in q]))
    assert "How good is the feedback?" in (out / "eval.md").read_text()
    items = pl.read_parquet(out / "eval_items.parquet")
    assert set(items["suite"].unique()) == {"hhh", "moralchoice_low", "moralchoice_low_judge", "moralchoice_high",
                                            "moralchoice_high_unconditioned"}
    assert np.isfinite(items.filter(pl.col("suite") != "hhh")["p_action1"].to_numpy()).all()
    bad = agora("eval.suites=[vibes]", f"hydra.run.dir={tmp_path / 'x'}", code=AGORA_EVAL, timeout=120)
    assert bad.returncode != 0 and "unknown eval suite" in bad.stderr and "Traceback" not in bad.stderr


def test_agora_eval_with_its_defaults_works_on_a_clone_with_no_shared_data(tmp_path):
    """A user's ``git clone``: no ``../shared`` beside it. The default suites read only what agora ships; the hhh
    suite, whose file cannot ship, says in one line what to pass."""
    clone = tmp_path / "clone"
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    env = {k: v for k, v in os.environ.items() if k != "AGORA_SHARED_DATA"} | {"PYTHONPATH": str(clone)}
    cmd = [sys.executable, "-c", AGORA_EVAL]
    res = subprocess.run([*cmd, "eval.scenarios=2", "population.size=4", "hydra.run.dir=ev"], cwd=clone, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((clone / "ev" / "eval.json").read_text())
    assert summary["suites"] == ["moralchoice", "steerability"] and "hhh" not in summary
    assert summary["moralchoice"]["scenarios"] == {"low": 2, "high": 2} and summary["steerability"]
    res = subprocess.run([*cmd, "eval.suites=[hhh]", "eval.hhh_items=120", "hydra.run.dir=hhh"], cwd=clone, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and not (clone / "hhh").exists(), res.stderr[-2000:]
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("agora-eval: error: ") and "HHH file not found" in line and "eval.hhh_path=" in line
