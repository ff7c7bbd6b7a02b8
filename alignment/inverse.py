"""Inverse constitutions (after Inverse Constitutional AI, Findeis et al. 2024): pure functions over a
principles × pairs matrix of P(A better | principle), hand-checked in tests/unit/test_inverse_constitution.py.

A principle *agrees* with a pair when the side it prefers (P(A) above or below ½) is the label's side.
A list of principles votes by the mean of its principles' P(A) (a soft vote: a principle sure of a pair
outweighs one near ½, as the society's own labels average readings); a vote of exactly ½ is *undecided*
and counts as a miss. Pairs whose label is exactly ½ (ties) have no side: left out and counted.
A principle is learned only when it raises the list's training agreement strictly: the first above the
*no-principle baseline* (the ``none`` constitution's "Choose the better answer."), each next one above the
list so far. A scope with no candidate, fewer than :data:`MIN_TRAIN_PAIRS` decided training pairs, or no
candidate that beats the baseline learns no list: it is n/a (null agreement, a reason), never an empty list
scored as all-undecided.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from alignment.metrics import Interval, bootstrap_interval, finite, proportion_interval

# The fewest decided training pairs a scope selects on: a list that agrees with all of them then has a Wilson
# 95% interval above chance (4 of 4: [0.51, 1]; 3 of 3: [0.44, 1]), so fewer could not show a list beats a coin.
MIN_TRAIN_PAIRS = 4


def side(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """+1 where P(A) > ½, −1 where below, 0 at exactly ½."""
    return np.sign(np.asarray(p, float) - 0.5).astype(int)


def list_vote(scores: np.ndarray, chosen: Sequence[int]) -> np.ndarray:
    """P(A) of a list of principles: the mean of its rows of ``scores`` (principles × pairs); ½ for an empty list."""
    scores = np.asarray(scores, float)
    if not len(chosen):
        return np.full(scores.shape[1], 0.5)
    return scores[list(chosen)].mean(axis=0)


def hits(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Per pair with a decided label: 1 where the prediction's side is the label's, else 0 (undecided too)."""
    lab = side(label)
    keep = lab != 0
    return (side(pred)[keep] == lab[keep]).astype(int)


def agreement(pred: np.ndarray, label: np.ndarray) -> dict[str, Any]:
    """Agreement of ``pred`` with ``label`` and its Wilson 95% interval; ties and undecided votes counted."""
    lab = side(label)
    h = hits(pred, label)
    out = Interval.of(proportion_interval(int(h.sum()), len(h))).to_json()
    return out | {"hits": int(h.sum()), "n": len(h), "label_ties": int((lab == 0).sum()),
                  "undecided": int((side(pred)[lab != 0] == 0).sum())}


def greedy_select(scores: np.ndarray, label: np.ndarray, max_k: int, baseline: int = 0) -> list[dict[str, Any]]:
    """ICA's selection, greedy: add the principle that most raises the list's agreement with ``label``
    on these pairs, until ``max_k`` or until no principle raises it strictly (ties: the earlier row); the
    first must agree with more than ``baseline`` pairs (the no-principle predictor's hits; 0 = an empty list's).
    Each step: ``{"index", "hits", "n"}`` (the list's agreement after adding it)."""
    scores = np.asarray(scores, float)
    n = int((side(label) != 0).sum())
    chosen: list[int] = []
    steps: list[dict[str, Any]] = []
    best = baseline
    while len(chosen) < min(max_k, len(scores)) and n:
        gains = [(-1 if i in chosen else int(hits(list_vote(scores, [*chosen, i]), label).sum())) for i in range(len(scores))]
        top = int(np.argmax(gains))  # the first of equals
        if gains[top] <= best:
            break
        best = gains[top]
        chosen.append(top)
        steps.append({"index": top, "hits": best, "n": n})
    return steps


