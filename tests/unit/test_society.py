import asyncio
import dataclasses
import json
import re
import subprocess
import sys

import polars as pl
import pytest

from agents.llm.base import Coalescer, ScoreRequest
from agents.llm.scripted import ScriptedBackend
from agents.prompts import DEBATE_ROLE
from scenarios.constitution import load_constitution
from scenarios.dilemma import load_dilemmas
from sim.experiments import run_experiment as run
from sim.run import store
from sim.society import Society
from tests.helpers import ROOT, child_env, compose, tiny_config

ANSWER = re.compile(r"Answer \((A|B)\):\n<<<(.*?)>>>", re.S)


def content_judge(r: ScoreRequest) -> list[float]:
    """Prefers whichever presented answer contains GOOD; stance prompts get a fixed mild preference."""
    found = dict(ANSWER.findall(r.messages[-1].content))
    if not found:
        return [-0.5, -1.0]
    return [-0.1, -3.0] if "GOOD" in found["A"] else [-3.0, -0.1]


def reviser(req) -> str:
    return "A. GOOD revised answer" if "Your earlier answer" in req.messages[-1].content else "B. plain answer"


def make(cfg, backend):
    return Society(cfg, load_dilemmas("default"), load_constitution(cfg.constitution.name), backend, run_id="t")


def test_one_step_produces_every_phase_with_expected_counts():
    cfg = tiny_config()
    backend = ScriptedBackend(reply=reviser, scores=content_judge)
    soc = make(cfg, backend)
    soc.step()
    n = cfg.population.size
    phases = pl.DataFrame(soc.stances)["phase"].value_counts().sort("phase")
    assert dict(phases.iter_rows()) == {"initial": n, "post_debate": n, "revised": n}
    kinds = pl.DataFrame(soc.transcripts)["phase"].value_counts()
    assert dict(kinds.iter_rows()) == {"stance": n, "debate": n, "critique": n, "revision": n}
    prefs = store.frame([dataclasses.asdict(p) for p in soc.preferences], store.PREFERENCE_SCHEMA, "p")
    store.validate_preferences(prefs)
    assert len(prefs) == n + n // 2
    cross = prefs.filter(pl.col("pair_kind") == "cross_cluster")
    assert (cross["cluster_a"] != cross["cluster_b"]).all()
    assert not (prefs["judge_id"] == prefs["author_a"]).any() and not (prefs["judge_id"] == prefs["author_b"]).any()
    # debate went through autogen teams with each member's persona and the debate role
    debate_prompts = [r for r in backend.seen_generate if DEBATE_ROLE in r.messages[0].content]
    assert len(debate_prompts) == n
    assert soc.datacollector.get_model_vars_dataframe().shape[0] == 1


def test_judge_order_is_undone_so_content_not_position_decides():
    soc = make(tiny_config(judge_reader="label"), ScriptedBackend(reply=reviser, scores=content_judge))
    soc.step()
    rev = pl.DataFrame(soc.preferences).filter(pl.col("pair_kind") == "revision")
    assert rev["order_swapped"].any() and (~rev["order_swapped"]).any()  # both orders were used
    assert (rev["p_a"] > 0.9).all()  # response_a is the revised (GOOD) answer, whatever the order
    assert not rev["position_flip"].any()


def test_position_biased_judge_is_detected_and_neutralised():
    always_a = ScriptedBackend(reply=reviser, scores=lambda r: [-0.1, -2.5])
    soc = make(tiny_config(choice_reader="label", judge_reader="label"), always_a)
    soc.step()
    prefs = pl.DataFrame(soc.preferences)
    assert prefs["position_flip"].all()
    assert prefs["p_a"].to_list() == pytest.approx([0.5] * len(prefs))
    initial = pl.DataFrame(soc.stances).filter(pl.col("phase") == "initial")
    assert initial["p_a"].to_list() == pytest.approx([0.5] * len(initial))  # stance labels debiased too


def test_without_debiasing_position_bias_becomes_the_label():
    soc = make(tiny_config(debias_order=False, choice_reader="label", judge_reader="label"),
               ScriptedBackend(reply=reviser, scores=lambda r: [-0.1, -2.5]))
    soc.step()
    prefs = pl.DataFrame(soc.preferences)
    assert prefs["p_a_reversed"].is_null().all()
    swapped = prefs.filter(pl.col("order_swapped"))["p_a"]
    assert (swapped < 0.5).all()  # the judge picked the presented-first answer, which was B


