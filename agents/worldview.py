"""Worldviews: a point on named value axes plus a persona, sampled from cultural clusters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from agents.culture import (
    AXIS_SCALES,
    HOFSTEDE_AXES,
    IW_AXES,
    MFQ_AXES,
    load_clusters,
    load_mfq_profiles,
)
from agents.llm.base import Conditioning


@dataclass(frozen=True, kw_only=True)
class Worldview:
    """One agent's values.

    Attributes:
        cluster: name of the cultural cluster it was sampled from.
        values: score per axis (see :data:`agents.culture.AXIS_SCALES` for each scale).
        persona: the system-prompt text rendered from ``values`` by :func:`render_persona`.
        source_country: the country of the real MFQ-30 respondent whose profile it carries.
        conditioning: how the persona acts beyond its text (``agents.persona.condition`` sets it; None: the
            text alone); every system prompt rendered from this worldview carries it.
    """

    cluster: str
    values: Mapping[str, float]
    persona: str = ""
    source_country: str = ""
    conditioning: Conditioning | None = None

    def __post_init__(self) -> None:
        unknown = set(self.values) - set(AXIS_SCALES)
        if unknown:
            raise ValueError(f"unknown value axes {sorted(unknown)}; known: {sorted(AXIS_SCALES)}")

    def vector(self, axes: Sequence[str] = tuple(AXIS_SCALES)) -> np.ndarray:
        """The values as an array in ``axes`` order (NaN where an axis is absent)."""
        return np.array([self.values.get(a, np.nan) for a in axes], dtype=float)


MAX_POPULATION = 1_000_000


@dataclass(frozen=True, kw_only=True)
class PopulationSpec:
    """How to sample a population.

    Attributes:
        size: number of agents.
        clusters: cluster names to draw from (see ``agents/data/clusters.json``).
        weights: relative share of each cluster (uniform if empty).
        spread: within-cluster noise on the Inglehart–Welzel and Hofstede axes, in units of the
            cluster's between-country standard deviation (0 puts every agent on the centre).
    """

    size: int
    clusters: Sequence[str]
    weights: Sequence[float] = field(default_factory=tuple)
    spread: float = 1.0

    def __post_init__(self) -> None:
        known = load_clusters()
        if not 2 <= self.size <= MAX_POPULATION:
            raise ValueError(f"population.size must be 2 to {MAX_POPULATION:,} (the largest society measured to "
                             f"finish on one machine), got {self.size:,}")
        if not self.clusters:
            raise ValueError("population.clusters is empty")
        bad = [c for c in self.clusters if c not in known]
        if bad:
            raise ValueError(f"unknown cluster(s) {bad}; known: {sorted(known)}")
        twice = sorted({c for c in self.clusters if list(self.clusters).count(c) > 1})
        if twice:
            raise ValueError(f"population.clusters names {twice} more than once; each cluster once "
                             "(population.weights sets their shares)")
        if self.weights and (len(self.weights) != len(self.clusters) or min(self.weights) < 0 or sum(self.weights) <= 0):
            raise ValueError("population.weights must be non-negative, one per cluster, not all zero")
        if not 0 <= self.spread < float("inf"):  # NaN fails too
            raise ValueError(f"population.spread must be a finite number >= 0, got {self.spread}")


def cluster_counts(spec: PopulationSpec) -> list[int]:
    """Agents per cluster: largest-remainder apportionment of ``size`` by ``weights``.

    Deterministic, so a population of 16 over 4 equal clusters is always 4/4/4/4.
    """
    w = np.asarray(spec.weights if spec.weights else [1.0] * len(spec.clusters), dtype=float)
    exact = w / w.sum() * spec.size
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: spec.size - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def sample_population(spec: PopulationSpec, rng: np.random.Generator, limit: int | None = None) -> list[Worldview]:
    """Sample ``spec.size`` worldviews, cluster by cluster, in a fixed order; with ``limit``, only the first
    ``limit`` of them (the same ones: each is drawn after the ones before it)."""
    clusters, profiles = load_clusters(), load_mfq_profiles()
    out: list[Worldview] = []
    axes = IW_AXES + HOFSTEDE_AXES
    for name, n in zip(spec.clusters, cluster_counts(spec), strict=True):
        c = clusters[name]
        rows = profiles[name]
        # per axis: centre, noise scale, bounds (plain floats: numpy's scalar calls cost more than the draws)
        axis_terms = [(a, float(c.centre[a]), float(spec.spread * c.axis_sd[a]), *map(float, AXIS_SCALES[a]))
                      for a in axes]
        for _ in range(n if limit is None else min(n, limit - len(out))):
            values: dict[str, float] = {}
            # one draw per axis, in order: the same numbers as one standard_normal() call per axis
            for (axis, centre, scale, lo, hi), z in zip(axis_terms, rng.standard_normal(len(axes)).tolist(), strict=True):
                values[axis] = round(min(max(centre + scale * z, lo), hi), 3)
            pick = int(rng.integers(len(rows)))
            for axis, v in zip(MFQ_AXES, rows[pick], strict=True):
                values[axis] = float(v)
            country = c.countries[pick % len(c.countries)]
            w = Worldview(cluster=name, values=values, source_country=country)
            out.append(Worldview(cluster=name, values=values, source_country=country, persona=render_persona(w)))
    return out


# Phrases per axis: (low-end phrase, high-end phrase).
_IW_PHRASES = {
    "traditional_secular": ("religion, national pride and deference to authority matter a great deal to you",
                            "you hold secular-rational views and question tradition and authority"),
    "survival_selfexpression": ("economic and physical security come first for you; you are cautious of outsiders",
                                "you prize self-expression, tolerance, trust and having a say in decisions"),
}
_HOFSTEDE_PHRASES = {
    "power_distance": ("people should be treated as equals regardless of rank",
                       "hierarchy is natural and elders and superiors deserve deference"),
    "individualism": ("your family and community come before your own wishes",
                      "individual choice and personal responsibility come first"),
    "masculinity": ("caring for others and quality of life matter more than winning",
                    "achievement, competition and success matter a lot"),
    "uncertainty_avoidance": ("you are comfortable with ambiguity and improvisation",
                              "you prefer clear rules and dislike uncertainty"),
    "long_term_orientation": ("you honour tradition and keep commitments to the past",
                              "you plan for the long term and adapt traditions pragmatically"),
    "indulgence": ("you believe desires should be restrained by strict social norms",
                   "you feel free to enjoy life and have fun"),
}
_MFQ_NAMES = {"care": "caring for the vulnerable", "fairness": "fairness and justice",
              "loyalty": "loyalty to your group", "authority": "respect for authority and tradition",
              "sanctity": "purity and sanctity"}


def _position(axis: str, value: float) -> float:
    """Place ``value`` on [−1, 1] across the axis's scale."""
    lo, hi = AXIS_SCALES[axis]
    return float(min(max(2 * (value - lo) / (hi - lo) - 1, -1.0), 1.0))


