"""The experiment registry: every registered experiment by name, and the driver that runs one.

An experiment is one folder, ``sim/experiments/<name>/``, whose ``run.py`` decorates its run function::

    @experiment("overton", key="overton", config=OvertonConfig, summary=OvertonSummary, report=overton_report,
                check=check, sections=(...), labels=LABELS, published_id=True)
    def run_overton(run: Run) -> OvertonSummary: ...

and one conf file, ``conf/experiment/<name>.yaml`` (``defaults: [override /study: <name>]``). Nothing else names
it: the folders are found here (every subpackage of ``sim.experiments`` is imported on the first lookup), its
settings node (``study=<name>``) is made here, and the CLI, resume, reports and ``agora-report`` look it up here.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sim.config import AgoraConfig
from sim.study_config import StudyConfig

if TYPE_CHECKING:
    from agents.llm.base import LLMBackend
    from sim.results import Summary
    from sim.run.lifecycle import Run

F = TypeVar("F", bound=Callable[..., Any])


def _no_check(cfg: AgoraConfig) -> None:
    """Nothing to refuse beyond the core's checks."""


def _trains_nothing(cfg: AgoraConfig) -> tuple[bool, bool]:
    return False, False


@dataclass(frozen=True, kw_only=True)
class Experiment:
    """One registered experiment.

    Attributes:
        name: its kind: ``experiment=<name>``, ``study=<name>``, ``study.kind`` and ``summary.json``'s ``kind``.
        key: ``study.<key>`` holding its settings (None: it has none).
        config: its settings dataclass (None with no key).
        summary: its :class:`~sim.results.Summary` subclass (``from_json`` reads its ``summary.json`` back).
        run: runs it: ``run(run: Run) -> summary``.
        report: writes its page from the summary: ``report(out_dir, summary) -> files``.
        check: refuses, before any work, a config that cannot mean anything (:class:`InputError`, one line).
        trains: whether a run of ``cfg`` trains a reward model and whether it DPO-tunes a policy.
        sections: the config sections its report shows (``sim.report.render.config_block``).
        labels: the human names of its keys in reports (``sim.report.labels``).
        ranges: the range of each of its figures that is a share or a probability (plots draw it on that range).
        templates: how its ``name[arg]`` keys read as a phrase (``sim.report.labels.TEMPLATES``).
        console: what ``agora`` prints when a run finishes: ``console(summary_json, out_dir) -> text`` (None: its
            headline figures, one per line).
        gated: its run starts with the label-quality gate (``sim.gate``), as every experiment that reads labels
            should; False for one that reads none.
        published_id: its runs had ids before 2026-12-07, which stay as they were (the shim in :mod:`sim.run.ids`).
        of: the experiment whose settings node it runs with (None: its own, ``study=<name>``). The generations loop
            is a society run with ``alignment.generations > 0`` (:func:`for_config` picks it): no option of its own.
        study: its settings node (a :class:`StudyConfig` subclass), made at registration.
    """

    name: str
    key: str | None
    config: type | None
    summary: type[Summary]
    run: Callable[[Run], Summary]
    report: Callable[[Path, Any], object]
    check: Callable[[AgoraConfig], None] = _no_check
    trains: Callable[[AgoraConfig], tuple[bool, bool]] = _trains_nothing
    sections: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    templates: Mapping[str, str] = field(default_factory=dict)
    console: Callable[[dict[str, Any], Path], str] | None = None
    gated: bool = True
    published_id: bool = False
    of: str | None = None
    study: type[StudyConfig] = StudyConfig


_REGISTRY: dict[str, Experiment] = {}
_NAME = re.compile(r"[a-z][a-z0-9_]*")  # an experiment's name and its settings key
_BROKEN: dict[str, str] = {}  # folder name -> why it does not load
_discovered = False


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_"))


