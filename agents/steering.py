"""Steering directions per value axis (ActAdd, Turner et al. 2023; persona vectors, Chen et al. 2025).

For each axis, short first-person statements of its two poles (written here, in the project's own
words, from the axes' published definitions: Inglehart & Welzel's cultural map, Hofstede's six
dimensions, the five moral foundations). A direction at a layer is the mean residual-stream state over
the high-pole statements' tokens minus that over the low-pole statements', at that layer's output;
kept as a unit vector with the layer's typical residual norm (the median token norm over all
statements), so a steering scale means the same at every layer (:func:`steering_vector`).

Directions are computed once per model and statement set, for every layer in one pass, and cached on
disk (``<cache>/steering/<model>-<hash>.pt``, the hash over the statements and the extraction rule).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agents.llm.base import Conditioning

EXTRACTION = "v1: mean over statement tokens (no chat template), layer output; high minus low; unit norm"

# axis -> (low-pole statements, high-pole statements); highs are the axis's high end (agents.culture.AXIS_SCALES)
STATEMENTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "traditional_secular": (
        ("God is very important in my life.", "I am proud of my nation and its religion.",
         "Children must learn obedience and faith.", "Respect for authority is a good thing.",
         "Abortion and divorce are never justified.", "I follow the religion of my parents."),
        ("Religion plays little part in my life.", "National pride means little to me.",
         "Children should learn independence and curiosity.", "Authority should always be questioned.",
         "Abortion and divorce can be justified.", "I decide for myself what to believe."),
    ),
    "survival_selfexpression": (
        ("Economic and physical security come first.", "I do not trust people I do not know.",
         "Outsiders and immigrants are a threat.", "Hard work to survive matters more than happiness.",
         "Men make better leaders than women.", "People like me have little say."),
        ("Self-expression and quality of life come first.", "Most people can be trusted.",
         "I welcome people who are different from me.", "Being happy and free matters most to me.",
         "Women and men should have equal rights.", "I want a say in the decisions that affect me."),
    ),
    "power_distance": (
        ("Everyone is equal, whatever their rank.", "Bosses should consult their staff.",
         "I can disagree openly with my superiors.", "Power should be shared widely."),
        ("Superiors deserve obedience and deference.", "The boss decides, and staff follow.",
         "I would never contradict my elders.", "Some people are meant to lead, others to follow."),
    ),
    "individualism": (
        ("My family and group come before my own wishes.", "I owe loyalty to my community for life.",
         "Decisions are made together by the family.", "Harmony in the group matters more than my opinion."),
        ("I look after myself and my own choices.", "Personal independence matters most to me.",
         "I make my own decisions, whatever my family thinks.", "Speaking my mind matters more than harmony."),
    ),
    "masculinity": (
        ("Caring for others matters more than winning.", "Quality of life is the sign of success.",
         "Modesty and cooperation are virtues.", "Work should leave time for family and rest."),
        ("Winning and success matter most.", "Achievement and ambition drive me.",
         "The strongest should come out on top.", "Competition brings out the best in people."),
    ),
    "uncertainty_avoidance": (
        ("I am comfortable with uncertainty.", "Rules should be few and flexible.",
         "New and unknown things excite me.", "I can live with ambiguity."),
        ("Uncertainty makes me anxious.", "There should be clear rules for everything.",
         "I avoid what is new and unknown.", "I need structure and predictability."),
    ),
    "long_term_orientation": (
        ("Time-honoured traditions must be kept.", "I live for today and keep to the old ways.",
         "Change should be resisted.", "Honour and tradition guide me."),
        ("I save and plan for the long term.", "Traditions should adapt to new times.",
         "Perseverance pays off in the future.", "I change course when it is practical."),
    ),
    "indulgence": (
        ("Desires should be restrained by strict norms.", "Having fun is not important.",
         "I control my impulses and my pleasures.", "Leisure is a waste of time."),
        ("I enjoy life and have fun.", "Leisure and pleasure matter to me.",
         "I follow my impulses freely.", "I feel free to do what I enjoy."),
    ),
    "care": (
        ("Suffering of others is not my concern.", "The weak must look after themselves.",
         "Cruelty does not bother me much.", "Compassion is overrated."),
        ("I care deeply about those who suffer.", "Protecting the weak is a duty.",
         "Cruelty is the worst thing.", "Compassion is the greatest virtue."),
    ),
    "fairness": (
        ("Fair treatment is not that important.", "Some people deserve more rights than others.",
         "Justice matters less than results.", "Unequal treatment is fine."),
        ("Everyone must be treated fairly.", "Everyone deserves the same rights.",
         "Justice is the most important thing.", "Unfairness makes me angry."),
    ),
    "loyalty": (
        ("Loyalty to my group means little.", "I feel no special duty to my country.",
         "Betraying a group is sometimes fine.", "I am a citizen of the world first."),
        ("Loyalty to my group is sacred.", "I stand by my country and my people.",
         "Betraying your group is unforgivable.", "I am a team player first."),
    ),
    "authority": (
        ("Authority should be challenged.", "Traditions do not bind me.",
         "I disobey orders I disagree with.", "Respect must be earned, not demanded."),
        ("Respect for authority is essential.", "Traditions must be honoured.",
         "I obey orders even when I disagree.", "Children must respect their elders."),
    ),
    "sanctity": (
        ("Nothing is sacred to me.", "Purity and chastity are outdated ideas.",
         "If no one is harmed, nothing is disgusting.", "The body is just a body."),
        ("Some things are sacred.", "Purity and chastity are virtues.",
         "Some acts are wrong because they are unnatural.", "The body is a temple."),
    ),
}
AXES = tuple(STATEMENTS)


def statements_hash() -> str:
    """The statements' and the extraction rule's identity (the disk cache's key)."""
    blob = json.dumps({"rule": EXTRACTION, "statements": STATEMENTS}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class DirectionBank:
    """Every layer's directions.

    Attributes:
        axes: the axes, in :attr:`directions`' order.
        directions: ``[layers, axes, hidden]`` unit vectors, high pole minus low pole at each layer's output.
        scale: ``[layers]`` median residual-token norm at each layer's output over all statements.
        raw_norm: ``[layers, axes]`` the mean differences' norms before normalising (how far apart the poles are).
    """

    axes: tuple[str, ...]
    directions: torch.Tensor
    scale: torch.Tensor
    raw_norm: torch.Tensor


@torch.inference_mode()
def extract(model: Any, tokenizer: Any, device: torch.device) -> DirectionBank:
    """Directions at every layer from :data:`STATEMENTS` (one forward per statement, no chat template)."""
    layers = model.config.num_hidden_layers
    dirs, raws, norms = [], [], []
    for axis in AXES:
        means = []
        for pole in STATEMENTS[axis]:
            states = []
            for text in pole:
                ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]], device=device)
                hs = model(input_ids=ids, output_hidden_states=True).hidden_states  # embeddings, then each layer
                h = torch.stack(hs[1:])[:, 0].float()  # [layers, tokens, hidden]
                norms.append(h.norm(dim=-1))
                states.append(h.mean(dim=1))
            means.append(torch.stack(states).mean(dim=0))  # [layers, hidden]
        diff = means[1] - means[0]
        raw = diff.norm(dim=-1)
        raws.append(raw)
        dirs.append(diff / raw[:, None].clamp(min=1e-8))
    scale = torch.cat(norms, dim=1).median(dim=1).values
    assert scale.shape == (layers,)
    return DirectionBank(AXES, torch.stack(dirs, dim=1).cpu(), scale.cpu(), torch.stack(raws, dim=1).cpu())