def render_persona(w: Worldview, *, max_hofstede: int = 2) -> str:
    """Render a worldview to a short second-person system prompt (pure function).

    Inglehart–Welzel positions come first (beyond a small dead zone around the axis middle), then
    the ``max_hofstede`` most extreme Hofstede dimensions, then the two most and the least endorsed
    moral foundations.
    """
    lines: list[str] = []
    for axis, (low, high) in _IW_PHRASES.items():
        if axis in w.values and abs(pos := _position(axis, w.values[axis])) >= 0.05:
            lines.append(high if pos > 0 else low)
    traits: list[tuple[float, str]] = []
    for axis, (low, high) in _HOFSTEDE_PHRASES.items():
        if axis in w.values and abs(pos := (w.values[axis] - 50) / 50) >= 0.2:  # indices centre on 50
            traits.append((abs(pos), high if pos > 0 else low))
    traits.sort(key=lambda t: -t[0])
    lines += [t[1] for t in traits[:max_hofstede]]
    mfq = [(w.values[a], a) for a in MFQ_AXES if a in w.values]
    # a worldview with moral foundations only (a respondent of a country in no cluster) has no culture clause
    cultural = any(a in w.values for a in IW_AXES + HOFSTEDE_AXES)
    text = "Your values were shaped by your culture: " + "; ".join(lines) + "." if cultural else ""
    if mfq:
        ranked = sorted(mfq, key=lambda t: (-t[0], t[1]))
        top = " and ".join(_MFQ_NAMES[a] for _, a in ranked[:2])
        text += f" Morally, you care most about {top}, and least about {_MFQ_NAMES[ranked[-1][1]]}."
    text = text.strip()
    return text[:1].upper() + text[1:]


def cluster_centre(name: str) -> Worldview:
    """A cluster's typical member: its centre on every axis (MFQ: the mean of its real respondents)."""
    c, profiles = load_clusters()[name], load_mfq_profiles()[name]
    values = {a: round(float(c.centre[a]), 3) for a in IW_AXES + HOFSTEDE_AXES if a in c.centre}
    values |= {a: round(float(v), 3) for a, v in zip(MFQ_AXES, profiles.mean(axis=0), strict=True)}
    w = Worldview(cluster=name, values=values, source_country=", ".join(c.countries))
    return Worldview(cluster=name, values=values, source_country=w.source_country, persona=render_persona(w))


def mutate(w: Worldview, rng: np.random.Generator, scale: float) -> Worldview:
    """An offspring: every axis moved by Gaussian noise of ``scale`` × the axis's range, clipped to
    the scale; cluster (the lineage) and country are inherited, the persona is re-rendered (in the parent's
    variant, with its conditioning: ``agents.persona.inherit``)."""
    values = {}
    for axis, v in w.values.items():
        lo, hi = AXIS_SCALES[axis]
        values[axis] = float(np.clip(v + scale * (hi - lo) * rng.standard_normal(), lo, hi))
    child = Worldview(cluster=w.cluster, values=values, source_country=w.source_country)
    child = Worldview(cluster=w.cluster, values=values, source_country=w.source_country, persona=render_persona(child))
    if w.conditioning is None and w.persona == render_persona(w):
        return child  # the default persona: nothing to carry over
    from agents.persona import inherit  # agents.persona builds on this module

    return inherit(w, child)


def cluster_label(name: str) -> str:
    """``protestant_europe`` -> ``Protestant Europe``."""
    return name.replace("_", " ").title()
