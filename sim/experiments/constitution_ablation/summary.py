"""The constitution ablation's typed summary, and the statistics that fill it from the arms' labels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alignment.metrics import NA, Interval, bootstrap_interval, finite, finite_figures, optional
from sim.results import Summary, fields_json, from_json


@dataclass(frozen=True, kw_only=True)
class Effect(Interval):
    """How far judging under one arm moved the labels toward one direction, vs ``none``: the mean over pairs with
    delta ≠ 0 of ``(p_arm − p_none)·sign(delta)``, with its bootstrap interval over pairs.

    Attributes:
        d_z: that mean over its SD (None: n/a).
        d_z_na: why ``d_z`` is n/a (None when it is computable; no key in ``summary.json`` then).
        pairs: pairs with delta ≠ 0.
        agreement: the arm's mean P(prefer the more-D answer) over those pairs (None: no pair).
    """

    d_z: float | None = None
    d_z_na: str | None = optional()
    pairs: int = 0
    agreement: float | None = None


@dataclass(frozen=True, kw_only=True)
class Arm:
    """One arm: the constitution judged under.

    Attributes:
        tag: the constitution's name and version.
        principles: its judging principles.
        direction: the yes/no question naming the property it asks for ("" for none).
    """

    tag: str
    principles: list[str]
    direction: str


@dataclass(frozen=True, kw_only=True)
class RewardDirection:
    """One arm's reward model read along one direction, on held-out pairs.

    Attributes:
        rm_agreement: the share of pairs with delta ≠ 0 where it ranks the more-D answer higher (None: no pair).
        rm_shift: that share's paired difference from the ``none`` arm's reward model, with its bootstrap interval.
    """

    rm_agreement: float | None
    rm_shift: Interval


@dataclass(frozen=True, kw_only=True)
class RewardArm:
    """The reward model trained on one arm's labels (``summary.json`` holds each direction beside the two figures).

    Attributes:
        eval_accuracy_own_labels: its held-out accuracy on the arm's own labels.
        held_pairs: the held-out pairs.
        directions: each direction's reading.
    """

    eval_accuracy_own_labels: float | None
    held_pairs: int
    directions: dict[str, RewardDirection] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = fields_json(self)
        return {k: v for k, v in out.items() if k != "directions"} | out["directions"]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RewardArm:
        mine = ("eval_accuracy_own_labels", "held_pairs")
        return cls(**{k: data[k] for k in mine},
                   directions={k: from_json(RewardDirection, v) for k, v in data.items() if k not in mine})


@dataclass(frozen=True, kw_only=True)
class AblationSummary(Summary):
    """``summary.json`` of a constitution ablation (the run's own fields: :class:`~sim.results.Summary`).

    Attributes:
        pairs: the society's judged pairs, each judged again under every arm.
        arms: each arm's constitution.
        mean_p_a: each arm's mean P(response_a better).
        label_change_vs_none: each arm's mean |p_arm − p_none|.
        effects: arm -> direction -> :class:`Effect`.
        reward: arm -> its reward model (empty: none trained).
        reward_na: why no reward model was trained although asked (None, and no key in ``summary.json``: trained or
            not asked).
        plots: the plot files written.
        trl_export: what the TRL exports of the society's preferences hold.
    """

    pairs: int
    arms: dict[str, Arm]
    mean_p_a: dict[str, float | None]
    label_change_vs_none: dict[str, float | None]
    effects: dict[str, dict[str, Effect]]
    reward: dict[str, RewardArm]
    reward_na: str | None = optional()
    plots: list[str]
    trl_export: dict[str, Any]


def shift_toward(p_arm: np.ndarray, p_ref: np.ndarray, delta: np.ndarray, seed: int, n_boot: int) -> Effect:
    """Mean of ``(p_arm − p_ref)·sign(delta)`` over pairs with delta ≠ 0, bootstrap interval and d_z."""
    keep = delta != 0
    v = (p_arm[keep] - p_ref[keep]) * np.sign(delta[keep])
    sd = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
    d_z = (float(v.mean()) / sd if np.isfinite(sd) and sd > 0
           else NA("fewer than 2 pairs" if len(v) < 2 else "no spread: every pair shifts the same"))
    z = finite_figures(d_z=d_z)
    return Effect.of(bootstrap_interval(v.tolist(), n_resamples=n_boot, seed=seed), d_z=z["d_z"], d_z_na=z.get("d_z_na"),
                     pairs=int(keep.sum()),
                     agreement=finite(float(np.mean(np.where(delta[keep] > 0, p_arm[keep], 1 - p_arm[keep]))))
                     if keep.any() else None)
