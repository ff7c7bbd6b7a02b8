"""``study.norms.*``: the settings of ``experiment=evolving_norms`` (documented once, here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.study_config import MAX_TOKENS

# the config sections the report shows (the whole config is in summary.json)
SECTIONS = ("seed", "name", "llm", "population", "scenario", "calibration", "alignment", "study.norms")


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
        clustered = [n for n in self.schedule if n.cluster]
        if clustered:
            from agents.culture import load_clusters  # here: the bundled culture data, read only when a norm names a cluster

            known = load_clusters()
            bad = [n.cluster for n in clustered if n.cluster not in known]
            if bad:
                raise ValueError(f"study.norms.schedule: unknown cluster(s) {bad}; known: {sorted(known)}")