def load_bank(model: Any, tokenizer: Any, device: torch.device, model_name: str, cache_dir: Path) -> DirectionBank:
    """The model's direction bank: from ``cache_dir`` when computed before, else extracted and saved."""
    path = cache_dir / f"{model_name}-{statements_hash()}.pt"
    if path.is_file():
        d = torch.load(path, weights_only=True)
        return DirectionBank(tuple(d["axes"]), d["directions"], d["scale"], d["raw_norm"])
    bank = extract(model, tokenizer, device)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{id(bank)}")
    torch.save({"axes": list(bank.axes), "directions": bank.directions, "scale": bank.scale,
                "raw_norm": bank.raw_norm}, tmp)
    tmp.replace(path)  # atomic: a concurrent extraction writes the same tensors
    return bank


def steering_vector(bank: DirectionBank, cond: Conditioning) -> torch.Tensor:
    """``β · scale[layer] · Σ_a w_a·u_a / √A`` over the A axes the agent has weights for: an agent one
    standard deviation out on every axis gets a vector of about ``β`` times the layer's residual norm
    (exactly, were the directions orthogonal)."""
    if cond.layer >= len(bank.scale):
        raise ValueError(f"persona.layer={cond.layer}: the model has {len(bank.scale)} layers (0-based)")
    index = {a: k for k, a in enumerate(bank.axes)}
    unknown = [a for a, _ in cond.steer if a not in index]
    if unknown:
        raise ValueError(f"no steering direction for axes {unknown}; known: {list(bank.axes)}")
    v = torch.zeros(bank.directions.shape[-1])
    for a, w in cond.steer:
        v += w * bank.directions[cond.layer, index[a]]
    return cond.beta * float(bank.scale[cond.layer]) * v / math.sqrt(max(len(cond.steer), 1))
