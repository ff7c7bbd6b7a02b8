"""Losses as small pure functions, in a dict by name (no elif ladder)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def bradley_terry(r_a: torch.Tensor, r_b: torch.Tensor, p_a: torch.Tensor) -> torch.Tensor:
    """Per-pair Bradley–Terry loss against a soft label: −(p·logσ(r_a−r_b) + (1−p)·logσ(r_b−r_a)).

    With p ∈ {0, 1} it is the usual hard-label reward-model loss.
    """
    d = r_a - r_b
    return -(p_a * F.logsigmoid(d) + (1 - p_a) * F.logsigmoid(-d))


def dpo_soft(pi_a: torch.Tensor, pi_b: torch.Tensor, ref_a: torch.Tensor, ref_b: torch.Tensor,
             p_a: torch.Tensor, beta: float) -> torch.Tensor:
    """Confidence-weighted DPO: both directions of the DPO loss, weighted by the soft label.

    z = β·((log π(a) − log π_ref(a)) − (log π(b) − log π_ref(b))); loss = −(p·logσ(z) + (1−p)·logσ(−z)).
    p = 1 gives standard DPO with a preferred; p = 0.5 gives no preference (the loss is minimised at z = 0).
    """
    z = beta * ((pi_a - ref_a) - (pi_b - ref_b))
    return -(p_a * F.logsigmoid(z) + (1 - p_a) * F.logsigmoid(-z))


LOSSES: dict[str, Callable[..., torch.Tensor]] = {"bradley_terry": bradley_terry, "dpo_soft": dpo_soft}
