"""Dilemma records and their loaders (JSONL and CSV)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
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


def read_text(path: Path, kind: str = "dilemma file", expect: str = f"dilemmas with columns {', '.join(REQUIRED)}") -> str:
    """A UTF-8 text file, or a one-line error: missing, unreadable, not UTF-8, binary, empty."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such {kind}") from None
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
        raise InputError(f"{path}: empty file, expected {expect}")
    return text


def jsonl_objects(path: Path, text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, object)`` per non-blank line; a line that is not a JSON object is a one-line error."""
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{n}: bad JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(raw, dict):
            raise InputError(f"{path}:{n}: expected a JSON object, got {type(raw).__name__}")
        yield f"{path}:{n}", raw


def csv_rows(path: Path, text: str, required: Sequence[str], kind: str = "required") -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)`` per CSV record after checking the header has ``required``; ragged rows and
    malformed CSV are one-line errors."""
    try:
        reader = csv.DictReader(text.splitlines(keepends=True))
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise InputError(f"{path}:1: missing {kind} column(s) {', '.join(missing)} (header: {header[:12]})")
        for row in reader:
            if None in row:
                raise InputError(f"{path}:{reader.line_num}: more fields than the header has")
            yield f"{path}:{reader.line_num}", row
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
    text = read_text(path)
    records = jsonl_objects(path, text) if suffix == ".jsonl" else csv_rows(path, text, REQUIRED)
    dilemmas = [_record(raw, where) for where, raw in records]
    if not dilemmas:
        raise InputError(f"{path}: no dilemmas found")
    seen: dict[str, int] = {}
    for i, d in enumerate(dilemmas):
        if d.id in seen:
            raise InputError(f"{path}: duplicate id '{d.id}' (records {seen[d.id] + 1} and {i + 1})")
        seen[d.id] = i
    return dilemmas
