"""``persona.*`` as a run setting: it reaches every call an agent makes or is read by, refuses what it cannot do in
one line, and at its default leaves run ids and prompts as they were. ``sim.reason``: a reason written after the
choice is read, and the count of reasons that still name the other option."""

import dataclasses
import logging

import polars as pl
import pytest

from agents.llm.base import BackendError, ChatMessage
from agents.llm.scripted import ScriptedBackend
from agents.persona import NEUTRAL, PersonaConfig, condition_all, render_profile, standardised
from agents.prompts import DEBATE_ROLE, JUDGE_ROLE, names_other
from agents.worldview import mutate
from scenarios.constitution import load_constitution
from scenarios.dilemma import Dilemma, load_dilemmas
from sim.config import AgoraConfig
from sim.run.ids import id_settings, run_id_for
from sim.run.lifecycle import check_persona
from sim.run.seeding import child_rng
from sim.society.model import Society, population
from tests.helpers import agora, compose, tiny_config

STEER = PersonaConfig(method="steer", beta=0.5, layer=4)
CONTRAST = PersonaConfig(method="contrast", alpha=1.0, centre=True)


def society(persona: PersonaConfig, backend: ScriptedBackend, **sim) -> Society:
    cfg = dataclasses.replace(tiny_config(**sim), persona=persona)
    return Society(cfg, load_dilemmas("default"), load_constitution(cfg.constitution.name), backend, run_id="t")


def call_site(messages: tuple[ChatMessage, ...]) -> str:
    """Which phase sent a request, from its prompt's wording."""
    system, user = messages[0].content, messages[-1].content
    for needle, site in ((DEBATE_ROLE, "debate"), (JUDGE_ROLE, "judge")):
        if needle in system:
            return site
    for needle, site in (("A neighbour answered", "critique"), ("Your earlier answer", "revision"),
                         ("Start your reply with the letter", "stance"), ("You decided:", "reason"),
                         ("Your group discussed it", "post_debate read"), ("You revised your answer", "revised read"),
                         ("do you do?", "initial read")):
        if needle in user:
            return site
    return "other"


# -- the default is today's run -------------------------------------------------------------------------
def test_the_default_enters_no_run_id_and_changes_no_prompt():
    cfg = compose()
    settings = id_settings(cfg)
    assert "persona" not in settings and "reason" not in settings["sim"]
    assert run_id_for(compose("persona.method=contrast", "persona.alpha=1")) != run_id_for(cfg)
    assert run_id_for(compose("sim.reason=after_choice")) != run_id_for(cfg)
    ws = population(tiny_config())
    assert condition_all(ws, PersonaConfig()) == ws and all(w.conditioning is None for w in ws)


# -- the setting reaches every call site ----------------------------------------------------------------
SITES = {"stance", "debate", "critique", "revision", "judge", "initial read", "post_debate read", "revised read"}


def test_steer_reaches_every_call_with_each_agents_own_vector():
    backend = ScriptedBackend()
    soc = society(STEER, backend)
    soc.step()
    weights = {tuple(sorted(standardised(a.worldview).items())) for a in soc.agents}
    seen = {}
    for r in [*backend.seen_generate, *backend.seen_score]:
        c = r.conditioning
        assert c is not None and c.method == "steer" and (c.beta, c.layer) == (0.5, 4), call_site(r.messages)
        assert c.steer in weights  # an agent's own weights
        seen.setdefault(call_site(r.messages), set()).add(c.steer)
    assert set(seen) == SITES
    assert all(len(v) > 1 for v in seen.values())  # agents differ at every site


def test_contrast_reaches_every_call_and_readings_are_contrasted():
    backend = ScriptedBackend()
    soc = society(CONTRAST, backend)
    soc.step()
    panel = {a.worldview.conditioning.reference for a in soc.agents}
    assert len(panel) == 1 and len(next(iter(panel))) == 6  # the six cluster centres, rendered once
    for r in backend.seen_generate:  # free text carries it: the embedded backend contrasts decoding
        assert r.conditioning is not None and r.conditioning.alpha == 1.0, call_site(r.messages)
    conditioned = {call_site(r.messages) for r in [*backend.seen_generate, *backend.seen_score] if r.conditioning}
    assert conditioned == SITES
    # every reading also sent the same prompt without persona (the contrast's other term) and under the panel
    plain = [r for r in backend.seen_score if r.conditioning is None]
    assert plain and all(r.messages[0].content.startswith(NEUTRAL) or any(
        r.messages[0].content.startswith(t) for t in next(iter(panel))) for r in plain)
    assert {call_site(r.messages) for r in plain} == {"judge", "initial read", "post_debate read", "revised read"}


def test_the_profile_variant_is_the_system_text_everywhere():
    backend = ScriptedBackend()
    soc = society(PersonaConfig(variant="profile"), backend)
    soc.step()
    texts = {render_profile(a.worldview) for a in soc.agents}
    assert all(a.worldview.conditioning is None for a in soc.agents)
    for r in [*backend.seen_generate, *backend.seen_score]:
        assert any(r.messages[0].content.startswith(t) for t in texts), call_site(r.messages)