def test_argmax_and_sample_choice_rules():
    fav_a = ScriptedBackend(scores=lambda r: [-0.2, -1.8])  # P(first label) ≈ 0.83 in every order
    soc = make(tiny_config(choice_rule="argmax", debias_order=False), fav_a)
    soc.step()
    assert {r.choice for r in soc.stances if r.phase == "initial"} == {"a"}
    soc2 = make(tiny_config(choice_rule="sample", debias_order=False), ScriptedBackend(scores=lambda r: [-0.69, -0.7]))
    soc2.step()
    assert {r.choice for r in soc2.stances} == {"a", "b"}


def test_unparseable_text_is_counted_not_guessed(tmp_path):
    cfg = tiny_config()
    summary = run(cfg, tmp_path, backend=ScriptedBackend(reply=lambda r: "Well, it depends on many things."))
    assert summary["counts"]["unparsed_stance_texts"] == cfg.population.size
    stances = pl.read_parquet(tmp_path / "stances.parquet").filter(pl.col("phase") == "initial")
    assert (stances["text_choice"] == "abstain").all() and (~stances["parsed_ok"]).all()
    assert stances["choice"].is_in(["a", "b"]).all()  # the scored labels still give a choice


def test_run_writes_all_outputs_and_is_deterministic(tmp_path):
    cfg = tiny_config()
    s1 = run(cfg, tmp_path / "1", backend=ScriptedBackend())
    run(cfg, tmp_path / "2", backend=ScriptedBackend())
    run(dataclasses.replace(cfg, seed=5), tmp_path / "3", backend=ScriptedBackend())
    for f in s1["outputs"]:
        assert (tmp_path / "1" / f).stat().st_size > 0
    same = (tmp_path / "1" / "preferences.parquet").read_bytes() == (tmp_path / "2" / "preferences.parquet").read_bytes()
    other = (tmp_path / "1" / "preferences.parquet").read_bytes() == (tmp_path / "3" / "preferences.parquet").read_bytes()
    assert same and not other
    assert not list(tmp_path.glob("*/.*.tmp"))


def test_a_society_run_takes_every_step_on_the_runs_one_event_loop_and_closes_it(tmp_path):
    """One loop for the run (``Run.run_async``), not one ``asyncio.run`` per step: a server backend keeps its
    connections from step to step; the loop is closed when the run ends."""
    loops = []

    class Recording(ScriptedBackend):
        async def generate(self, requests):
            loops.append(asyncio.get_running_loop())
            return await super().generate(requests)

    run(tiny_config(steps=3), tmp_path, backend=Recording())
    assert len(loops) > 3 and len(set(loops)) == 1 and loops[0].is_closed()


def test_the_gate_and_the_generations_loop_run_on_the_runs_one_event_loop(tmp_path, monkeypatch):
    """The rest of a run's async work on the same one loop: the gate's continuation check and readings, a
    generation's society, its collective vote and its Overton coverage (training stubbed: not async work)."""
    import sim.experiments.society.generations as gen
    from sim.experiments import runner_for

    loops: dict[str, set] = {}

    class Recording(ScriptedBackend):
        def seen(self, what):
            loops.setdefault(what, set()).add(asyncio.get_running_loop())

        async def check_continuation_support(self):
            self.seen("continuation check")

        async def generate(self, requests):
            self.seen("generate")
            return await super().generate(requests)

        async def score_choices(self, requests):
            self.seen("score")
            return await super().score_choices(requests)

    rm = {"eval": {"accuracy": 0.5, "ece": 0.1, "log_loss": 0.7}, "pairs_per_s": 1.0}
    monkeypatch.setattr(gen.launch, "train", lambda *a, **k: rm)
    cfg = compose("experiment=tiny", "alignment.generations=1", "constitution.collective.enabled=true",
                  "sim.judge_reader=likelihood", "calibration.stance_items=2", "calibration.judge_items=2")
    summary = runner_for(cfg)(cfg, tmp_path, Recording(record=False))
    assert summary["label_quality"]["judge"]["items"] == 4 and (tmp_path / "constitution_votes.parquet").exists()
    assert set(loops) == {"continuation check", "generate", "score"}
    every = set().union(*loops.values())
    assert len(every) == 1 and next(iter(every)).is_closed()


def test_a_citizen_reads_its_society_only_through_the_step_context():
    """``Citizen`` reads the model's ``context`` (a frozen StepContext made once per step) and nothing else of it."""
    import ast

    tree = ast.parse((ROOT / "sim" / "society" / "citizen.py").read_text())
    read = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute) and node.value.attr == "model"
            and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}
    assert read == {"context"}


