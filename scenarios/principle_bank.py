"""A bank of real principles for the inverse-constitution experiment: the bundled constitutions' judging
principles and the statements people voted on in Collective Constitutional AI (CCAI, Anthropic and the
Collective Intelligence Project, 2023; its Pol.is export's ``clean_comments.csv``).

The CCAI file carries no licence: it is read where the user keeps it, for measurement only, and never
copied. When the default file is absent the bank is the bundled constitutions alone, and the caller records
that; a path the user set that is not there is an error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from scenarios.constitution import bundled_constitutions, load_constitution
from scenarios.dilemma import csv_rows, read_text
from scenarios.errors import InputError

CHECKOUT = Path(__file__).resolve().parents[1]
CCAI_REQUIRED = ("comment-id", "comment-body")
CCAI_FILE = "clean_comments.csv"  # the export's cleaned statements; a folder given as ccai_path is read for it
DEFAULT_CCAI = f"../shared/data/ccai_polis/{CCAI_FILE}"
ACCEPTED = "1"  # Pol.is moderation: 1 accepted, 0 unmoderated, -1 rejected; clean_comments.csv's 275 are the 1s
CCAI_SOURCE = "Collective Constitutional AI statements (Anthropic & CIP 2023, Pol.is export; no licence: read in place)"
# a statement's line breaks and space runs are one space; a control or separator that Python also counts as
# whitespace (U+2028, NEL, \x1c-\x1f, VT, FF) is kept, for the pages to show (sim/display.py), not turned into one
_SPACES = re.compile(r"[^\S\x0b\x0c\x1c-\x1f\x85\u2028\u2029]+")
NO_PRINCIPLE = "none"  # the bundled constitution whose one principle ("Choose the better answer.") is the baseline


def ccai_principle(statement: str) -> str:
    """A CCAI statement ("The AI should ...") as a judging principle."""
    return f'Choose the answer that better agrees with this statement: "{statement.strip()}"'


def resolve_path(path: str, root: Path | None = None, setting: str = "ccai_path") -> tuple[Path | None, str]:
    """``path`` as a file that exists (relative: from the working directory, then from ``root``; a folder:
    its ``clean_comments.csv``), or None, and a line saying which (for the summary). Only the default path
    may be absent: a path the user set that names no file is an :class:`InputError`. ``setting``: the
    setting's name in those lines (the experiment that reads the file names it)."""
    if not path:
        return None, f"not used ({setting} is empty)"
    p = Path(path).expanduser()
    tried = [p] if p.is_absolute() else list(dict.fromkeys([Path.cwd() / p, (root or CHECKOUT) / p]))
    tried = [t / CCAI_FILE if t.is_dir() else t for t in tried]
    for t in tried:
        if t.is_file():
            return t.resolve(), f"read in place from {t.resolve()}"
    if path != DEFAULT_CCAI:
        raise InputError(f"{setting}={path}: no such file (looked for {', '.join(str(t) for t in tried)})")
    return None, f"absent (looked for {', '.join(str(t) for t in tried)}): the bank is the bundled constitutions only"


def load_ccai(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The CCAI statements as principles ``{id, text, source}``, and how many a ``moderated`` column (the
    raw export's ``comments.csv``) left out as not accepted; a malformed file is one :class:`InputError` line."""
    text = read_text(path, "CCAI statements file", f"a CSV with columns {', '.join(CCAI_REQUIRED)}")
    out, seen, dropped = [], set(), 0
    for where, row in csv_rows(path, text, CCAI_REQUIRED, "CCAI"):
        if "moderated" in row:
            mod = (row["moderated"] or "").strip()
            if mod not in ("1", "0", "-1"):
                raise InputError(f"{where}: moderated must be 1, 0 or -1, got '{mod}'")
            if mod != ACCEPTED:
                dropped += 1
                continue
        body = _SPACES.sub(" ", row["comment-body"] or "").strip(" ")
        if not body.strip():
            raise InputError(f"{where}: empty comment-body")
        if row["comment-id"] in seen:
            raise InputError(f"{where}: duplicate comment-id '{row['comment-id']}'")
        seen.add(row["comment-id"])
        out.append({"id": f"ccai:{row['comment-id']}", "text": ccai_principle(body), "source": "ccai"})
    return out, dropped


def constitution_principles(exclude: tuple[str, ...] = (NO_PRINCIPLE,)) -> list[dict[str, Any]]:
    """Every bundled constitution's judging principles (first occurrence of a text kept)."""
    out, seen = [], set()
    for name in bundled_constitutions():
        if name in exclude:
            continue
        for p in load_constitution(name).judge:
            if p.text.lower() not in seen:
                seen.add(p.text.lower())
                out.append({"id": f"{name}:{p.id}", "text": p.text, "source": f"constitution:{name}"})
    return out


def principle_bank(ccai_path: str, size: int, rng: np.random.Generator,
                   setting: str = "ccai_path") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``size`` principles: half (rounded up) a seeded draw from the bundled constitutions, the rest from the
    CCAI statements when present (else the bundled ones fill the bank as far as they go); and a record of
    where they came from."""
    bundled = constitution_principles()
    path, status = resolve_path(ccai_path, setting=setting)
    ccai, dropped = load_ccai(path) if path is not None else ([], 0)
    n_ccai = min(size // 2, len(ccai))
    n_bundled = min(size - n_ccai, len(bundled))
    n_ccai = min(size - n_bundled, len(ccai))  # bundled ones run out first at large sizes: CCAI fills the rest

    def draw(pool: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
        return [pool[int(i)] for i in sorted(rng.choice(len(pool), size=k, replace=False))] if k else []

    picked = draw(bundled, n_bundled) + draw(ccai, n_ccai)
    record = {"ccai": status, "ccai_statements": len(ccai), "ccai_not_accepted": dropped,
              "pool": len(bundled) + len(ccai), "drawn": len(picked), "drawn_ccai": n_ccai}
    return picked, record
