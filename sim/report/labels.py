"""What each key of ``summary.json`` and the parquet tables is called on a report page: one table.

Reports show :func:`label` and keep the raw key within reach (a tooltip in HTML, the page's key list in
both formats), so a reader can find the column in the data. ``name[arg]`` keys (``entropy[panel]``,
``agreement[confucian]``, ``last_generation[pds_entropy]``) are labelled from their two parts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from agents.culture import CLUSTER_COUNTRIES
from agents.worldview import cluster_label

LABELS: dict[str, str] = {
    # society: headline, judges, counts, phases
    "stances_per_s": "stances per second",
    "preferences_per_s": "preferences per second",
    "debate_messages_per_s": "debate messages per second",
    "position_flip_rate": "judge position-flip rate",
    "label_informativeness": "label informativeness (mean distance of P(A) from ½)",
    "label_informativeness_mean_abs_p_minus_half": "label informativeness (mean distance of P(A) from ½)",
    "share_confident_labels_abs_gt_0.1": "share of confident labels (P(A) more than 0.1 from ½)",
    "p_a_std": "spread of P(A) over labels (SD)",
    "labels_exactly_half": "labels exactly ½ (ties)",
    "stances_exactly_half": "stances read exactly ½ (ties)",
    "revision_preferred_rate": "share of pairs where the revision is preferred",
    "cluster_share_spread": "spread across clusters of the share choosing A",
    "mean_cluster_share_spread": "spread across clusters of the share choosing A",
    "mean_cluster_p_a_spread": "spread across clusters of mean P(A)",
    "wall_seconds": "wall time (s)",
    "agents": "agents",
    "steps": "steps",
    "stances": "stances (all phases)",
    "initial_stances": "first answers",
    "unparsed_stance_texts": "first answers naming no option",
    "abstentions": "abstentions",
    "transcript_messages": "transcript messages",
    "preferences": "preferences",
    "stance": "first answers",
    "debate": "debate",
    "post_debate": "reading choices after debate",
    "critique": "critique and revision",
    "judge": "judging pairs",
    "initial": "first answer",
    "revised": "after critique",
    # generations
    "generation": "generation",
    "policy_model": "policy model",
    "js_policy_population": "policy vs population, JS distance",
    "js_policy_population_overall": "policy vs population, JS distance of pooled P(A)",
    "pds_entropy": "PDS entropy (whose side the policy takes)",
    "overton_coverage": "Overton coverage (share of the clusters' positions the policy's answers represent)",
    "value_drift_js": "value drift from the previous generation (JS)",
    "consensus_initial": "consensus, first answer",
    "consensus_post_debate": "consensus after debate",
    "consensus_revised": "consensus after critique",
    "judge_alpha_orders": "judge agreement across option orders (Krippendorff α)",
    "rm_eval_accuracy": "reward model held-out accuracy",
    "rm_eval_ece": "reward model calibration error (ECE)",
    "rm_eval_log_loss": "reward model held-out log loss",
    "dpo_eval_margin_before": "DPO held-out margin before",
    "dpo_eval_margin_after": "DPO held-out margin after",
    "dpo_train_margin_after": "DPO training margin after",
        "agreement_by_cluster": "policy agreement with each cluster (1 − JS)",
    # agora-report
    "label": "run",
    "kind": "kind",
    "setting": "setting",
    "runs": "runs",
    "share_a_initial": "share choosing A, first answer",
}

# a registered experiment's figures with a known range ({name: (low, high)}), from its labels.py (add_labels)
RANGES: dict[str, tuple[float, float]] = {}


_BRACKET = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)\[(?P<arg>[^\[\]\s]+)\]$")  # entropy[panel], not "x [95% CI]"
# ``name[arg]`` keys that read better as a phrase than as "name: arg"
TEMPLATES: dict[str, str] = {
    "last_generation": "{}, last generation",
    "agreement": "policy agreement with {}",
    "share_a_initial": "share choosing A at first, {}",
    "share": "share of {}",
    "mean": "mean {}",
}


_CORE = None  # the tables as the core defines them, before any experiment adds to them (remove_labels keeps these)


def remove_labels(keys: set[str], templates: set[str], ranges: set[str]) -> None:
    """Take back what a left-out experiment added (keys the core defines stay)."""
    if _CORE is None:  # nothing was added yet
        return
    for table, gone, core in ((LABELS, keys, _CORE[0]), (TEMPLATES, templates, _CORE[1]), (RANGES, ranges, _CORE[2])):
        for k in gone - set(core):
            table.pop(k, None)


def add_labels(labels: Mapping[str, str], ranges: Mapping[str, tuple[float, float]] = MappingProxyType({}),
               templates: Mapping[str, str] = MappingProxyType({})) -> None:
    """A registered experiment's key names, figure ranges and ``name[arg]`` phrases (``sim/experiments/<name>/labels.py``),
    for every page. A key or template another experiment already names differently is refused: one key, one name."""
    global _CORE
    if _CORE is None:
        _CORE = (dict(LABELS), dict(TEMPLATES), dict(RANGES))
    clash = {k: (old[k], v) for old, new in ((LABELS, labels), (TEMPLATES, templates)) for k, v in new.items()
             if k in old and old[k] != v}
    if clash:
        raise ValueError(f"labels named twice, differently: {clash}")
    LABELS.update(labels)
    RANGES.update(ranges)
    TEMPLATES.update(templates)


def label(key: str, guess: bool = True) -> str:
    """The human name of ``key``; one the table lacks is shown with spaces for underscores (``guess``) or
    as it is (table headers that are already words, run labels such as ``sim.choice_reader=label``)."""
    key = str(key)
    if key in LABELS:
        return LABELS[key]
    m = _BRACKET.match(key)
    if m:
        name, arg = m["name"], m["arg"]
        arg_label = label(arg) if name == "last_generation" else LABELS.get(arg) or (
            cluster_label(arg) if arg in CLUSTER_COUNTRIES else arg)
        return TEMPLATES[name].format(arg_label) if name in TEMPLATES else f"{label(name)}: {arg_label}"
    return key.replace("_", " ") if guess else key


def is_labelled(key: str) -> bool:
    """Whether ``key`` is shown under another name (so the page lists it in its key list)."""
    return label(key) != str(key)


# figures with a known range: shares and probabilities are drawn on it, not zoomed to their spread
_HALF = re.compile(r"informativeness")
_UNIT = re.compile(r"(rate|share|accuracy|consensus|agreement|pds_entropy|spread|coverage)")


def known_range(key: str) -> tuple[float, float] | None:
    """The range a figure can take when it is a share or probability (None: unbounded or signed)."""
    key = str(key)
    m = _BRACKET.match(key)
    if key in RANGES or (m and m["name"] in RANGES):
        return RANGES[key if key in RANGES else m["name"]]  # type: ignore[index]
    if "per_s" in key or "minus" in key or key.startswith(("change[", "fit_change[", "shift[", "rm_shift[")):
        return None
    if _HALF.search(key):
        return (0.0, 0.5)
    return (0.0, 1.0) if _UNIT.search(key) else None
