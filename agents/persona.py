"""How a worldview reaches the model: persona text (two variants) and its conditioning (contrast, steer).

- **prompt**: the persona is the system prompt. ``culture`` is today's text (``agents.worldview.render_persona``:
  the culture a person belongs to, second person); ``profile`` says what the agent values, first person,
  from its own sampled positions (:func:`render_profile`). :func:`profile_sources` names the data that
  shaped a text: a profile rendered from a worldview with moral-foundation values states its MFQ-30
  ranking, so it must not be judged on MFQ-30 (a country persona carries none).
- **contrast**: the prompt persona's effect isolated and scaled (context-aware decoding, Shi et al. 2023):
  ``(1 + α)·score(x | persona) − α·score(x | no persona)`` for every reading (``agents/scoring.py``) and for
  the next-token logits of generation (embedded backend). Centred readings replace the no-persona term
  inside the persona's effect by the mean over a reference panel (the six cluster centres in the same
  variant): ``score(x | none) + (1 + α)·(score(x | persona) − mean_r score(x | r))``. For K options this is
  what centring can mean: a constant added to every option's score changes no reading, so the shared part
  of the persona's effect — the part every persona has, e.g. lowering every MFQ answer — is only visible
  across personas, and centring removes it; the panel's mean reading is then the no-persona reading.
- **steer**: the persona text plus a vector added to the residual stream (ActAdd, Turner et al. 2023;
  persona vectors, Chen et al. 2025): per value axis a direction from contrastive statements
  (``agents/steering.py``), summed with weights = the agent's standardised positions (:func:`standardised`).
  ``variant=none`` steers without persona text (the vector alone carries the worldview).
- ``prompt`` with ``variant=none`` is the society with no persona: every agent speaks and is read under the
  same neutral system prompt (:data:`NEUTRAL`), so what clusters still differ by is sampling alone.

Only the embedded backend can steer or contrast generation; :func:`support_line` is the start-up line
elsewhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from agents.culture import HOFSTEDE_AXES, IW_AXES, MFQ_AXES, load_clusters, load_mfq_profiles
from agents.llm.base import Conditioning
from agents.worldview import Worldview, cluster_centre

METHODS = ("prompt", "contrast", "steer")
MAX_ALPHA = 100.0  # the study's grid went to 9; at 100 the no-persona term is all but the whole score
MAX_BETA = 10.0  # ten times the layer's typical residual norm: the residual stream is the vector alone
MAX_LAYER = 255  # checked against the model's own layer count when the embedded backend is loaded
STEER_LAYER = 12  # persona.layer's default (the decoder layer steering acts on unless set)
VARIANTS = ("culture", "profile", "none")
NEUTRAL = "You are a thoughtful person."  # agents.prompts.system_prompt(None)'s text


@dataclass(frozen=True, kw_only=True)
class PersonaConfig:
    """How personas condition the model.

    Attributes:
        method: ``prompt`` (persona text only), ``contrast`` (its effect scaled by ``alpha``, readings
            and embedded generation) or ``steer`` (text plus an activation vector scaled by ``beta`` at
            ``layer``; embedded backend only).
        variant: the persona text: ``culture`` (the cluster's culture, second person: today's text),
            ``profile`` (first-person statements of the agent's own values, :func:`render_profile`), or
            ``none`` (no persona text: every agent gets the neutral system prompt; with ``prompt`` the no-persona
            baseline of a society, with ``steer`` the vector alone; not with ``contrast``).
        alpha: contrast strength, 0 to 100 (``contrast`` only; 0 reads as the prompt, or as the centred prompt
            with ``centre``).
        centre: centre contrast readings on the reference panel (see the module docstring); generation
            is never centred (``contrast`` only).
        beta: steering scale, 0 to 10 (``steer`` only): the vector's norm for an agent one standard deviation
            out on every axis, as a share of the layer's typical residual norm (0 is the prompt).
        layer: the decoder layer (0-based) whose output the steering vector is added to (``steer``); below the
            model's layer count (SmolLM2-135M has 30), checked when the model is loaded.
    """

    method: str = "prompt"
    variant: str = "culture"
    alpha: float = 0.0
    centre: bool = False
    beta: float = 0.0
    layer: int = STEER_LAYER

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"persona.method must be one of {METHODS}, got '{self.method}'")
        if self.variant not in VARIANTS:
            raise ValueError(f"persona.variant must be one of {VARIANTS}, got '{self.variant}'")
        if self.variant == "none" and self.method == "contrast":  # the persona term would equal the no-persona term
            raise ValueError("persona.variant=none (no persona text) cannot be contrasted: it needs persona.method=prompt "
                             "(the no-persona society) or steer")
        if not 0 <= self.alpha <= MAX_ALPHA:  # NaN fails too
            raise ValueError(f"persona.alpha must be in [0, {MAX_ALPHA:g}], got {self.alpha}")
        if not 0 <= self.beta <= MAX_BETA:
            raise ValueError(f"persona.beta must be in [0, {MAX_BETA:g}], got {self.beta}")
        if not 0 <= self.layer <= MAX_LAYER:
            raise ValueError(f"persona.layer must be in [0, {MAX_LAYER}] (and below the model's layer count), got {self.layer}")
        # a strength for another method would be ignored without a word: refused instead
        if self.method != "contrast" and (self.alpha or self.centre):
            raise ValueError(f"persona.alpha and persona.centre apply to persona.method=contrast, not {self.method}")
        if self.method != "steer" and self.beta:
            raise ValueError(f"persona.beta applies to persona.method=steer, not {self.method}")
        if self.method != "steer" and self.layer != STEER_LAYER:  # ignored, yet it would change the run id
            raise ValueError(f"persona.layer applies to persona.method=steer, not {self.method}")


# -- standardised positions (steering weights, profile wording) ------------------------------------
@cache
def axis_stats() -> dict[str, tuple[float, float]]:
    """Mean and standard deviation per axis: Inglehart–Welzel and Hofstede over the six bundled cluster
    centres, moral foundations over every bundled MFQ-30 respondent of a cluster. Fixed by the bundle,
    so an agent's weights do not depend on who else is in its population."""
    centres = list(load_clusters().values())
    out = {}
    for a in IW_AXES + HOFSTEDE_AXES:
        v = np.array([c.centre[a] for c in centres if a in c.centre], float)
        out[a] = (float(v.mean()), float(v.std()))
    mfq = np.concatenate(list(load_mfq_profiles().values()))
    out |= {a: (float(mfq[:, k].mean()), float(mfq[:, k].std())) for k, a in enumerate(MFQ_AXES)}
    return out


def standardised(w: Worldview, axes: Sequence[str] | None = None, clip: float = 3.0) -> dict[str, float]:
    """The worldview's z-score per axis it has (in :func:`axis_stats` units), clipped to ±``clip``."""
    stats = axis_stats()
    names = [a for a in (axes or stats) if a in w.values and a in stats]
    return {a: float(np.clip((w.values[a] - stats[a][0]) / stats[a][1], -clip, clip)) for a in names}


# -- the profile variant ------------------------------------------------------------------------------
# (low pole, high pole), first person
_PROFILE_PHRASES: dict[str, tuple[str, str]] = {
    "traditional_secular": ("Religion, national pride and obedience to authority matter a great deal to me.",
                            "I hold secular views: religion, national pride and obedience to authority matter little to me."),
    "survival_selfexpression": ("Economic and physical security come first for me, and I am wary of outsiders and change.",
                                "I value self-expression, tolerance of people unlike me, trust and having a say in decisions."),
    "power_distance": ("I believe people are equals whatever their rank, and I expect to be consulted.",
                       "I accept that power is unequal: superiors and elders deserve deference."),
    "individualism": ("My family and my community come before my own wishes, and I owe them loyalty.",
                      "I look after myself: personal choice and independence come first."),
    "masculinity": ("Caring for others and the quality of life matter more to me than winning.",
                    "Achievement, competition and success matter a lot to me."),
    "uncertainty_avoidance": ("I am comfortable with ambiguity and change; rules should be few.",
                              "Uncertainty makes me uneasy: I want clear rules and structure."),
    "long_term_orientation": ("I keep to time-honoured traditions and am wary of change.",
                              "I plan for the long term, save, and adapt traditions pragmatically."),
    "indulgence": ("I believe desires should be restrained by strict social norms.",
                   "I feel free to enjoy life and have fun."),
}
_FOUNDATION_WORDS = {"care": "caring for the vulnerable", "fairness": "fairness and justice",
                     "loyalty": "loyalty to my group", "authority": "respect for authority and tradition",
                     "sanctity": "purity and sanctity"}


def render_profile(w: Worldview, *, max_statements: int = 5, threshold: float = 0.5) -> str:
    """First-person statements of what the agent values (pure function): its Inglehart–Welzel and Hofstede
    positions furthest from the cluster centres' mean (``|z| >= threshold``, at most ``max_statements``, the
    strongest first), then, when the worldview has moral-foundation values, its ranking of them."""
    z = standardised(w, IW_AXES + HOFSTEDE_AXES)
    ranked = sorted((a for a in z if abs(z[a]) >= threshold), key=lambda a: (-abs(z[a]), a))[:max_statements]
    lines = [_PROFILE_PHRASES[a][int(z[a] > 0)] for a in ranked]
    mfq = [(w.values[a], a) for a in MFQ_AXES if a in w.values]
    if mfq:
        order = sorted(mfq, key=lambda t: (-t[0], t[1]))
        top = " and ".join(_FOUNDATION_WORDS[a] for _, a in order[:2])
        lines.append(f"Morally, what matters most to me is {top}; what matters least is {_FOUNDATION_WORDS[order[-1][1]]}.")
    return " ".join(["This is what I value."] + lines) if lines else NEUTRAL


def profile_sources(w: Worldview) -> list[str]:
    """The data that shaped a profile persona of ``w`` (what it must not be judged against)."""
    out = []
    if any(a in w.values for a in IW_AXES):
        out.append("inglehart_welzel")
    if any(a in w.values for a in HOFSTEDE_AXES):
        out.append("hofstede")
    if any(a in w.values for a in MFQ_AXES):
        out.append("mfq30")
    return out


def persona_text(w: Worldview, variant: str) -> str:
    """The system-prompt persona of ``w`` in ``variant`` (``culture`` keeps the text it was rendered with)."""
    if variant == "culture":
        return w.persona
    return render_profile(w) if variant == "profile" else NEUTRAL


def reference_panel() -> list[Worldview]:
    """The default centring panel: the six cluster centres (:func:`agents.worldview.cluster_centre`)."""
    return [cluster_centre(name) for name in load_clusters()]


def condition(w: Worldview, cfg: PersonaConfig, reference: Sequence[Worldview] | None = None) -> Worldview:
    """``w`` with its persona text in ``cfg.variant`` and the conditioning ``cfg.method`` needs attached
    (``agents.prompts.system_prompt`` puts it on the system message of every prompt rendered from it).

    Args:
        w: the agent's worldview (its ``persona`` is the ``culture`` text).
        cfg: the run's persona settings.
        reference: the centring panel (``cfg.centre``), rendered in the same variant; default
            :func:`reference_panel`.
    """
    text = persona_text(w, cfg.variant)
    cond = None
    if cfg.method == "contrast":
        panel = tuple(persona_text(r, cfg.variant) for r in (reference_panel() if reference is None else reference))
        cond = Conditioning(method="contrast", alpha=cfg.alpha, base=NEUTRAL, reference=panel if cfg.centre else ())
    elif cfg.method == "steer":
        cond = Conditioning(method="steer", beta=cfg.beta, layer=cfg.layer,
                            steer=tuple(sorted(standardised(w).items())))
    return dataclasses.replace(w, persona=text, conditioning=cond)


def inherit(parent: Worldview, child: Worldview) -> Worldview:
    """``child`` (an offspring with its persona re-rendered in the culture text, ``agents.worldview.mutate``)
    conditioned as ``parent`` was: the same persona variant (read off the parent's text, which equals its own
    rendering in that variant), the same contrast, its own steering weights."""
    if parent.persona == NEUTRAL:
        child = dataclasses.replace(child, persona=NEUTRAL)
    elif parent.persona == render_profile(parent):
        child = dataclasses.replace(child, persona=render_profile(child))
    c = parent.conditioning
    if c is not None and c.method == "steer":
        c = dataclasses.replace(c, steer=tuple(sorted(standardised(child).items())))
    return dataclasses.replace(child, conditioning=c)


def condition_all(worldviews: Sequence[Worldview], cfg: PersonaConfig) -> list[Worldview]:
    """Every worldview conditioned by ``cfg`` (:func:`condition`; the centring panel rendered once). The default
    (``prompt``/``culture``) returns the worldviews themselves, so a default run's prompts are today's, byte for byte."""
    if cfg == PersonaConfig():
        return list(worldviews)
    panel = reference_panel() if cfg.method == "contrast" and cfg.centre else []
    return [condition(w, cfg, panel) for w in worldviews]


def support_line(backend_name: str, cfg: PersonaConfig, *, embedded: bool) -> str | None:
    """The one start-up line for a backend that cannot do all of ``cfg`` (None when it can)."""
    if embedded:
        return None
    if cfg.method == "steer":
        return (f"persona.method=steer: {backend_name} cannot add activation vectors (only the embedded backend "
                "can); its agents speak with the persona text alone")
    if cfg.method == "contrast":
        return (f"persona.method=contrast: {backend_name} contrasts readings (log-probabilities) but not generation "
                "(it needs next-token logits of two prompts); its free text uses the persona prompt alone")
    return None
