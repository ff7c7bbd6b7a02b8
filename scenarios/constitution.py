"""Constitutions: named, versioned lists of critique/revision and judging principles."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from scenarios.dilemma import MAX_FIELD_CHARS, check_tree, read_text, text_problem
from scenarios.errors import InputError

BUNDLED_DIR = Path(__file__).parent / "data" / "constitutions"
MAX_BYTES = 2**20  # the bundled constitutions are ~2 KB; a 1 MiB file already holds ~200 pages of principles
MAX_DEPTH = 8  # a constitution is a mapping of lists of mappings of text: depth 3
MAX_TAG_CHARS = 100  # name and version: ``name@version`` is recorded on every preference row
KEYS = ("name", "version", "description", "direction", "critique", "judge")


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what YAML allows but a constitution never needs: aliases (a
    473-byte alias bomb expands to tens of megabytes), duplicate keys (PyYAML keeps the last one
    silently) and nesting deeper than ``MAX_DEPTH`` (the composer recurses: deep nesting is a
    RecursionError)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed",
                                              self.peek_event().start_mark)
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                              self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class says so
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_text(owner: object, *, empty_ok: tuple[str, ...] = (), limits: dict[str, int] | None = None) -> None:
    """Every field of a principle or constitution that holds text: a string, valid Unicode, within bounds."""
    for f in fields(owner):  # type: ignore[arg-type]
        value = getattr(owner, f.name)
        if isinstance(value, tuple):
            continue
        limit = (limits or {}).get(f.name, MAX_FIELD_CHARS)
        if not isinstance(value, str):
            raise ValueError(f"'{f.name}' must be text, got {_kind(value)}")
        if not value.strip() and f.name not in empty_ok:
            raise ValueError(f"'{f.name}' must be non-empty text")
        if len(value) > limit:
            raise ValueError(f"'{f.name}' is {len(value):,} characters (limit {limit:,})")
        problem = text_problem(value)
        if problem:
            raise ValueError(f"'{f.name}': {problem}")


@dataclass(frozen=True, kw_only=True)
class CritiquePrinciple:
    """A critique request and the matching revision request (Constitutional AI's SL stage)."""

    id: str
    critique: str
    revision: str

    def __post_init__(self) -> None:
        _check_text(self, limits={"id": MAX_TAG_CHARS})


@dataclass(frozen=True, kw_only=True)
class JudgePrinciple:
    """A comparison principle for judging a pair of answers (the RL feedback stage)."""

    id: str
    text: str

    def __post_init__(self) -> None:
        _check_text(self, limits={"id": MAX_TAG_CHARS})


@dataclass(frozen=True, kw_only=True)
class Constitution:
    """A constitution.

    Attributes:
        name: short id, e.g. ``"harmlessness"``.
        version: recorded on every preference row.
        critique: principles sampled once per critique.
        judge: principles sampled once per judgment. Kept apart from ``critique`` as in CAI.
        description: one line for reports.
        direction: a yes/no question naming the property the constitution asks for (e.g. "Is this
            answer free of anything harmful?"); the ablation experiment rates answers with it to see
            whether judging under this constitution moves preferences that way. Empty = none named.
    """

    name: str
    version: str
    critique: tuple[CritiquePrinciple, ...]
    judge: tuple[JudgePrinciple, ...]
    description: str = ""
    direction: str = ""

    def __post_init__(self) -> None:
        _check_text(self, empty_ok=("description", "direction"), limits={"name": MAX_TAG_CHARS, "version": MAX_TAG_CHARS})
        for key in ("name", "version"):
            if not getattr(self, key).isprintable():
                raise ValueError(f"'{key}' must be one line of printable text, got {getattr(self, key)!r}")
        if not self.judge:
            raise ValueError("a constitution needs at least one judging principle")
        for group in (self.critique, self.judge):
            ids = [p.id for p in group]
            if len(ids) != len(set(ids)):
                raise ValueError(f"duplicate principle ids in {ids}")

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"


def bundled_constitutions() -> list[str]:
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))


def _principles(raw: Any, key: str, cls: type, where: Path) -> tuple[Any, ...]:
    """``raw[key]`` as principles: a list of mappings with exactly ``cls``'s keys, each holding text."""
    items = raw.get(key)
    if items is None and key == "critique":
        return ()
    names = [f.name for f in fields(cls)]
    if not isinstance(items, list):
        raise InputError(f"{where}: '{key}' must be a list of {{{', '.join(names)}}} mappings, got "
                         f"{_kind(items)}")
    out = []
    for i, p in enumerate(items):
        if not isinstance(p, dict):
            raise InputError(f"{where}: {key}[{i}] must be a mapping with {', '.join(names)}, got {_kind(p)}")
        missing, unknown = [n for n in names if n not in p], sorted(str(k) for k in p if k not in names)
        if missing or unknown:
            raise InputError(f"{where}: {key}[{i}] " + "; ".join(
                ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(unknown)}"] if unknown else [])))
        if isinstance(p["id"], int) and not isinstance(p["id"], bool):
            p = {**p, "id": str(p["id"])}
        try:
            out.append(cls(**p))
        except ValueError as exc:
            raise InputError(f"{where}: {key}[{i}]: {exc}") from None
    return tuple(out)


def load_constitution(name_or_path: str | Path) -> Constitution:
    """Load a bundled constitution by name, or a YAML/JSON file (JSON is valid YAML).

    Raises:
        InputError: one line naming the file and the problem: unreadable, not a regular file, over
            ``MAX_BYTES``, not YAML, an alias, a duplicate key, deeper than ``MAX_DEPTH``, a
            missing, unknown or mistyped key, text that is empty, too long or not valid Unicode.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = BUNDLED_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise InputError(f"unknown constitution '{name_or_path}'; bundled: {', '.join(bundled_constitutions())}")
    text = read_text(path, "constitution file", "a mapping with name, version, critique, judge", MAX_BYTES)
    try:
        raw = yaml.load(text, Loader=StrictLoader)  # noqa: S506 (StrictLoader is a SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InputError(f"{where}: not valid YAML/JSON ({' '.join(str(exc.problem or exc.context).split())})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML/JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping with name, version, critique, judge")
    check_tree(raw, str(path), MAX_DEPTH)
    unknown = sorted(str(k) for k in raw if k not in KEYS)
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(KEYS)})")
    missing = [k for k in ("name", "version", "judge") if k not in raw]
    if missing:
        raise InputError(f"{path}: missing key {', '.join(repr(k) for k in missing)}")
    for key in ("name", "version"):  # ``version: 1`` or ``1.0`` is fine as YAML writes it; null, lists, bools are not
        if isinstance(raw[key], bool) or not isinstance(raw[key], str | int | float):
            raise InputError(f"{path}: '{key}' must be text, got {_kind(raw[key])}")
    for key in ("description", "direction"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise InputError(f"{path}: '{key}' must be text, got {_kind(raw[key])}")
    critique = _principles(raw, "critique", CritiquePrinciple, path)
    judge = _principles(raw, "judge", JudgePrinciple, path)
    try:
        return Constitution(name=str(raw["name"]), version=str(raw["version"]), description=raw.get("description") or "",
                            direction=raw.get("direction") or "", critique=critique, judge=judge)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
