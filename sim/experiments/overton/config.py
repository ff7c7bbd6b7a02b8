"""``study.overton.*``: the settings of ``experiment=overton`` (documented once, here)."""

from __future__ import annotations

from dataclasses import dataclass

from sim.study_config import MAX_TOKENS

# the config sections the report shows (the whole config is in summary.json)
SECTIONS = ("seed", "name", "llm", "population", "scenario", "sim", "calibration", "study.overton", "eval.bootstrap")


@dataclass(frozen=True)
class OvertonConfig:
    """``experiment=overton`` (after Sorensen et al., "A Roadmap to Pluralistic Alignment"): per dilemma,
    the population's clusters' positions (each cluster's side and its most confident voice's reason,
    ``sim/experiments/shared/coverage.py``) and, for the base model alone, the contextual prompt and the panel
    synthesis (the pluralism experiment's three answers), the share of those positions each answer represents.

    Attributes:
        dilemmas: dilemmas answered (a seeded sample of ``scenario.dilemmas``); at least 2 (intervals over
            dilemmas) and at most the file's count (refused before any work, not cut).
        voices: agents per cluster whose answers make its position (a seeded draw); at most the smallest
            cluster's agent count (refused before any work, not cut).
        merge: clusters on the same side are one position (their reasons listed together) instead of
            one position per cluster.
        panel_size: panel members in the panel condition, one per cluster in turn; at most
            ``population.size`` (a larger value runs panels of ``population.size``, with a warning; the size
            used is in ``summary.json``).
        answer_tokens: new tokens per answer (voices, single, contextual, panel members; 1 to 4096).
        synthesis_tokens: new tokens for the panel's merged answer (1 to 4096).
    """

    dilemmas: int = 6
    voices: int = 2
    merge: bool = False
    panel_size: int = 4
    answer_tokens: int = 48
    synthesis_tokens: int = 80

    def __post_init__(self) -> None:
        if self.dilemmas < 2 or self.voices < 1 or self.panel_size < 2:
            raise ValueError("study.overton.dilemmas must be >= 2 (intervals over dilemmas), voices >= 1, panel_size >= 2")
        if not (1 <= self.answer_tokens <= MAX_TOKENS and 1 <= self.synthesis_tokens <= MAX_TOKENS):
            raise ValueError(f"study.overton.answer_tokens and synthesis_tokens must be in [1, {MAX_TOKENS}]")
