"""``study.ablation.*``: the settings of ``experiment=constitution_ablation`` (documented once, here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.report.render import CORE_CONFIG

# the config sections the report shows (the whole config is in summary.json)
SECTIONS = (*CORE_CONFIG, "alignment", "study.ablation", "eval.bootstrap")


@dataclass(frozen=True)
class AblationConfig:
    """``experiment=constitution_ablation``: one society's answer pairs judged again under each
    constitution; does each move preferences (and a reward model trained on them) toward what it names?

    Attributes:
        constitutions: the arms; ``none`` (no principle) is the reference every effect is measured from.
        train_reward: train one reward model per arm on its labels and measure it on held-out pairs.
    """

    constitutions: list[str] = field(default_factory=lambda: ["none", "harmlessness", "multiplex", "single_care"])
    train_reward: bool = True

    def __post_init__(self) -> None:
        if "none" not in self.constitutions or len(set(self.constitutions)) < 2:
            raise ValueError("study.ablation.constitutions must include 'none' (the reference) and at least one other")
        twice = sorted({c for c in self.constitutions if self.constitutions.count(c) > 1})
        if twice:
            raise ValueError(f"study.ablation.constitutions names {twice} more than once; each arm once")