def test_the_no_persona_society_gives_every_agent_the_same_neutral_text_at_every_call():
    backend = ScriptedBackend()
    soc = society(PersonaConfig(variant="none"), backend)
    soc.step()
    assert {a.worldview.persona for a in soc.agents} == {NEUTRAL} and len({a.cluster for a in soc.agents}) > 1
    assert all(a.worldview.conditioning is None for a in soc.agents)
    seen = {}
    for r in [*backend.seen_generate, *backend.seen_score]:
        system = r.messages[0].content
        assert r.messages[0].role == "system" and system.startswith(NEUTRAL) and r.conditioning is None, call_site(r.messages)
        seen.setdefault(call_site(r.messages), set()).add(system)
    assert set(seen) >= SITES
    assert all(len(texts) == 1 for texts in seen.values())  # one text per site: no agent differs from another
    culture = ScriptedBackend()
    society(PersonaConfig(), culture).step()
    assert len({r.messages[0].content for r in culture.seen_generate if call_site(r.messages) == "stance"}) > 1
    cfg = compose("persona.variant=none")
    assert run_id_for(cfg) != run_id_for(compose()) and id_settings(cfg)["persona"] == {"variant": "none"}


def test_the_studies_that_draw_the_population_get_it(tmp_path):
    from sim.experiments import run_experiment

    backend = ScriptedBackend()
    cfg = compose("experiment=overton", "persona.method=steer", "persona.beta=0.5", "study.overton.dilemmas=2",
                  "population.size=8")
    run_experiment(cfg, tmp_path / "run", backend)
    agents = [r for r in backend.seen_generate + backend.seen_score if r.conditioning is not None]
    assert agents and all(r.conditioning.method == "steer" for r in agents)


def test_an_offspring_keeps_its_parents_conditioning_with_its_own_weights():
    rng = child_rng(0, "test")
    for cfg in (STEER, CONTRAST, PersonaConfig(variant="profile"), PersonaConfig(method="steer", variant="none", beta=1)):
        (parent,) = condition_all(population(tiny_config())[:1], cfg)
        child = mutate(parent, rng, 0.2)
        if cfg.variant == "profile":
            assert child.persona == render_profile(child) != parent.persona
        if cfg.variant == "none":
            assert child.persona == NEUTRAL
        if cfg.method == "steer":
            assert child.conditioning.steer == tuple(sorted(standardised(child).items())) != parent.conditioning.steer
        if cfg.method == "contrast":
            assert child.conditioning == parent.conditioning
    (plain,) = population(tiny_config())[:1]
    assert mutate(plain, child_rng(0, "x"), 0.2).conditioning is None