def study_node(name: str, key: str | None, config: type | None, published_id: bool) -> type[StudyConfig]:
    """The ``study`` node of experiment ``name``: ``kind`` (refusing any other) and ``<key>: <config>``."""

    def check_kind(self: StudyConfig) -> None:
        if self.kind != name:
            raise ValueError(f"study.kind={self.kind} does not match the settings of study={name} "
                             f"(experiment={name} sets study.kind itself)")

    fields_: list[Any] = [("kind", str, field(default=name))]
    if key is not None:
        fields_.append((key, config, field(default_factory=config)))
    cls = dataclasses.make_dataclass(f"{_camel(name)}Study", fields_, bases=(StudyConfig,), frozen=True,
                                     namespace={"published_id": published_id, "__post_init__": check_kind})
    cls.__module__ = __name__  # importable as sim.experiments.registry.<Name>Study (see __getattr__): picklable
    return cls


def experiment(name: str, *, key: str | None = None, config: type | None = None, summary: type[Summary],
               report: Callable[[Path, Any], object], check: Callable[[AgoraConfig], None] = _no_check,
               trains: Callable[[AgoraConfig], tuple[bool, bool]] = _trains_nothing, sections: tuple[str, ...] = (),
               labels: Mapping[str, str] | None = None, ranges: Mapping[str, tuple[float, float]] | None = None,
               templates: Mapping[str, str] | None = None, console: Callable[[dict[str, Any], Path], str] | None = None,
               gated: bool = True, published_id: bool = False, of: str | None = None) -> Callable[[F], F]:
    """Register the decorated run function as experiment ``name`` (the attributes: see :class:`Experiment`)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"experiment name {name!r}: lower-case letters, digits and _")
    if (key is None) != (config is None):
        raise ValueError(f"experiment {name}: give key and config together (or neither)")
    if key is not None and (not _NAME.fullmatch(key) or hasattr(StudyConfig, key)):  # kind is one of its attributes
        raise ValueError(f"experiment {name}: key={key!r} must be a lower-case name the study node does not already "
                         "have (kind and the node's own attributes are taken)")

    def register(fn: F) -> F:
        if name in _REGISTRY and _REGISTRY[name].run is not fn:
            raise ValueError(f"experiment {name} is registered twice ({_REGISTRY[name].run.__module__}, {fn.__module__})")
        taken = next((e.name for e in _REGISTRY.values() if key is not None and e.key == key and e.name != name), None)
        if taken is not None:  # study.<key>.* names one experiment's settings (hints, the reference page)
            raise ValueError(f"experiment {name}: key={key!r} is experiment {taken}'s settings key")
        if of is not None and (of not in _REGISTRY or key is not None):
            raise ValueError(f"experiment {name}: of={of} needs {of} registered first, and no settings of its own")
        node = study_node(name, key, config, published_id) if of is None else _REGISTRY[of].study
        from sim.report.labels import add_labels

        try:  # first: a refused registration leaves nothing behind
            add_labels(labels or {}, ranges or {}, templates or {})
        except ValueError as exc:
            owners = sorted(e.name for e in _REGISTRY.values() if set(e.labels) & set(labels or {})
                            or set(e.templates) & set(templates or {}))
            raise ValueError(f"experiment {name}: {exc}, named so by {', '.join(owners) or 'the core'} (the label "
                             "table is shared by every experiment: give a new figure a key of its own)") from None
        _REGISTRY[name] = Experiment(name=name, key=key, config=config, summary=summary, run=fn, report=report,
                                     check=check, trains=trains, sections=sections, labels=dict(labels or {}),
                                     ranges=dict(ranges or {}), templates=dict(templates or {}),
                                     console=console, gated=gated, published_id=published_id, of=of, study=node)
        return fn

    return register


def discover() -> None:
    """Import every experiment folder (each subpackage of ``sim.experiments``), so each registers itself."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import sim.experiments as package

    root = Path(package.__path__[0])
    folders = [info.name for info in pkgutil.iter_modules(package.__path__) if info.ispkg]
    for path in sorted(root.iterdir()):  # a folder of code without __init__.py is not a package: say so
        if path.is_dir() and path.name not in folders and not path.name.startswith(("_", ".")) and any(path.glob("*.py")):
            _BROKEN[path.name] = "it has no __init__.py (an experiment folder is a package that imports its run)"
    # Oldest first: when two folders clash (a name, a settings key, a label), the one changed last is left out,
    # whatever their names; a fresh clone ships none that clash (tests/unit/test_registry.py).
    for name in sorted(folders, key=lambda f: (_changed(root / f), f)):
        try:
            importlib.import_module(f"{package.__name__}.{name}")
        except (Exception, SystemExit) as exc:  # one broken folder must not stop the others (nor --help, nor agora-report)
            leave_out(name, exc)


