"""The ``study`` node of a run's config (``StudyConfig``), and the settings of the experiments not yet in their own
folder (``study.*``; the ``experiment=`` presets in ``conf/experiment/`` set them). A converted experiment's
settings live in its folder (``sim/experiments/<name>/config.py``).

Each setting is documented once, in its class; ``sim.config.AgoraConfig`` holds them under ``study``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

from scenarios.principle_bank import DEFAULT_CCAI

MAX_TOKENS = 4096  # new tokens per reply: sim.tokens.* has the same bound (a typo of 48000 would hang a run)


# The MFQ-30 countries that are also in a cultural cluster (agents/culture.py); Latvia and Mongolia
# (in no cluster) may be added by name.
CLUSTER_COUNTRIES = ["Sweden", "Netherlands", "US", "UK", "Australia", "France", "Spain", "Belgium", "Poland",
                     "Hungary", "Russia", "Serbia", "China", "Japan", "Korea", "Iran", "Turkey"]


MAX_PERMUTATIONS = 100_000  # study.human.permutations: see HumanConfig


@dataclass(frozen=True)
class HumanConfig:
    """``experiment=human_distributions``: do agents with a country's persona answer as that country's
    people do? Agents answer the MFQ-30 items and Moral Machine choices; their per-country profiles are
    compared with people's (distance, between-country correlation, bootstrap intervals), beside the same
    model without persona and the model's profiles given to shuffled countries.

    Attributes:
        countries: MFQ-30 country names compared (each needs MFQ-30 respondents and Moral Machine
            estimates: the 17 below, Latvia and Mongolia); at least 3.
        instruments: ``mfq`` (MFQ-30 foundations) and/or ``moral_machine`` (its nine attributes).
        persona: ``country`` (the country named, its cluster's culture; nothing about moral foundations,
            so the MFQ comparison does not hand the answer over) or ``respondent`` (each agent is a real
            respondent of the country: the country persona plus that person's MFQ-30 foundations; with
            ``mfq`` this partly hands the answer over, so the run records a caveat).
        agents_per_country: agents per country; with ``respondent``, each is a different real respondent
            drawn (seeded, without replacement) from the country's, so at most the fewest respondents of a
            chosen country (France has 206; more is an error naming the country and its count); with
            ``country`` every agent would read the same prompt, so it must be 1.
        reader: ``likelihood`` (each answer's own text scored) or ``label`` (numbered / lettered options,
            every order read and averaged), both from ``agents/scoring.py``.
        permutations: seeded country shuffles of the shuffled-country baseline; 100 to 100,000 (p resolves to
            1/(N + 1), so 100,000 gives 1e-5; each shuffle costs ~0.1–0.2 ms, ~20 s per instrument at the bound).
    """

    countries: list[str] = field(default_factory=lambda: list(CLUSTER_COUNTRIES))
    instruments: list[str] = field(default_factory=lambda: ["mfq", "moral_machine"])
    persona: str = "country"
    agents_per_country: int = 1
    reader: str = "likelihood"
    permutations: int = 1000

    def __post_init__(self) -> None:
        from agents.culture import load_mfq_by_country
        from agents.survey import PERSONAS
        from scenarios.moral_machine import ISO3, load_estimates

        known = sorted(c for c in load_mfq_by_country() if ISO3.get(c) in load_estimates())
        bad = [c for c in self.countries if c not in known]
        if bad:
            raise ValueError(f"study.human.countries: unknown country {bad}; known: {known}")
        if len(set(self.countries)) != len(self.countries) or len(self.countries) < 3:
            raise ValueError("study.human.countries must name at least 3 different countries")
        if (not self.instruments or set(self.instruments) - {"mfq", "moral_machine"}
                or len(set(self.instruments)) != len(self.instruments)):
            raise ValueError(f"study.human.instruments must be mfq and/or moral_machine, each once, got {self.instruments}")
        if self.persona not in PERSONAS:
            raise ValueError(f"study.human.persona must be one of {PERSONAS}, got '{self.persona}'")
        if self.agents_per_country < 1 or (self.persona == "country" and self.agents_per_country != 1):
            raise ValueError("study.human.agents_per_country must be >= 1, and 1 with persona=country "
                             "(every agent of a country would read the same prompt)")
        people = load_mfq_by_country()
        count, fewest = min((len(people[c]), c) for c in self.countries)
        if self.agents_per_country > count:
            raise ValueError(f"study.human.agents_per_country={self.agents_per_country} is more than {fewest}'s {count} "
                             "MFQ-30 respondents (each agent is a different respondent)")
        if self.reader not in ("likelihood", "label"):
            raise ValueError(f"study.human.reader must be likelihood or label, got '{self.reader}'")
        if not 100 <= self.permutations <= MAX_PERMUTATIONS:
            raise ValueError(f"study.human.permutations must be in [100, {MAX_PERMUTATIONS:,}], got {self.permutations}")


@dataclass(frozen=True)
class InverseConfig:
    """``experiment=inverse_constitution`` (after Inverse Constitutional AI, Findeis et al. 2024): the
    short list of principles that best explains a society's preferences, for the whole society and per
    judge cluster, scored on held-out pairs against the given constitution and no principle.

    Attributes:
        preferences: a run folder or a ``preferences.parquet`` to analyse; empty = run a society first
            (the ``population``/``sim``/``constitution`` settings) and analyse its preferences.
        max_principles: longest list selected per scope (greedy; it stops early when no candidate
            raises training agreement).
        proposals: training pairs (a seeded draw, clusters in turn) the model writes one principle for; 0 to
            1,000 (each parsed proposal is a candidate that every pair is judged under: 1,000 candidates over the
            preset's 36 pairs are 36,000 readings). Fewer when there are fewer training pairs with a decided
            label: then logged and recorded (``proposals.requested`` beside ``proposals.asked`` in ``summary.json``).
        proposal_tokens: new tokens per proposal (1 to 4096).
        bank_size: principles drawn (seeded) from the bank (the bundled constitutions' judging principles
            and the Collective Constitutional AI statements); 0 = none; at most the bank's size (refused
            before any work, not cut).
        ccai_path: the CCAI ``clean_comments.csv`` or its folder (read in place, never copied; a
            ``moderated`` column keeps only accepted statements); relative paths are looked up from the
            working directory, then from the checkout's root. The default absent = the bank is the bundled
            constitutions only (recorded and logged, not an error); another path absent = an error; empty =
            do not use it.
        held_out: share of pairs held out to evaluate each list.
        split_by: ``pair`` (a seeded split within each judge cluster) or ``dilemma`` (every dilemma on
            one side; needs several dilemmas).
    """

    preferences: str = ""
    max_principles: int = 3
    proposals: int = 8
    proposal_tokens: int = 40
    bank_size: int = 8
    ccai_path: str = DEFAULT_CCAI
    held_out: float = 0.4
    split_by: str = "pair"

    def __post_init__(self) -> None:
        if self.max_principles < 1 or self.proposals < 0 or self.proposal_tokens < 1 or self.bank_size < 0:
            raise ValueError("study.inverse.max_principles and proposal_tokens must be >= 1, proposals and bank_size >= 0")
        if self.proposals > 1000 or self.proposal_tokens > MAX_TOKENS:
            raise ValueError(f"study.inverse.proposals must be at most 1,000, proposal_tokens at most {MAX_TOKENS}")
        if not 0 < self.held_out < 1:
            raise ValueError(f"study.inverse.held_out must be in (0, 1), got {self.held_out}")
        if self.split_by not in ("pair", "dilemma"):
            raise ValueError(f"study.inverse.split_by must be pair or dilemma, got '{self.split_by}'")


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
LEGACY_KEYS = {"inverse_constitution": "inverse", "human_distributions": "human"}


@dataclass(frozen=True)
class LegacyStudy(StudyConfig):
    """The settings of the experiments that are not registered study nodes yet (``study=legacy``, the default).

    Attributes:
        kind: ``society`` or one of those experiments (a registered one is selected with ``experiment=<name>``).
        inverse, human: settings of each experiment.
    """

    inverse: InverseConfig = field(default_factory=InverseConfig)
    human: HumanConfig = field(default_factory=HumanConfig)

    @property
    def settings_key(self) -> str | None:
        return LEGACY_KEYS.get(self.kind)

    def __post_init__(self) -> None:
        if self.kind != "society" and self.kind not in LEGACY_KEYS:
            raise ValueError(f"study.kind={self.kind} is none of {['society', *LEGACY_KEYS]}; an experiment with its own "
                             "settings node is selected with experiment=NAME (or study=NAME), which sets study.kind")
