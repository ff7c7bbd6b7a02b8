"""Dilemma records and their loaders (JSONL and CSV)."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUIRED = ("id", "situation", "action_a", "action_b")
OPTIONAL = ("values_a", "values_b", "topic", "source")
BUNDLED_DIR = Path(__file__).parent / "data"
BUNDLED = {"default": BUNDLED_DIR / "default_dilemmas.jsonl"}
MAX_FIELD_CHARS = 20_000  # a situation longer than ~5k tokens cannot fit the model's prompt budget


class InputError(ValueError):
    """Bad user input; the message is one line that names the file, the line and the problem."""


@dataclass(frozen=True, kw_only=True)
class Dilemma:
    """A choice between two actions.

    Attributes:
        id: unique within its file.
        situation: the context, in the second person.
        action_a: the first action.
        action_b: the second action.
        values_a: values the first action serves or harms (free text tags).
        values_b: same for the second action.
        topic: a grouping label (e.g. the MoralChoice rule).
        source: where it comes from (data set and licence).
        extra: any other columns of the input file, kept as given.
    """

    id: str
    situation: str
    action_a: str
    action_b: str
    values_a: tuple[str, ...] = ()
    values_b: tuple[str, ...] = ()
    topic: str = ""
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in REQUIRED:
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"'{name}' must be a non-empty string")
            if len(value) > MAX_FIELD_CHARS:
                raise ValueError(f"'{name}' is {len(value):,} characters (limit {MAX_FIELD_CHARS:,})")


def _tags(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return tuple(s.strip() for s in str(value).split(";") if s.strip())


def _record(raw: Mapping[str, Any], where: str) -> Dilemma:
    missing = [c for c in REQUIRED if c not in raw or raw[c] is None]
    if missing:
        raise InputError(f"{where}: missing required column(s) {', '.join(missing)}")
    for c in REQUIRED:
        if not isinstance(raw[c], str | int):
            raise InputError(f"{where}: '{c}' must be text, got {type(raw[c]).__name__}")
    try:
        return Dilemma(
            id=str(raw["id"]),
            situation=str(raw["situation"]),
            action_a=str(raw["action_a"]),
            action_b=str(raw["action_b"]),
            values_a=_tags(raw.get("values_a")),
            values_b=_tags(raw.get("values_b")),
            topic=str(raw.get("topic") or ""),
            source=str(raw.get("source") or ""),
            extra={k: v for k, v in raw.items() if k not in REQUIRED + OPTIONAL},
        )
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such dilemma file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise InputError(f"{path}:{line}: contains a NUL byte (binary file?)")
    if not text.strip():
        raise InputError(f"{path}: empty file, expected dilemmas with columns {', '.join(REQUIRED)}")
    return text


def _jsonl(path: Path, text: str) -> list[Dilemma]:
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{n}: bad JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(raw, dict):
            raise InputError(f"{path}:{n}: expected a JSON object, got {type(raw).__name__}")
        out.append(_record(raw, f"{path}:{n}"))
    return out


def _csv(path: Path, text: str) -> list[Dilemma]:
    try:
        reader = csv.DictReader(text.splitlines(keepends=True))
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise InputError(f"{path}:1: missing required column(s) {', '.join(missing)} (header: {header})")
        out = []
        for row in reader:
            if None in row:
                raise InputError(f"{path}:{reader.line_num}: more fields than the header has")
            out.append(_record(row, f"{path}:{reader.line_num}"))
        return out
    except csv.Error as exc:
        raise InputError(f"{path}: malformed CSV ({exc})") from None


def load_dilemmas(source: str | Path) -> list[Dilemma]:
    """Load dilemmas from a bundled set name (``"default"``) or a ``.jsonl`` / ``.csv`` file.

    Raises:
        InputError: one line naming the file, the line and the problem.
    """
    path = BUNDLED.get(str(source)) or Path(source)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise InputError(f"{path}: unsupported dilemma file type '{suffix}' (use .jsonl or .csv, "
                         f"or a bundled set: {', '.join(BUNDLED)})")
    text = _read_text(path)
    dilemmas = _jsonl(path, text) if suffix == ".jsonl" else _csv(path, text)
    if not dilemmas:
        raise InputError(f"{path}: no dilemmas found")
    seen: dict[str, int] = {}
    for i, d in enumerate(dilemmas):
        if d.id in seen:
            raise InputError(f"{path}: duplicate id '{d.id}' (records {seen[d.id] + 1} and {i + 1})")
        seen[d.id] = i
    return dilemmas
