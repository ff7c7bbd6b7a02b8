"""Preference records: the record and schema every run writes, and the datasets the trainers read.

They live here (not in ``sim``) so that ``sim`` depends on ``alignment`` and never the other way round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl


class SchemaError(ValueError):
    """Rows that do not fit their schema."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Preference:
    """One judged pair; ``p_a`` is P(response_a is better) with the presented order undone."""

    pref_id: str
    run_id: str
    generation: int
    step: int
    dilemma_id: str
    prompt: str
    response_a: str
    response_b: str
    author_a: int
    author_b: int
    cluster_a: str
    cluster_b: str
    pair_kind: str
    judge_id: int
    judge_cluster: str
    principle_id: str
    p_a: float
    p_a_presented: float
    p_a_reversed: float | None
    order_swapped: bool
    position_flip: bool | None
    judge_model: str
    constitution_version: str
    seed: int

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_a <= 1.0 or math.isnan(self.p_a):
            raise SchemaError(f"preference {self.pref_id}: p_a={self.p_a} is outside [0, 1]")


PREFERENCE_SCHEMA: dict[str, pl.DataType] = {
    "pref_id": pl.String, "run_id": pl.String, "generation": pl.Int32, "step": pl.Int32,
    "dilemma_id": pl.String, "prompt": pl.String, "response_a": pl.String, "response_b": pl.String,
    "author_a": pl.Int32, "author_b": pl.Int32, "cluster_a": pl.String, "cluster_b": pl.String,
    "pair_kind": pl.String,  # revision (a = revised, b = original) | cross_cluster | synthetic
    "judge_id": pl.Int32, "judge_cluster": pl.String, "principle_id": pl.String,
    "p_a": pl.Float64,  # P(A better), order undone; mean of both orders when debiased
    "p_a_presented": pl.Float64,  # from the randomised order the judge saw first
    "p_a_reversed": pl.Float64,  # from the opposite order (null when not debiased)
    "order_swapped": pl.Boolean,  # True: the judge saw response_b as option (A)
    "position_flip": pl.Boolean,  # the preferred answer changed when the order flipped
    "judge_model": pl.String, "constitution_version": pl.String, "seed": pl.Int64,
}

TRL_SCHEMA: dict[str, pl.DataType] = {
    "prompt": pl.String, "chosen": pl.String, "rejected": pl.String,
    "score_chosen": pl.Float64, "score_rejected": pl.Float64, "pref_id": pl.String,
}
MESSAGES = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
# TRL's "conversational" preference format: each of prompt/chosen/rejected a list of chat messages
TRL_CHAT_SCHEMA: dict[str, pl.DataType] = {**TRL_SCHEMA, "prompt": MESSAGES, "chosen": MESSAGES, "rejected": MESSAGES}


def validate_preferences(df: pl.DataFrame) -> None:
    """A preferences frame as every run writes it: the schema, p_a in [0, 1], unique ids."""
    if dict(df.schema) != PREFERENCE_SCHEMA:
        raise SchemaError(f"preferences schema mismatch: {dict(df.schema)}")
    bad = df.filter(~pl.col("p_a").is_between(0.0, 1.0) | pl.col("p_a").is_null())
    if len(bad):
        raise SchemaError(f"{len(bad)} preference rows have p_a outside [0, 1]")
    if df["pref_id"].n_unique() != len(df):
        raise SchemaError("duplicate pref_id in preferences")


def is_tie() -> pl.Expr:
    """A label that prefers neither answer (``p_a`` exactly 0.5: identical answers, or a judge that cannot tell)."""
    return pl.col("p_a") == 0.5


def to_trl(prefs: pl.DataFrame) -> pl.DataFrame:
    """TRL / HF ``datasets`` "standard" preference form: the preferred response is ``chosen``, scores
    are the label's probabilities. Ties are left out: a pair has no chosen answer when the label
    prefers neither, and calling A chosen would teach an order, not a preference (they stay in
    ``preferences.parquet``; :func:`trl_ties` counts them for ``summary.json``)."""
    a_wins = pl.col("p_a") > 0.5
    return prefs.filter(~is_tie()).select(
        pl.col("prompt"),
        pl.when(a_wins).then(pl.col("response_a")).otherwise(pl.col("response_b")).alias("chosen"),
        pl.when(a_wins).then(pl.col("response_b")).otherwise(pl.col("response_a")).alias("rejected"),
        pl.when(a_wins).then(pl.col("p_a")).otherwise(1 - pl.col("p_a")).alias("score_chosen"),
        pl.when(a_wins).then(1 - pl.col("p_a")).otherwise(pl.col("p_a")).alias("score_rejected"),
        pl.col("pref_id"),
    ).cast(TRL_SCHEMA)


def trl_ties(prefs: pl.DataFrame) -> int:
    """Pairs :func:`to_trl` leaves out."""
    return int(prefs.select(is_tie().sum()).item())


def to_trl_chat(trl: pl.DataFrame) -> pl.DataFrame:
    """TRL's "conversational" preference form of :func:`to_trl`'s frame (the same rows): the prompt as one
    user message, each answer as one assistant message, so a trainer applies the model's chat template —
    as agora's own DPO does (``alignment/dpo.py``)."""
    def said(role: str, col: str) -> pl.Expr:
        return pl.concat_list([pl.struct(pl.lit(role).alias("role"), pl.col(col).alias("content"))]).alias(col)

    return trl.with_columns(said("user", "prompt"), said("assistant", "chosen"),
                            said("assistant", "rejected")).cast(TRL_CHAT_SCHEMA)


def load_preferences(paths: Sequence[str | Path]) -> pl.DataFrame:
    """Concatenate ``preferences.parquet`` of one or more runs (a run folder or the file itself)."""
    frames = []
    for p in paths:
        path = Path(p)
        path = path / "preferences.parquet" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no preferences.parquet here")
        frames.append(pl.read_parquet(path).cast(PREFERENCE_SCHEMA))
    return pl.concat(frames)


def split_by_dilemma(prefs: pl.DataFrame, eval_fraction: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Train/eval split with every dilemma entirely on one side (no leakage across the split)."""
    dilemmas = sorted(prefs["dilemma_id"].unique().to_list())
    rng = np.random.default_rng(seed)
    order = [dilemmas[i] for i in rng.permutation(len(dilemmas))]
    # at least one dilemma on each side when there are two or more
    n_eval = min(max(1, round(eval_fraction * len(dilemmas))), len(dilemmas) - 1)
    held = set(order[:n_eval])
    is_eval = pl.col("dilemma_id").is_in(list(held))
    return prefs.filter(~is_eval), prefs.filter(is_eval)


def filter_confident(prefs: pl.DataFrame, min_margin: float) -> pl.DataFrame:
    """Keep pairs whose label is at least ``min_margin`` away from a coin flip (|p_a − 0.5|)."""
    return prefs.filter((pl.col("p_a") - 0.5).abs() >= min_margin)


def balance_by_cluster(prefs: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Down-sample so each author cluster (of response A) contributes equally many pairs."""
    counts = prefs.group_by("cluster_a").len()
    if len(counts) < 2:
        return prefs
    n = int(counts["len"].min())
    parts = [prefs.filter(pl.col("cluster_a") == c).sample(n, seed=seed, shuffle=True)
             for c in sorted(counts["cluster_a"].to_list())]
    return pl.concat(parts).sort("pref_id")
