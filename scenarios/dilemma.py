"""Dilemma records and their loaders (JSONL and CSV)."""

from __future__ import annotations

import csv
import json
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scenarios.errors import InputError

REQUIRED = ("id", "situation", "action_a", "action_b")
OPTIONAL = ("values_a", "values_b", "topic", "source")
BUNDLED_DIR = Path(__file__).parent / "data"
BUNDLED = {"default": BUNDLED_DIR / "default_dilemmas.jsonl"}
MAX_FIELD_CHARS = 20_000  # a situation longer than ~5k tokens cannot fit the model's prompt budget
MAX_FILE_BYTES = 64 * 2**20  # the largest input shipped (DailyDilemmas, 1,088 dilemmas) is ~1 MB
MAX_DEPTH = 8  # a dilemma record is an object holding text and lists of tags: depth 2
MAX_INT_DIGITS = 64  # Python refuses to parse ints over 4,300 digits with a ValueError of its own




def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be used as text, or None. A lone surrogate (JSON's ``"\\ud800"``, YAML's
    ``"\\ud800"``) is a valid Python string that no encoder accepts: it would fail deep in a backend."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"lone surrogate \\u{ord(value[exc.start]):04x} at character {exc.start} (not valid Unicode)"
    return None


def check_tree(obj: Any, where: str, max_depth: int = MAX_DEPTH) -> None:
    """Refuse nesting deeper than ``max_depth`` and strings (keys included) that are not valid Unicode."""
    todo: list[tuple[Any, int]] = [(obj, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, str):
            problem = text_problem(node)
            if problem:
                raise InputError(f"{where}: {problem}")
        elif isinstance(node, dict | list):
            if depth > max_depth:
                raise InputError(f"{where}: nested deeper than {max_depth} levels")
            items = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            todo.extend((x, depth + 1) for x in items)


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
        texts = {"topic": self.topic, "source": self.source, **{n: getattr(self, n) for n in REQUIRED}}
        texts |= {f"values_{s}[{i}]": v for s in "ab" for i, v in enumerate(getattr(self, f"values_{s}"))}
        for name, value in texts.items():
            if not isinstance(value, str):
                raise ValueError(f"'{name}' must be text, got {type(value).__name__}")
            problem = text_problem(value)
            if problem:
                raise ValueError(f"'{name}': {problem}")


def _is_text(value: Any) -> bool:
    """Text or a whole number (``"id": 7``); never a bool (``true`` is an int in Python)."""
    return isinstance(value, str | int) and not isinstance(value, bool)


def _tags(value: Any, name: str, where: str) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if isinstance(value, str):
        return tuple(s.strip() for s in value.split(";") if s.strip())
    raise InputError(f"{where}: '{name}' must be a list of text or ';'-separated text, got {type(value).__name__}"
                     + (" holding " + ", ".join(sorted({type(v).__name__ for v in value if not isinstance(v, str)}))
                        if isinstance(value, list) else ""))


def _record(raw: Mapping[str, Any], where: str) -> Dilemma:
    missing = [c for c in REQUIRED if c not in raw or raw[c] is None]
    if missing:
        raise InputError(f"{where}: missing required column(s) {', '.join(missing)}")
    for c in (*REQUIRED, "topic", "source"):
        if c in raw and raw[c] is not None and not _is_text(raw[c]):
            raise InputError(f"{where}: '{c}' must be text, got {type(raw[c]).__name__}")
    values_a, values_b = _tags(raw.get("values_a"), "values_a", where), _tags(raw.get("values_b"), "values_b", where)
    try:
        return Dilemma(
            id=str(raw["id"]),
            situation=str(raw["situation"]),
            action_a=str(raw["action_a"]),
            action_b=str(raw["action_b"]),
            values_a=values_a,
            values_b=values_b,
            topic=str(raw.get("topic") or ""),
            source=str(raw.get("source") or ""),
            extra={k: v for k, v in raw.items() if k not in REQUIRED + OPTIONAL},
        )
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None


_NOT_FILES = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
              (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def read_bytes(path: Path, kind: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes, at most ``max_bytes``, or a one-line error: missing, unreadable, not a
    regular file (opened without blocking, so a FIFO cannot hang the run), too large."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError(f"{path}: no such {kind}") from None
    except OSError as exc:
        if exc.errno == getattr(os, "ENXIO", None):  # a FIFO, socket or device that will not open
            raise InputError(f"{path}: not a regular file, cannot be read as a {kind}") from None
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    for test, what in _NOT_FILES:
        if test(mode):
            os.close(fd)
            raise InputError(f"{path}: is {what}, not a {kind}")
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > max_bytes:
        raise InputError(f"{path}: larger than {max_bytes:,} bytes, the most a {kind} may hold")
    return data


def read_text(path: Path, kind: str = "dilemma file", expect: str = f"dilemmas with columns {', '.join(REQUIRED)}",
              max_bytes: int = MAX_FILE_BYTES) -> str:
    """A UTF-8 text file, or a one-line error: missing, unreadable, not a regular file, too large, not
    UTF-8, binary, empty."""
    data = read_bytes(path, kind, max_bytes)
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


class _Refused(ValueError):
    """Raised by the JSON hooks below; caught where the line is known."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Refused(f"duplicate key {k!r}")
        out[k] = v
    return out


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {len(digits.lstrip('-')):,} digits (limit {MAX_INT_DIGITS})")
    return int(digits)


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON")


def json_value(text: str, where: str, max_depth: int = MAX_DEPTH) -> Any:
    """Strict JSON: duplicate keys, NaN/Infinity, integers over ``MAX_INT_DIGITS`` digits, nesting
    deeper than ``max_depth`` and lone surrogates are one-line errors (the stdlib accepts the first
    three, and raises RecursionError or ValueError on the others)."""
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_int=_bounded_int, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: bad JSON ({exc.msg} at column {exc.colno})") from None
    except _Refused as exc:
        raise InputError(f"{where}: bad JSON ({exc})") from None
    except RecursionError:
        raise InputError(f"{where}: bad JSON (nested deeper than {max_depth} levels)") from None
    check_tree(value, where, max_depth)
    return value


def jsonl_objects(path: Path, text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, object)`` per non-blank line; a line that is not a JSON object is a one-line error."""
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        raw = json_value(line, f"{path}:{n}")
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
        twice = sorted({c for c in header if header.count(c) > 1})
        if twice:  # csv.DictReader would keep the last column of a name and drop the others unseen
            raise InputError(f"{path}:1: duplicate column(s) {', '.join(twice)}")
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
