"""The ``study`` node of a run's config (``StudyConfig``), and the settings of the experiments not yet in their own
folder (``study.*``; the ``experiment=`` presets in ``conf/experiment/`` set them). A converted experiment's
settings live in its folder (``sim/experiments/<name>/config.py``).

Each setting is documented once, in its class; ``sim.config.AgoraConfig`` holds them under ``study``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

MAX_TOKENS = 4096  # new tokens per reply: sim.tokens.* has the same bound (a typo of 48000 would hang a run)


@dataclass(frozen=True)
class NormConfig:
    """One entry of a norm schedule: from ``generation`` on, agents are judged for fit with this norm.

    Attributes:
        generation: the first generation the norm holds.
        name: short label for reports.
        principle: what fitting the norm means, e.g. "Put loyalty to family and group first."
        cluster: instead of ``principle``, make a cultural cluster's values the norm (its dominance).
        axis: the value axis the norm rewards (e.g. ``loyalty``), tracked in the population; optional.
    """

    generation: int = 0
    name: str = ""
    principle: str = ""
    cluster: str = ""
    axis: str = ""


MAX_GENERATIONS = 1000  # study.norms.generations: see NormsConfig


@dataclass(frozen=True)
class NormsConfig:
    """``experiment=evolving_norms`` (after EvolutionaryAgent and ProgressGym).

    Attributes:
        schedule: the norms and the generations they start at; the first starts at generation 0, and each
            before ``generations`` (a norm that would never hold is refused).
        generations: generations simulated; 1 to 1,000 (each asks every agent every dilemma: the preset's 6
            take ~6 min on 2 CPU cores, so the bound is days of work).
        dilemmas: dilemmas every generation answers (one seeded sample, the same each generation, so
            fit is comparable across generations); at most the file's count (refused before any work).
        turnover: share of agents that leave each generation (the least fit) and are replaced by
            offspring of the fittest (worldview copied with mutation).
        mutation: offspring noise per value axis, as a share of the axis's scale range.
        answer_tokens: new tokens per answer (1 to 4096).
        train_policy: DPO-tune a policy on each generation's fitness judgments (fit vs unfit
            answers) and measure how it tracks the norm too (slow on CPU).
    """

    schedule: list[NormConfig] = field(default_factory=lambda: [
        NormConfig(generation=0, name="loyalty_first", axis="loyalty",
                   principle="Put loyalty to one's family, friends and group first, even at some cost to outsiders."),
        NormConfig(generation=3, name="fairness_first", axis="fairness",
                   principle="Treat everyone fairly and equally, even when it means going against one's own group."),
    ])
    generations: int = 6
    dilemmas: int = 3
    turnover: float = 0.25
    mutation: float = 0.05
    answer_tokens: int = 48
    train_policy: bool = False

    def __post_init__(self) -> None:
        if self.generations < 1 or self.dilemmas < 1 or not 0 <= self.turnover <= 0.5 or not 0 <= self.mutation <= 1:
            raise ValueError("study.norms.generations and dilemmas must be >= 1, turnover in [0, 0.5], mutation in [0, 1]")
        if not self.schedule or self.schedule[0].generation != 0:
            raise ValueError("study.norms.schedule must start with a norm at generation 0")
        gens = [n.generation for n in self.schedule]
        if gens != sorted(set(gens)):
            raise ValueError(f"study.norms.schedule generations must be strictly increasing, got {gens}")
        if self.generations > MAX_GENERATIONS or not 1 <= self.answer_tokens <= MAX_TOKENS:
            raise ValueError(f"study.norms.generations must be at most {MAX_GENERATIONS:,}, answer_tokens in [1, {MAX_TOKENS}]")
        late = [n.name or str(n.generation) for n in self.schedule if n.generation >= self.generations]
        if late:
            raise ValueError(f"study.norms.schedule: norm(s) {late} start at or after generation {self.generations}, the "
                             f"run's last is {self.generations - 1} (they would never hold)")
        for n in self.schedule:
            if bool(n.principle) == bool(n.cluster):
                raise ValueError(f"norm '{n.name}': give exactly one of principle or cluster")


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


@dataclass(frozen=True)
class StudyConfig:
    """Which experiment a run is, and that experiment's settings: the ``study`` option.

    A registered experiment's node is a subclass holding ``kind`` and ``<key>``: its settings
    (:mod:`sim.experiments.registry` makes it, the CLI stores it as option ``study=<name>``, and
    ``conf/experiment/<name>.yaml`` selects it), so a run's config holds its own experiment's settings only.

    Attributes:
        kind: ``society`` (a society run, or generations with ``alignment.generations``) or an experiment's name
            (the ``experiment=`` presets set it).
    """

    kind: str = "society"
    published_id: ClassVar[bool] = True  # its runs keep the ids published on 2026-12-07 (sim/ids.py)

    @property
    def settings_key(self) -> str | None:
        """The ``study.<key>`` that holds this run's own experiment settings (None: it has none)."""
        keys = [f.name for f in fields(self) if f.name != "kind"]
        return keys[0] if len(keys) == 1 else None


# Transitional, until every experiment is a registered study node: the experiments not converted yet keep their
# settings in this one node (the default option ``study=legacy``), as every run's config held them before; each
# conversion removes its kind and key here, and the last one makes ``StudyConfig`` the default.
LEGACY_KEYS = {"evolving_norms": "norms", "constitution_ablation": "ablation"}


@dataclass(frozen=True)
class LegacyStudy(StudyConfig):
    """The settings of the experiments that are not registered study nodes yet (``study=legacy``, the default).

    Attributes:
        kind: ``society`` or one of those experiments (a registered one is selected with ``experiment=<name>``).
        norms, ablation: settings of each experiment.
    """

    norms: NormsConfig = field(default_factory=NormsConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)

    @property
    def settings_key(self) -> str | None:
        return LEGACY_KEYS.get(self.kind)

    def __post_init__(self) -> None:
        if self.kind != "society" and self.kind not in LEGACY_KEYS:
            raise ValueError(f"study.kind={self.kind} is none of {['society', *LEGACY_KEYS]}; an experiment with its own "
                             "settings node is selected with experiment=NAME (or study=NAME), which sets study.kind")