def paired_difference(pred_a: np.ndarray, pred_b: np.ndarray, label: np.ndarray, seed: int,
                      n_boot: int = 2000) -> dict[str, Any]:
    """Agreement of ``pred_a`` minus that of ``pred_b`` on the same pairs, bootstrap 95% interval over pairs."""
    d = hits(pred_a, label) - hits(pred_b, label)
    return Interval.of(bootstrap_interval(d.astype(float).tolist(), n_resamples=n_boot, seed=seed), n=len(d)).to_json()


def rate(h: int, n: int) -> float | None:
    return finite(h / n) if n else None


def not_learned(stats: dict[str, Any], reason: str) -> dict[str, Any]:
    """An n/a learned list's agreement or difference: the pairs it would cover, no figure, the reason."""
    return stats | {k: None for k in ("value", "low", "high", "hits", "undecided") if k in stats} | {"na": reason}


def why_no_list(n_candidates: int, train_label: np.ndarray) -> str | None:
    """Why a scope cannot select a list at all (None when it can)."""
    if not n_candidates:
        return "no candidate principle"
    decided = int((side(train_label) != 0).sum())
    if decided < MIN_TRAIN_PAIRS:
        return f"{decided} decided training pair(s), fewer than {MIN_TRAIN_PAIRS}: too few to select a principle on"
    return None


def explain_scopes(scores: np.ndarray, label: np.ndarray, groups: Sequence[str], held: np.ndarray,
                   roles: dict[str, list[int]], max_k: int, seed: int, n_boot: int = 2000) -> dict[str, Any]:
    """Per scope (``society``: every pair; then each group, e.g. judge cluster): every candidate's training
    agreement, the greedy list on the training pairs, and three predictors on the held-out pairs — the
    learned list, the ``given`` principles (the constitution the society was given) and the ``none``
    principle (no principle) — with the learned list's paired differences from the other two. A scope
    that learns no list (:func:`why_no_list`, or no candidate beats the no-principle baseline on its
    training pairs) has ``na`` set and null learned figures.

    ``roles``: row indices of ``scores`` that are ``candidate``, ``given`` and ``none``."""
    scores, label, held = np.asarray(scores, float), np.asarray(label, float), np.asarray(held, bool)
    groups = np.asarray(groups, dtype=object)
    cand = roles["candidate"]
    out: dict[str, Any] = {}
    for scope in ["society", *sorted(set(groups.tolist()))]:
        mask = np.ones(len(label), bool) if scope == "society" else groups == scope
        tr, he = mask & ~held, mask & held
        na = why_no_list(len(cand), label[tr])
        baseline = int(hits(list_vote(scores, roles["none"])[tr], label[tr]).sum())
        steps = greedy_select(scores[cand][:, tr], label[tr], max_k, baseline) if not na else []
        if not na and not steps:
            na = (f"no candidate agrees with more of the {int((side(label[tr]) != 0).sum())} decided training pairs "
                  f"than no principle's {baseline}")
        chosen = [cand[s["index"]] for s in steps]
        preds = {"learned": list_vote(scores, chosen), "given_constitution": list_vote(scores, roles["given"]),
                 "no_principle": list_vote(scores, roles["none"])}
        methods = {m: {"rows": rows, "train": agreement(p[tr], label[tr]), "held_out": agreement(p[he], label[he])}
                   for (m, p), rows in zip(preds.items(), (chosen, roles["given"], roles["none"]), strict=True)}
        minus = {m: paired_difference(preds["learned"][he], preds[m][he], label[he], seed, n_boot)
                 for m in ("given_constitution", "no_principle")}
        if na:
            methods["learned"] |= {k: not_learned(methods["learned"][k], na) for k in ("train", "held_out")}
            minus = {m: not_learned(v, na) for m, v in minus.items()}
        out[scope] = {
            "na": na,
            "candidates": {i: agreement(scores[i, tr], label[tr]) for i in cand},
            "steps": [{"row": cand[s["index"]], "train_agreement": rate(s["hits"], s["n"])} for s in steps],
            "methods": methods,
            "learned_minus": minus,
            "pairs": {"train": int(tr.sum()), "held_out": int(he.sum())},
        }
    return out
