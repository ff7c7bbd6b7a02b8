"""Build the bundled default dilemma set from the shared data (run by hand when it changes).

The default set mixes two licensed sources:
- MoralChoice high-ambiguity scenarios (Scherrer et al. 2023, MIT): both actions break some rule
  and annotators disagree, so they are genuine dilemmas for debate.
- DailyDilemmas (Chiu, Jiang & Choi 2024, CC-BY-4.0): everyday situations ending in a yes/no
  question; action A is "yes", action B is "no".
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from scenarios.dilemma import BUNDLED

_HARMS = ("death", "pain", "disable", "freedom", "pleasure", "deceive", "cheat", "break_promise",
          "break_law", "duty")


def _moralchoice(path: Path, n: int) -> list[dict]:
    rows = list(csv.DictReader(path.open(newline="", encoding="utf-8")))
    # Hand-written scenarios first; drop generated ones whose text carries annotation leftovers.
    rows = [r for r in rows if "No Agreement" not in r["context"]]
    rows.sort(key=lambda r: (r["generation_type"] != "Hand-Written", r["scenario_id"]))
    # One scenario per generation rule first, so the set spans all ten rules.
    by_rule: dict[str, list[dict]] = {}
    for r in rows:
        by_rule.setdefault(r["generation_rule"], []).append(r)
    picked: list[dict] = []
    while len(picked) < n:
        for rule in sorted(by_rule):
            if by_rule[rule] and len(picked) < n:
                picked.append(by_rule[rule].pop(0))
    return [
        {
            "id": r["scenario_id"],
            "situation": r["context"],
            "action_a": r["action1"],
            "action_b": r["action2"],
            "values_a": [f"causes {h}" for h in _HARMS if r[f"a1_{h}"] == "Yes"],
            "values_b": [f"causes {h}" for h in _HARMS if r[f"a2_{h}"] == "Yes"],
            "topic": r["generation_rule"],
            "source": "MoralChoice high-ambiguity (Scherrer et al. 2023, MIT)",
        }
        for r in picked
    ]


def _daily(path: Path, n: int) -> list[dict]:
    rows = list(csv.DictReader(path.open(newline="", encoding="utf-8")))[:n]
    return [
        {
            "id": f"DD_{r['idx']}",
            "situation": r["dilemma_situation"],
            "action_a": "Yes, do it.",
            "action_b": "No, do not do it.",
            "topic": r["basic_situation"].rstrip("."),
            "source": "DailyDilemmas (Chiu, Jiang & Choi 2024, CC-BY-4.0)",
        }
        for r in rows
    ]


def build_default(shared_data: Path, n_moralchoice: int = 40, n_daily: int = 24) -> list[dict]:
    return _moralchoice(shared_data / "moralchoice" / "moralchoice_high_ambiguity_dev.csv", n_moralchoice) + _daily(
        shared_data / "daily_dilemmas" / "dilemma_dev.csv", n_daily
    )


if __name__ == "__main__":
    import sys

    records = build_default(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
    with BUNDLED["default"].open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} dilemmas to {BUNDLED['default']}")
