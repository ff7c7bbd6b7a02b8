"""``study.pluralism.*``: the settings of ``experiment=pluralism`` (documented once, here)."""

from __future__ import annotations

from dataclasses import dataclass

from sim.study_config import MAX_TOKENS

# the config sections the report shows (the whole config is in summary.json)
SECTIONS = ("seed", "name", "llm", "population", "scenario", "calibration", "study.pluralism", "eval.bootstrap")


@dataclass(frozen=True)
class PluralismConfig:
    """``experiment=pluralism`` (after WorldView-Bench): per dilemma, (a) one model answering alone,
    (b) the same model told to weigh several cultures (contextual multiplexity), (c) a panel of
    agents from different clusters whose answers a synthesiser merges (multi-agent multiplexity).
    A judge scores which cluster's perspective each answer reflects.

    Attributes:
        dilemmas: dilemmas answered (a seeded sample of ``scenario.dilemmas``); at least 2 (intervals over
            dilemmas) and at most the file's count (refused before any work, not cut).
        panel_size: panel members in (c), one per cluster in turn; at most ``population.size`` (a larger value
            runs panels of ``population.size``, with a warning; the size used is in ``summary.json``).
        answer_tokens: new tokens per answer in (a), (b) and per panel member (1 to 4096, as ``sim.tokens``).
        synthesis_tokens: new tokens for the synthesiser's merged answer (1 to 4096).
    """

    dilemmas: int = 12
    panel_size: int = 4
    answer_tokens: int = 64
    synthesis_tokens: int = 96

    def __post_init__(self) -> None:
        if self.dilemmas < 2 or self.panel_size < 2:
            raise ValueError("study.pluralism.dilemmas and panel_size must be >= 2")
        if not (1 <= self.answer_tokens <= MAX_TOKENS and 1 <= self.synthesis_tokens <= MAX_TOKENS):
            raise ValueError(f"study.pluralism.answer_tokens and synthesis_tokens must be in [1, {MAX_TOKENS}]")
