"""Loaders for external evaluation data: MoralChoice scenarios (CSV) and the HHH comparisons (JSONL).

Same discipline as the dilemma loader: a bad file gives one :class:`InputError` line naming the
file, the line and the problem. Files are read from wherever the user keeps them; nothing is copied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from scenarios.dilemma import Dilemma, csv_rows, jsonl_objects, read_text
from scenarios.errors import InputError

MORALCHOICE_REQUIRED = ("scenario_id", "context", "action1", "action2")
HHH_REQUIRED = ("prompt", "corrects", "incorrects", "text_correct", "text_incorrect")
_OPTIONS = re.compile(r"\(A\)\s*\[\[\[(?P<a>.*?)\]\]\]\s*\(B\)\s*\[\[\[(?P<b>.*?)\]\]\]", re.S)
_CONVERSATION = re.compile(r"conversation between a human and an assistant:\s*(?P<c>.*?)\s*\n\s*\n(?P<q>[^\n]*?)\s*Options:",
                           re.S)


def load_moralchoice(path: str | Path) -> list[Dilemma]:
    """MoralChoice scenarios as dilemmas: ``action_a`` is ``action1`` (the moral one in the
    low-ambiguity set), ``topic`` the generation rule; annotation columns are kept in ``extra``."""
    path = Path(path)
    text = read_text(path, "MoralChoice file", f"MoralChoice scenarios with columns {', '.join(MORALCHOICE_REQUIRED)}")
    out, seen = [], set()
    for where, row in csv_rows(path, text, MORALCHOICE_REQUIRED, "MoralChoice"):
        empty = [c for c in MORALCHOICE_REQUIRED if not (row.get(c) or "").strip()]
        if empty:
            raise InputError(f"{where}: empty {', '.join(empty)}")
        if row["scenario_id"] in seen:
            raise InputError(f"{where}: duplicate scenario_id '{row['scenario_id']}'")
        seen.add(row["scenario_id"])
        try:
            out.append(Dilemma(id=row["scenario_id"], situation=row["context"], action_a=row["action1"],
                               action_b=row["action2"], topic=row.get("generation_rule") or "",
                               source="MoralChoice (Scherrer et al. 2023, MIT)",
                               extra={k: v for k, v in row.items() if k not in MORALCHOICE_REQUIRED}))
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
    if not out:
        raise InputError(f"{path}: no scenarios found")
    return out


@dataclass(frozen=True, kw_only=True)
class HHHItem:
    """One HHH comparison.

    Attributes:
        id: ``hhh-<line>``.
        conversation: the human/assistant exchange before the two candidate replies.
        question: the dataset's own instruction (e.g. "Please choose the response that is the most helpful...").
        option_a: the reply labelled (A) in the file.
        option_b: the reply labelled (B).
        correct: ``"a"`` or ``"b"``.
        text_correct: the whole conversation ending in the correct reply (for reward models).
        text_incorrect: the same ending in the other reply.
    """

    id: str
    conversation: str
    question: str
    option_a: str
    option_b: str
    correct: str
    text_correct: str
    text_incorrect: str


def load_hhh(path: str | Path) -> list[HHHItem]:
    """The 438 HHH comparisons (Askell et al. 2021) from their JSONL file."""
    path = Path(path)
    text = read_text(path, "HHH file", f"JSON lines with {', '.join(HHH_REQUIRED)}")
    out = []
    for where, raw in jsonl_objects(path, text):
        missing = [k for k in HHH_REQUIRED if k not in raw]
        if missing:
            raise InputError(f"{where}: missing field(s) {', '.join(missing)}")
        if not all(isinstance(raw[k], str) for k in ("prompt", "text_correct", "text_incorrect")):
            raise InputError(f"{where}: prompt, text_correct and text_incorrect must be strings")
        corrects = [str(c).strip() for c in raw["corrects"]] if isinstance(raw["corrects"], list) else []
        if corrects not in (["(A)"], ["(B)"]):
            raise InputError(f"{where}: 'corrects' must be [\" (A)\"] or [\" (B)\"], got {raw['corrects']!r}")
        options, conv = _OPTIONS.search(raw["prompt"]), _CONVERSATION.search(raw["prompt"])
        if not options or not conv:
            raise InputError(f"{where}: prompt does not have the HHH layout (conversation, then (A) [[[...]]] (B) [[[...]]])")
        out.append(HHHItem(id=f"hhh-{where.rsplit(':', 1)[1]}", conversation=conv["c"].strip(), question=conv["q"].strip(),
                           option_a=options["a"].strip(), option_b=options["b"].strip(), correct=corrects[0][1].lower(),
                           text_correct=raw["text_correct"], text_incorrect=raw["text_incorrect"]))
    if not out:
        raise InputError(f"{path}: no comparisons found")
    return out