def test_the_step_context_is_made_per_step_and_frozen():
    soc = make(tiny_config(steps=2), ScriptedBackend())
    seen = []
    for _ in range(2):
        soc.step()
        seen.append(soc.context)
    assert [c.step for c in seen] == [1, 2] and seen[0].rng is soc.rng and seen[0].population == 6
    with pytest.raises(dataclasses.FrozenInstanceError):
        seen[1].step = 3


def test_coalescer_batches_concurrent_requests_and_routes_answers():
    calls: list[list[int]] = []

    def square(batch: list[int]) -> list[int]:
        calls.append(batch)
        return [x * x for x in batch]

    async def main():
        co = Coalescer(square, max_batch=8)
        return await asyncio.gather(*(co.submit(i) for i in range(20)))

    assert asyncio.run(main()) == [i * i for i in range(20)]
    assert [len(c) for c in calls] == [8, 8, 4]


def test_coalescer_hands_errors_to_every_caller():
    def broken(batch):
        raise RuntimeError("model fell over")

    async def main():
        co = Coalescer(broken, max_batch=4)
        return await asyncio.gather(*(co.submit(i) for i in range(3)), return_exceptions=True)

    out = asyncio.run(main())
    assert all(isinstance(e, RuntimeError) for e in out)


def test_a_restored_society_recollects_its_data_and_steps_on_as_the_original():
    cfg = tiny_config(steps=3)
    soc = make(cfg, ScriptedBackend(reply=reviser, scores=content_judge))
    soc.step()
    soc.step()
    state = json.loads(json.dumps(soc.state_dict()))  # as a checkpoint holds it
    back = make(cfg, ScriptedBackend(reply=reviser, scores=content_judge))
    back.load_state_dict(state)
    dc, dc2 = soc.datacollector, back.datacollector
    assert dc2.get_model_vars_dataframe().equals(dc.get_model_vars_dataframe())
    assert dc2.get_agent_vars_dataframe().equals(dc.get_agent_vars_dataframe())
    assert [a.memory for a in back.agents] == [a.memory for a in soc.agents]
    soc.step()
    back.step()
    assert back.preferences == soc.preferences and back.stances == soc.stances
    assert dc2.get_model_vars_dataframe().equals(dc.get_model_vars_dataframe())