def _changed(folder: Path) -> float:
    """When the folder's code last changed (its newest file's modification time)."""
    return max((p.stat().st_mtime for p in folder.rglob("*.py")), default=0.0)


def leave_out(folder: str, exc: BaseException) -> None:
    """Drop what experiment folder ``folder`` registered, its labels included, and remember why: it does not load
    (:func:`broken`)."""
    from sim.report.labels import remove_labels

    module = f"sim.experiments.{folder}"
    gone = [n for n, e in _REGISTRY.items() if e.run.__module__ == module or e.run.__module__.startswith(module + ".")]
    removed = [_REGISTRY.pop(n) for n in gone]
    kept = list(_REGISTRY.values())
    remove_labels({k for e in removed for k in e.labels} - {k for e in kept for k in e.labels},
                  {k for e in removed for k in e.templates} - {k for e in kept for k in e.templates},
                  {k for e in removed for k in e.ranges} - {k for e in kept for k in e.ranges})
    why = (str(exc).strip().splitlines() or [""])[0]
    _BROKEN[folder] = f"{type(exc).__name__}: {why}" if why else type(exc).__name__


def broken() -> dict[str, str]:
    """The experiment folders that do not load, each with why (their experiments are left out)."""
    discover()
    return dict(_BROKEN)


def experiments() -> dict[str, Experiment]:
    """Every registered experiment, by name."""
    discover()
    return dict(_REGISTRY)


def get(name: str) -> Experiment | None:
    """The registered experiment ``name`` (None: not registered)."""
    discover()
    return _REGISTRY.get(name)


def for_config(cfg: AgoraConfig) -> Experiment:
    """The registered experiment a config runs: its ``study.kind``, but the generations loop for a society run
    with ``alignment.generations > 0``. Refuses a kind that is not registered (one line)."""
    from scenarios.errors import InputError

    found = get(cfg.study.kind)
    if found is None or found.of is not None:
        raise InputError(f"study.kind '{cfg.study.kind}' is not an experiment (one of {sorted(options())})")
    if found.name == "society" and cfg.alignment.generations > 0:
        return _REGISTRY["generations"]
    return found


def options() -> dict[str, Experiment]:
    """The experiments with their own settings node, ``study=<name>`` (every one but those run ``of`` another)."""
    return {name: e for name, e in experiments().items() if e.of is None}


def study_class(kind: str) -> type[StudyConfig]:
    """The ``study`` node a run of ``kind`` (its ``study.kind``) has (refused in one line: not registered)."""
    found = options().get(kind)
    if found is None:
        from scenarios.errors import InputError

        raise InputError(f"study.kind '{kind}' is not an experiment (one of {sorted(options())})")
    return found.study


def config_part(summary: Summary) -> Any:
    """A report's ``Config`` part: the config sections its experiment registered (``sections=``), folded."""
    from sim.report.render import config_block

    found = get(summary.kind)
    return config_block(summary.config, summary.kind, found.sections if found else ())


def __getattr__(name: str) -> Any:
    """The study nodes made at registration, by class name (how pickle finds them)."""
    discover()
    for e in _REGISTRY.values():
        if e.of is None and e.study.__name__ == name:
            return e.study
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_experiment(cfg: AgoraConfig, out_dir: Path, backend: LLMBackend | None = None) -> dict[str, Any]:
    """Run ``cfg`` into ``out_dir``: its refusals before any work, then ``with Run(...) as run:`` its function,
    then its report and ``summary.json`` (:meth:`~sim.run.lifecycle.Run.finish`), which removes the checkpoint.
    Returns the ``summary.json`` contents."""
    from sim.experiments import preflight
    from sim.run.lifecycle import Run

    exp = for_config(cfg)
    preflight(cfg)
    reward, policy = exp.trains(cfg)
    with Run(cfg, out_dir, backend, kind=exp.name, trains=reward or policy, gated=exp.gated) as run:
        summary = exp.run(run)
        return run.finish(summary, exp.report)
