"""``study.human.*``: the settings of ``experiment=human_distributions`` (documented once, here)."""

from __future__ import annotations

from dataclasses import dataclass, field

# the config sections the report shows (the whole config is in summary.json)
SECTIONS = ("seed", "name", "llm", "calibration", "study.human", "eval.bootstrap")

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