def test_importing_the_society_leaves_the_start_method_and_tqdm_needs_no_semaphore():
    """mesa 3.3 forces multiprocessing's "spawn" when imported; under it tqdm's lock is a named semaphore
    that a killed run leaks (the resource tracker warns at exit). :mod:`sim.society.abm` puts the start method back,
    so no tracker process is started at all."""
    code = ("import multiprocessing as mp, multiprocessing.resource_tracker as rt\n"
            "import sim.society.model\n"
            "print(mp.get_start_method(allow_none=True))\n"
            "from tqdm.auto import tqdm\n"
            "tqdm(total=1).close()\n"
            "print(mp.get_start_method(), rt._resource_tracker._fd)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["None", "fork", "None"]  # none chosen; then the platform's own, and no tracker


def test_debate_teams_wait_for_a_slot_and_the_rows_do_not_change(monkeypatch):
    import sim.society.model

    real, live, most = sim.society.model.round_robin, [0], [0]

    async def counted(*args, **kwargs):
        live[0] += 1
        most[0] = max(most[0], live[0])
        try:
            return await real(*args, **kwargs)
        finally:
            live[0] -= 1

    class Yielding(ScriptedBackend):  # answers on the loop's next turn, as a real backend would
        async def generate(self, requests):
            await asyncio.sleep(0)
            return await super().generate(requests)

    monkeypatch.setattr(sim.society.model, "round_robin", counted)
    rows = []
    for cap in (1, 1000):
        monkeypatch.setattr(sim.society.model, "MAX_TEAMS", cap)
        most[0] = 0
        soc = make(tiny_config(), Yielding())  # 6 agents in groups of 2: 3 teams
        soc.step()
        assert most[0] == min(cap, 3)
        rows.append((soc.stances, soc.transcripts, soc.preferences))
    assert rows[0] == rows[1]


def _debaters(backend, n):
    from autogen_agentchat.agents import AssistantAgent

    from agents.llm.autogen_client import AgoraChatClient

    return [AssistantAgent(f"agent_{i}", model_client=AgoraChatClient(backend, speaker=f"agent_{i}"),
                           system_message=f"persona {i}") for i in range(n)]


@pytest.mark.parametrize("n,turns", [(2, 2), (3, 3), (3, 7), (4, 8)])
def test_round_robin_says_and_shows_what_autogens_round_robin_team_does(n, turns):
    """Same replies, and every request each member's model client sent carries the same messages."""
    import zlib

    from autogen_agentchat.teams import RoundRobinGroupChat

    from sim.society.model import round_robin

    def reply(r):  # depends on everything the member was shown, so a missing or extra message changes it
        return f"{len(r.messages)}:{zlib.crc32(repr(r.messages).encode())}"

    ours, theirs = ScriptedBackend(reply=reply), ScriptedBackend(reply=reply)
    mine = asyncio.run(round_robin(_debaters(ours, n), "Debate this.", turns))
    team = asyncio.run(RoundRobinGroupChat(_debaters(theirs, n), max_turns=turns).run(task="Debate this."))
    assert [(m.source, m.content) for m in mine] == [(m.source, m.content) for m in team.messages]
    assert len(mine) == turns + 1
    assert ours.seen_generate == theirs.seen_generate and len(ours.seen_generate) == turns


def test_a_debaters_backend_error_reaches_the_step_as_itself():
    """autogen's team would raise a RuntimeError holding the traceback's text; the run's one-line errors need the
    BackendError itself."""
    from agents.llm.base import BackendError

    def reply(r):
        if any(DEBATE_ROLE in m.content for m in r.messages):
            raise BackendError("http://127.0.0.1:9/v1 is unreachable")
        return ScriptedBackend.default_reply(r)

    soc = make(tiny_config(), ScriptedBackend(reply=reply))
    with pytest.raises(BackendError, match="unreachable"):
        soc.step()


def test_step_collector_freezes_survivors_during_the_step_and_restores_the_collector(monkeypatch):
    import gc

    import sim.society.model
    from sim.society.model import StepCollector

    thresholds, callbacks = gc.get_threshold(), list(gc.callbacks)
    frozen_at_start: list[int] = []

    def seen(phase, info):
        if phase == "start":
            frozen_at_start.append(gc.get_freeze_count())

    def reply_collecting(r):  # a full collection in the middle of the step, whatever the heap's size
        gc.collect()
        return ScriptedBackend.default_reply(r)

    rows = []
    for policy in (StepCollector(young=None, freeze_survivors=False), StepCollector(young=100, freeze_survivors=True)):
        monkeypatch.setattr(sim.society.model, "STEP_COLLECTOR", policy)
        soc = make(tiny_config(), ScriptedBackend(reply=reply_collecting))
        frozen_at_start.clear()
        gc.callbacks.append(seen)
        try:
            soc.step()
        finally:
            gc.callbacks.remove(seen)
        assert gc.get_threshold() == thresholds and gc.callbacks == callbacks and gc.get_freeze_count() == 0
        rows.append((soc.stances, soc.transcripts, soc.preferences))
        grew = max(frozen_at_start) > frozen_at_start[0]
        assert grew == policy.freeze_survivors  # survivors of a full collection frozen, only by the policy that says so
    assert rows[0] == rows[1]


@pytest.mark.parametrize("where", ["agora-eval", "a society run's eval block"])
def test_the_evaluation_suites_read_on_the_runs_one_event_loop(tmp_path, where):
    """``agora-eval``'s suites, and a society run's ``eval.suites``, read on the run's one loop, not a loop each."""
    from sim.experiments import runner_for
    from sim.experiments.entry_points import run_eval
    from sim.experiments.evaluate import eval_inputs

    loops: set = set()

    class Recording(ScriptedBackend):
        async def score_choices(self, requests):
            loops.add(asyncio.get_running_loop())
            return await super().score_choices(requests)

    if where == "agora-eval":
        cfg = compose("name=eval", "eval.scenarios=2", "population.size=4", "calibration.enabled=false")
        block = run_eval(cfg, tmp_path, eval_inputs(cfg), backend=Recording(record=False))
    else:
        cfg = compose("experiment=tiny", "eval.suites=[moralchoice,steerability]", "eval.scenarios=2",
                      "calibration.enabled=false")
        block = runner_for(cfg)(cfg, tmp_path, Recording(record=False))["eval"]
    assert "steerability" in block and len(loops) == 1 and next(iter(loops)).is_closed()


def test_the_debate_runs_alone_on_a_context_made_for_it():
    """What benches/test_throughput.py's debate benchmark does: one phase without a step around it."""
    soc = make(tiny_config(), ScriptedBackend())
    d = soc.schedule[0]
    soc.context = soc.make_context()
    said = asyncio.run(soc._debate(d, 0, {a.index: "A. yes" for a in soc.agents}))
    assert sorted(said) == list(range(len(soc.agents)))
    assert [m.phase for m in soc.transcripts] == ["debate"] * len(soc.agents)
