"""Constitutions: named, versioned lists of critique/revision and judging principles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from scenarios.dilemma import InputError

BUNDLED_DIR = Path(__file__).parent / "data" / "constitutions"


@dataclass(frozen=True, kw_only=True)
class CritiquePrinciple:
    """A critique request and the matching revision request (Constitutional AI's SL stage)."""

    id: str
    critique: str
    revision: str


@dataclass(frozen=True, kw_only=True)
class JudgePrinciple:
    """A comparison principle for judging a pair of answers (the RL feedback stage)."""

    id: str
    text: str


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


def load_constitution(name_or_path: str | Path) -> Constitution:
    """Load a bundled constitution by name, or a YAML/JSON file (JSON is valid YAML)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = BUNDLED_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise InputError(f"unknown constitution '{name_or_path}'; bundled: {', '.join(bundled_constitutions())}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such constitution file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid YAML/JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping with name, version, critique, judge")
    try:
        return Constitution(
            name=str(raw["name"]),
            version=str(raw["version"]),
            description=str(raw.get("description", "")),
            direction=str(raw.get("direction", "")),
            critique=tuple(CritiquePrinciple(**p) for p in raw.get("critique") or []),
            judge=tuple(JudgePrinciple(**p) for p in raw["judge"]),
        )
    except KeyError as exc:
        raise InputError(f"{path}: missing key {exc}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: {exc}") from None
