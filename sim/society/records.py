"""What a society produces, as frozen records, each with the parquet schema it is written under.

A record's fields are its schema's columns in the same order; ``dataclasses.asdict`` gives the row that
checkpoints (JSON) and the store (polars, under the schema) take. :class:`Preference` and its schema live in
``alignment.preferences``, which the trainers read without importing ``sim``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from alignment.preferences import PREFERENCE_SCHEMA, Preference  # noqa: F401 (one import for every record)
from scenarios.constitution import JudgePrinciple

STANCE_PHASES = ("initial", "post_debate", "revised")
CHOICES = ("a", "b", "abstain")


@dataclass(frozen=True, slots=True, kw_only=True)
class Stance:
    """One agent's answer to one dilemma in one phase: the scored choice and, where it wrote one, its reason."""

    run_id: str
    generation: int
    step: int
    dilemma_id: str
    agent_id: int
    cluster: str
    model: str
    phase: str  # initial | post_debate | revised
    choice: str  # a | b | abstain
    p_a: float  # P(action a) read from the model, order-debiased where possible
    p_a_presented: float
    p_a_reversed: float | None  # the second order (None if read once)
    text_choice: str | None  # the letter the reason starts with (abstain if none; None without a reason)
    parsed_ok: bool | None
    reason: str | None
    seed: int | None

    def __post_init__(self) -> None:
        if self.phase not in STANCE_PHASES or self.choice not in CHOICES:
            raise ValueError(f"stance of agent {self.agent_id} on '{self.dilemma_id}': phase {self.phase!r}, "
                             f"choice {self.choice!r}")


STANCE_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String, "generation": pl.Int32, "step": pl.Int32, "dilemma_id": pl.String,
    "agent_id": pl.Int32, "cluster": pl.String, "model": pl.String,
    "phase": pl.String,  # initial | post_debate | revised
    "choice": pl.String,  # a | b | abstain
    "p_a": pl.Float64,  # P(action a) from the scored option labels, order-debiased where possible
    "p_a_presented": pl.Float64, "p_a_reversed": pl.Float64,  # the two orders (null if not scored)
    "text_choice": pl.String, "parsed_ok": pl.Boolean, "reason": pl.String, "seed": pl.Int64,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One transcript row: a stance's text, a debate turn, a critique or a revision."""

    run_id: str
    generation: int
    step: int
    dilemma_id: str
    phase: str  # stance | debate | critique | revision
    group_id: int | None  # the debate group (None outside debate)
    turn: int
    agent_id: int  # who speaks
    cluster: str
    target_id: int | None  # whose answer a critique addresses, who critiqued a revision (None otherwise)
    principle_id: str | None
    text: str
    seed: int


TRANSCRIPT_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String, "generation": pl.Int32, "step": pl.Int32, "dilemma_id": pl.String,
    "phase": pl.String,  # stance | debate | critique | revision
    "group_id": pl.Int32, "turn": pl.Int32, "agent_id": pl.Int32, "cluster": pl.String,
    "target_id": pl.Int32,  # whose answer a critique addresses (null otherwise)
    "principle_id": pl.String, "text": pl.String, "seed": pl.Int64,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgePlan:
    """One pair to judge (not written: each becomes a :class:`Preference`). ``swapped``: the judge sees
    ``response_b`` as option (A) first."""

    kind: str  # revision (a = revised, b = original) | cross_cluster
    author_a: int
    response_a: str
    author_b: int
    response_b: str
    judge: int
    principle: JudgePrinciple
    swapped: bool
