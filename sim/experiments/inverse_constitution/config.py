"""``study.inverse.*``: the settings of ``experiment=inverse_constitution`` (documented once, here)."""

from __future__ import annotations

from dataclasses import dataclass

from scenarios.principle_bank import DEFAULT_CCAI
from sim.report.render import CORE_CONFIG
from sim.study_config import MAX_TOKENS

# the config sections the report shows (the whole config is in summary.json)
SECTIONS = (*CORE_CONFIG, "study.inverse", "eval.bootstrap")


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