# -- refusals -------------------------------------------------------------------------------------------
REFUSED = {
    "alpha too large": (("persona.method=contrast", "persona.alpha=1000"), "persona.alpha must be in [0, 100]"),
    "alpha not a number": (("persona.method=contrast", "persona.alpha=nan"), "persona.alpha must be in [0, 100]"),
    "beta negative": (("persona.method=steer", "persona.beta=-1"), "persona.beta must be in [0, 10]"),
    "beta too large": (("persona.method=steer", "persona.beta=50"), "persona.beta must be in [0, 10]"),
    "layer negative": (("persona.method=steer", "persona.layer=-1"), "persona.layer must be in [0, 255]"),
    "alpha for the prompt": (("persona.alpha=2",), "apply to persona.method=contrast, not prompt"),
    "beta for contrast": (("persona.method=contrast", "persona.beta=1"), "applies to persona.method=steer"),
    "no text to contrast": (("persona.method=contrast", "persona.variant=none"), "cannot be contrasted"),
    "unknown method": (("persona.method=vector",), "persona.method must be one of"),
    "reason": (("sim.reason=later",), "sim.reason must be one of"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_bad_persona_settings_are_refused_in_one_line(name):
    overrides, needle = REFUSED[name]
    with pytest.raises(Exception) as err:
        compose(*overrides)
    assert needle in str(err.value) and "\n" not in str(err.value).strip(), str(err.value)


def test_on_the_command_line_a_bound_is_one_line_exit_2_and_leaves_no_folder(tmp_path):
    out = tmp_path / "run"
    res = agora("llm=scripted", "persona.method=steer", "persona.beta=50", f"hydra.run.dir={out}")
    err = res.stderr.strip()
    assert res.returncode == 2 and err.startswith("agora: error: ") and "\n" not in err, res.stderr[-2000:]
    assert "persona.beta must be in [0, 10]" in err and not out.exists()


class FakeEmbedded(ScriptedBackend):
    conditions_generation, layer_count = True, 30


def test_a_layer_the_model_lacks_is_refused_and_other_backends_say_what_they_cannot_do(caplog):
    with pytest.raises(BackendError, match=r"persona.layer=30: scripted has 30 decoder layers \(0 to 29\)"):
        check_persona(PersonaConfig(method="steer", beta=1, layer=30), FakeEmbedded())
    assert check_persona(PersonaConfig(method="steer", beta=1, layer=29), FakeEmbedded()) is None
    with caplog.at_level(logging.WARNING, logger="sim.run.lifecycle"):
        line = check_persona(STEER, ScriptedBackend())
    assert "cannot add activation vectors" in line and "\n" not in line and line in caplog.text
    assert check_persona(PersonaConfig(), ScriptedBackend()) is None


def test_a_run_on_a_backend_that_cannot_steer_says_so_once_at_start(tmp_path, caplog):
    from sim.experiments import run_experiment as run

    with caplog.at_level(logging.WARNING, logger="sim.run.lifecycle"):
        run(dataclasses.replace(tiny_config(), persona=STEER), tmp_path / "run", ScriptedBackend(record=False))
    assert caplog.text.count("cannot add activation vectors") == 1


# -- coherent reasons -------------------------------------------------------------------------------------
def test_after_choice_writes_each_reason_for_the_choice_read():
    backend = ScriptedBackend(reply=lambda r: "Because it is right.")
    soc = society(PersonaConfig(), backend, reason="after_choice")
    soc.step()
    d = soc.schedule[0]
    initial = [s for s in soc.stances if s.phase == "initial"]
    reasons = [r for r in backend.seen_generate if call_site(r.messages) == "reason"]
    assert len(reasons) == len(initial) and not [r for r in backend.seen_generate if call_site(r.messages) == "stance"]
    for s, r in zip(initial, reasons, strict=True):
        chosen = d.action_a if s.choice == "a" else d.action_b
        other = d.action_b if s.choice == "a" else d.action_a
        assert f"You decided: {chosen}" in r.messages[-1].content and other not in r.messages[-1].content
        assert s.text_choice is None and s.parsed_ok is None and s.reason == "Because it is right."
    # others see the letter the reading chose, then the reason
    opening = next(r for r in backend.seen_generate if call_site(r.messages) == "debate")
    assert any(f"{s.choice.upper()}. Because it is right." in m.content for s in initial for m in opening.messages)
    assert pl.Series([soc.step_metrics["unparsed_initial"]]).is_nan().all()  # no letter was asked for


def test_an_abstention_has_no_choice_to_argue_so_its_text_is_todays_stance():
    # the same log-likelihood per character for both actions: P(a) exactly 0.5, which argmax abstains on
    backend = ScriptedBackend(scores=lambda r: [-0.5 * len(c) for c in r.choices] if r.continuation else [-1.0, -1.0])
    soc = society(PersonaConfig(), backend, reason="after_choice", choice_rule="argmax")
    soc.step()
    initial = [s for s in soc.stances if s.phase == "initial"]
    assert {s.choice for s in initial} == {"abstain"} and all(s.parsed_ok is not None for s in initial)
    assert {call_site(r.messages) for r in backend.seen_generate} >= {"stance"}
    assert "reason" not in {call_site(r.messages) for r in backend.seen_generate}


def test_before_choice_is_todays_stance():
    backend = ScriptedBackend()
    soc = society(PersonaConfig(), backend)
    soc.step()
    sites = {call_site(r.messages) for r in backend.seen_generate}
    assert "stance" in sites and "reason" not in sites
    assert all(s.parsed_ok is not None for s in soc.stances if s.phase == "initial")


def test_the_summary_counts_reasons_that_name_the_other_option(tmp_path):
    from sim.experiments import run_experiment as run

    # every reason argues for B: those read as A name the other option
    summary = run(tiny_config(reason="after_choice"), tmp_path / "run", ScriptedBackend(reply=lambda r: "B. I disagree."))
    stances = pl.read_parquet(tmp_path / "run" / "stances.parquet").filter(pl.col("phase") == "initial")
    r = summary["reasons"]
    assert r["mode"] == "after_choice" and r["texts"] == len(stances) == 6
    assert r["naming_other_option"] == int((stances["choice"] == "a").sum())
    assert r["interval"][0] <= r["share"] <= r["interval"][1]
    page = (tmp_path / "run" / "report.md").read_text()
    assert f"{r['naming_other_option']} of {r['texts']} first reasons still name the option" in page


def test_names_other_reads_letters_and_the_actions_own_words():
    d = Dilemma(id="x", situation="s", action_a="I report the theft to the police.", action_b="I keep quiet.")
    assert names_other("B. I would keep quiet.", d, "a") and not names_other("A. Report it.", d, "a")
    assert names_other("Staying quiet: I keep quiet.", d, "a")
    assert not names_other("Reporting theft to the police is right.", d, "a")
    assert not names_other("Nothing to say.", d, "a")


def test_the_config_dataclass_documents_the_new_settings():
    import sim.config

    assert "persona:" in AgoraConfig.__doc__ and "reason:" in sim.config.SimConfig.__doc__
