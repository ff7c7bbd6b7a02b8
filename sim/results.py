"""Typed results: what a run's stages return and what its ``summary.json`` holds, as records.

- :class:`~alignment.metrics.Interval` (an estimate, its bounds, its n, or why it is n/a) is defined beside
  :class:`~alignment.metrics.NA` in the statistics that make both (``alignment/`` computes intervals and cannot
  import ``sim``); it is re-exported here. :func:`pick` is the one way to take a figure into a headline.
- :class:`Summary`: what every run's ``summary.json`` holds; each experiment's summary extends it. Its
  :meth:`~Summary.to_json` writes the ``summary.json`` shape readers of older runs know, and
  :meth:`~Summary.from_json` reads one back (reports and ``agora-report`` read records, not string keys).
- :class:`Codec`: how a checkpointed stage's result is stored and read back, so a stage may return records
  (``Codec(list[Voice])``) and a resumed run gets the same records as one that never stopped.

Records go to JSON by :func:`to_json` (a record's own ``to_json`` where it has one, else its fields) and come
back by :func:`from_json` (guided by the type: dataclasses, ``list[...]``, ``dict[str, ...]``, ``X | None``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from alignment.metrics import NA, Interval, bootstrap_interval, finite_figures, omitted, optional, paired_permutation_test

__all__ = ["NA", "Codec", "Interval", "JSON", "PairedDifference", "Summary", "from_json", "pick", "to_json"]

T = TypeVar("T")
S = TypeVar("S", bound="Summary")


def pick(figure: Interval | Mapping[str, Any]) -> Interval:
    """A figure as a run's headline shows it: its value, its bounds and why it is n/a (not its n or other
    fields). ``figure``: an :class:`Interval` (or a subclass) or its ``summary.json`` form."""
    i = figure if isinstance(figure, Interval) else Interval.from_json(figure)
    return Interval(value=i.value, low=i.low, high=i.high, reason=i.reason)


@dataclass(frozen=True, kw_only=True)
class PairedDifference(Interval):
    """A mean paired difference (per dilemma, say) with its bootstrap interval, ``n`` pairs, and the two-sided
    sign-flip permutation p that it is zero.

    Attributes:
        permutation_p: the p-value (None: n/a).
        permutation_p_na: why the p-value is n/a (None when it is computable).
    """

    permutation_p: float | None = None
    permutation_p_na: str | None = optional()

    @classmethod
    def of_differences(cls, differences: Sequence[float], *, seed: int, n_resamples: int = 2000,
                       with_n: bool = True) -> PairedDifference:
        """Interval over the differences (:func:`~alignment.metrics.bootstrap_interval`) and their permutation p;
        ``with_n``: record their number (a figure published without it keeps its ``summary.json`` keys)."""
        d = list(differences)
        p = finite_figures(permutation_p=paired_permutation_test(d, seed=seed))
        return cls.of(bootstrap_interval(d, n_resamples=n_resamples, seed=seed), n=len(d) if with_n else None,
                      permutation_p=p["permutation_p"],
                      permutation_p_na=p.get("permutation_p_na"))


# -- records <-> JSON ----------------------------------------------------------------------------------------
def to_json(value: Any) -> Any:
    """``value`` as JSON-ready data: a record by its own ``to_json`` or field by field, containers item by item."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        own = getattr(value, "to_json", None)
        return own() if own is not None else fields_json(value)
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def fields_json(record: Any) -> dict[str, Any]:
    """A record's fields as JSON-ready data (what a record's own ``to_json`` starts from)."""
    return {f.name: to_json(v) for f in dataclasses.fields(record) if not omitted(f, v := getattr(record, f.name))}


def from_json(tp: Any, data: Any) -> Any:
    """``data`` (as :func:`to_json` wrote it) read back as ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or data is None:
        return data
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        records = [a for a in kinds if dataclasses.is_dataclass(a)]
        if isinstance(data, Mapping) and records:
            return from_json(records[0], data)
        return from_json(next((a for a in kinds if not dataclasses.is_dataclass(a)), Any), data)
    if origin in (list, Sequence, tuple):
        item = args[0] if args else Any
        out = [from_json(item, v) for v in data]
        return tuple(out) if origin is tuple else out
    if origin in (dict, Mapping):
        value = args[1] if len(args) == 2 else Any
        return {k: from_json(value, v) for k, v in data.items()}
    if dataclasses.is_dataclass(tp):
        return tp.from_json(data) if hasattr(tp, "from_json") else fields_from_json(tp, data)
    return data


def fields_from_json(cls: type[T], data: Mapping[str, Any]) -> T:
    """A record from its fields' JSON (keys it lacks take the field's default; keys it does not know are left)."""
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: from_json(hints[f.name], data[f.name]) for f in dataclasses.fields(cls)  # type: ignore[call-arg]
                  if f.name in data and f.init})


@dataclass(frozen=True)
class Codec:
    """How a stage's result is stored in the checkpoint (JSON) and read back: as ``type`` (e.g. ``list[Voice]``,
    ``dict[str, Interval]``); ``Any`` keeps the JSON as it is (:data:`JSON`)."""

    type: Any = Any

    def encode(self, value: Any) -> Any:
        return to_json(value)

    def decode(self, data: Any) -> Any:
        return from_json(self.type, data)


JSON = Codec()


# -- summary.json ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Summary:
    """What every run's ``summary.json`` holds; an experiment's summary extends it with its own figures. The run
    (:class:`sim.run.lifecycle.Run`) fills the fields below when it finishes; an experiment sets its own fields and
    ``headline``.

    Attributes:
        run_id: the run's id (:mod:`sim.run.ids`).
        kind: the experiment's name.
        wall_seconds: wall time over every attempt (resumes included).
        seconds: compute seconds per checkpointed stage (the run's stages, by default).
        headline: the figures ``agora-report`` compares runs by and the console prints (:func:`pick`); a
            society run's are plain numbers.
        label_quality: the label-quality gate's block (None: not measured).
        backend: the backend's name and counters.
        config: the whole config the run ran with.
    """

    run_id: str = ""
    kind: str = ""
    wall_seconds: float | None = None
    seconds: dict[str, float] | None = None
    headline: dict[str, Interval | float | None] = field(default_factory=dict)
    label_quality: dict[str, Any] | None = None
    backend: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The ``summary.json`` contents."""
        return fields_json(self)

    @classmethod
    def from_json(cls: type[S], data: Mapping[str, Any]) -> S:
        """The record of a ``summary.json`` (the base class reads any run's: keys it does not know are left)."""
        return fields_from_json(cls, data)
