"""Sanity experiment with a known ground truth: does the training stack learn a rule we planted?

Synthetic preferences in the style of Inverse Constitutional AI: for each bundled dilemma, two
answers share a choice and a reason and differ in one closing sentence. The preferred one always
acknowledges that others may reasonably see it differently (the ``multiplex`` principle); the other
dismisses dissent. Evaluation pairs use *different dilemmas and different phrasings* than training
pairs, so accuracy above chance means the reward model learned the rule, not the strings.

Run: ``agora-sanity --out DIR`` (writes ``sanity.json``, ``report.md`` and ``summary.json`` there).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from alignment.config import DPOConfig, RewardConfig
from alignment.preferences import PREFERENCE_SCHEMA
from scenarios.dilemma import load_dilemmas

ACKNOWLEDGE = {
    "train": [
        "I understand that people from other cultures may weigh this differently, and their view deserves respect.",
        "Someone who values tradition might reasonably choose the other option.",
        "Reasonable people can disagree here, and I respect those who would decide otherwise.",
        "Others with different values could see this another way, and that is legitimate.",
        "My family or community might see it differently, and I would listen to them.",
        "I accept that this is a hard call and that another choice can also be defended.",
    ],
    "eval": [
        "I recognise that thoughtful people elsewhere might make the opposite choice for good reasons.",
        "Those who see it differently are not wrong to do so; their perspective matters too.",
        "Different communities would answer this in different ways, and each has a fair point.",
    ],
}
DISMISS = {
    "train": [
        "Anyone who disagrees is simply wrong.",
        "There is no other reasonable view on this.",
        "Only a fool would choose differently.",
        "Other cultures' opinions on this do not matter.",
        "People who think otherwise should be ignored.",
        "This is obvious and not open to debate.",
    ],
    "eval": [
        "Whoever sees it another way is being ridiculous.",
        "No sensible person could possibly disagree with me.",
        "Other viewpoints here are worthless.",
    ],
}
REASONS = ["It protects the people involved.", "It keeps my word.", "It is the honest thing to do.",
           "It avoids harm in the long run.", "It is what I would want done to me."]


def max_pairs() -> int:
    """Most training plus held-out pairs :func:`known_rule_preferences` makes: two per bundled dilemma."""
    return 2 * len(load_dilemmas("default"))


def known_rule_preferences(n_train: int, n_eval: int, seed: int, soft: float = 0.95) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Train and eval pairs (different dilemmas, different closing phrasings). ``soft`` is the label's
    confidence: p_a = soft when A is the acknowledging answer, 1 − soft otherwise."""
    rng = np.random.default_rng(seed)
    dilemmas = load_dilemmas("default")
    order = rng.permutation(len(dilemmas))
    need = n_train + n_eval
    if need > max_pairs():
        raise ValueError(f"at most {max_pairs()} pairs")

    def pairs(split: str, idx: list[int], n: int) -> pl.DataFrame:
        rows = []
        for k in range(n):
            d = dilemmas[idx[k % len(idx)]]
            action = d.action_a if rng.random() < 0.5 else d.action_b
            base = f"{action} {REASONS[int(rng.integers(len(REASONS)))]}"
            good = f"{base} {ACKNOWLEDGE[split][int(rng.integers(len(ACKNOWLEDGE[split])))]}"
            bad = f"{base} {DISMISS[split][int(rng.integers(len(DISMISS[split])))]}"
            a_good = bool(rng.random() < 0.5)
            rows.append({"pref_id": f"sanity-{split}-{k}", "run_id": "sanity", "generation": 0, "step": 0,
                         "dilemma_id": d.id, "prompt": f"{d.situation}\n\nOption A: {d.action_a}\nOption B: {d.action_b}",
                         "response_a": good if a_good else bad, "response_b": bad if a_good else good,
                         "author_a": 0, "author_b": 1, "cluster_a": "", "cluster_b": "", "pair_kind": "synthetic",
                         "judge_id": -1, "judge_cluster": "", "principle_id": "acknowledge_others",
                         "p_a": soft if a_good else 1 - soft, "p_a_presented": None, "p_a_reversed": None,
                         "order_swapped": False, "position_flip": None, "judge_model": "rule",
                         "constitution_version": "known-rule@1", "seed": seed})
        return pl.DataFrame(rows, schema=PREFERENCE_SCHEMA)

    n_train_d = max(1, round(len(dilemmas) * n_train / need))
    train_idx, eval_idx = order[:n_train_d].tolist(), order[n_train_d:].tolist()
    return pairs("train", train_idx, n_train), pairs("eval", eval_idx, n_eval)


def _now(name: str, work: Callable[[], dict]) -> dict:
    return work()


def run_sanity(out_dir: Path, n_train: int = 64, n_eval: int = 32, seed: int = 0,
               reward: RewardConfig | None = None, dpo: DPOConfig | None = None,
               stage: Callable[[str, Callable[[], dict]], dict] = _now) -> dict:
    """Train the reward model, then DPO, on the planted rule; their figures. ``stage(name, work)`` runs each
    training (``reward_model``, ``dpo``): ``agora-sanity`` passes its run's checkpointed stage, so a stopped run
    does not train a finished one again."""
    from alignment.dpo import train_dpo  # torch and transformers: not needed to check the counts
    from alignment.reward import train_reward_model

    train, held = known_rule_preferences(n_train, n_eval, seed)
    # peak rates twice the constant ones they replaced: a cosine schedule's mean rate is about half its peak
    rm = stage("reward_model", lambda: train_reward_model(
        train, held, reward or RewardConfig(epochs=3, batch_size=16, lr=1e-4, seed=seed), out_dir / "reward_model"))
    dp = stage("dpo", lambda: train_dpo(train, held, dpo or DPOConfig(epochs=1, batch_size=8, lr=1e-3, seed=seed),
                                        out_dir / "policy"))
    return {"train_pairs": len(train), "eval_pairs": len(held), "reward_model": rm, "dpo": dp}
