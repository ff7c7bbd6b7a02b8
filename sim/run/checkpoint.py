"""Checkpoint and resume for every kind of run.

A run's progress lives in its output folder, written after every finished unit of work (a society
step, a generation's training, an experiment's stage): ``checkpoint.json`` (small, rewritten
atomically) names the finished stages, whose results sit in ``checkpoint.d/`` (one file each, written
once), and the rows of the society in progress, appended to ``checkpoint.d/rows.jsonl`` (each step
adds only its own rows: a long run writes O(rows) bytes, not O(steps × rows)). ``agora resume=DIR``
rebuilds everything else from the seed and replays finished units, so a run killed at any point ends
with the same outputs as one that never stopped.

Every file is checked before it is trusted: ``checkpoint.json`` carries the SHA-256 of its own body
and of each stage file, and a hash chain over the committed lines of ``rows.jsonl`` (one hash per
line, each over the previous hash and the line, so a step hashes only its own rows). On resume every
file ``checkpoint.json`` references is checked at once, whether or not the resume will read it. A
truncated, flipped, re-encoded or missing file, or a ``checkpoint.json`` missing what a resume needs, is
one :class:`InputError` line naming the file, and nothing in the folder is changed.

A run started without ``resume=`` into a folder that already holds a run follows one policy
(:func:`claim`): its own checkpoint (same run id and kind: a killed run started again, a retried or
requeued sweep point) is resumed, saying so in one line; its own finished run is :class:`RunComplete`
(nothing to do); any other run's checkpoint or finished outputs, or a checkpoint that cannot be read,
is one :class:`InputError` line naming both runs, and nothing in the folder is changed.

Hand-written rather than ``joblib.Memory``: a unit's result must be tied to one run (run id + kind,
refused otherwise), written atomically with the backend's counters and the elapsed time, and read
back identically whether or not the run stopped (every result goes through one JSON round trip).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agents.llm.base import BackendStats
from scenarios.dilemma import read_bytes
from scenarios.errors import InputError
from sim.run import rowlog, store
from sim.run.lock import FolderLock
from sim.run.rowlog import ROW_TABLES, damaged, row_dict, sha256_hex

if TYPE_CHECKING:
    from sim.society.model import Society

CHECKPOINT = "checkpoint.json"
CHECKPOINT_DIR = "checkpoint.d"
MAX_CHECKPOINT_BYTES = 2**30  # checkpoint.json holds counters, RNG states and small extras (rows live in rows.jsonl)
STAGE_FILE = re.compile(r"stage\d{4}\.json")
T = TypeVar("T")
log = logging.getLogger(__name__)


def _body(state: dict[str, Any]) -> bytes:
    return json.dumps(state, allow_nan=True).encode()


def _is_num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _problem(state: dict[str, Any]) -> str | None:
    """What a resume would trip over in a parsed ``checkpoint.json``, or None."""
    types = {"run_id": str, "kind": str, "config": dict, "stages": dict, "seconds": dict, "extra": dict,
             "digests": dict, "wall_seconds": (int, float), "rows": (dict, type(None))}
    for key, t in types.items():
        if key not in state:
            return f"no '{key}'"
        if not isinstance(state[key], t) or isinstance(state[key], bool):
            return f"'{key}' is {type(state[key]).__name__}"
    if not isinstance(state.get("backend_stats", {}), dict):
        return "'backend_stats' is not an object"
    for name, fname in state["stages"].items():
        if not isinstance(fname, str) or not STAGE_FILE.fullmatch(fname) or not isinstance(state["digests"].get(fname), str):
            return f"stage '{name}' names no checked stage file"
        if not _is_num(state["seconds"].get(name)):
            return f"stage '{name}' has no compute time"
    rows = state["rows"]
    if rows is not None:
        counts = rows.get("counts")
        if not (isinstance(rows.get("tag"), str) and isinstance(rows.get("sha256"), str)
                and isinstance(rows.get("bytes"), int) and rows["bytes"] >= 0 and isinstance(counts, dict)
                and set(counts) == set(ROW_TABLES) and all(isinstance(v, int) and v >= 0 for v in counts.values())):
            return "'rows' is not {tag, bytes, counts, sha256}"
    return None


def read_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The checkpoint of an unfinished run, checked against its own digest and for every key a resume
    reads; or a one-line error saying why there is none."""
    ckpt = run_dir / CHECKPOINT
    if not ckpt.is_file():
        done = (run_dir / "summary.json").is_file()
        raise InputError(f"{run_dir}: " + ("run already complete (summary.json present), nothing to resume" if done
                                           else f"no {CHECKPOINT} (it is written after each finished step or stage)"))
    data = read_bytes(ckpt, "checkpoint", MAX_CHECKPOINT_BYTES)
    try:
        state = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise damaged(ckpt, f"not valid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise damaged(ckpt, f"bad JSON: {exc.msg} at byte {exc.pos}") from None
    except (ValueError, RecursionError) as exc:
        raise damaged(ckpt, f"bad JSON: {type(exc).__name__}") from None
    if not isinstance(state, dict):
        raise damaged(ckpt, f"expected a JSON object, got {type(state).__name__}")
    digest = state.pop("digest", None)
    if digest is None and "digests" not in state:  # the format before checksums (2026-11-29) had neither key
        raise InputError(f"{ckpt}: this checkpoint predates checksummed checkpoints (agora before 2026-11-29) and "
                         "cannot be resumed by this version: start the run again without resume= (the same config and seed "
                         "give the same outputs), or resume it with the agora version that wrote it")
    if digest != sha256_hex(_body(state)):
        raise damaged(ckpt, "no digest" if digest is None else "its contents do not match their SHA-256")
    problem = _problem(state)
    if problem:
        raise damaged(ckpt, problem)
    return state


class RunComplete(InputError):
    """The folder already holds this very run, finished: there is nothing to do (``agora`` exits 0)."""


def _finished_run(run_dir: Path) -> tuple[str, str, dict[str, Any]] | None:
    """``(run_id, kind, config)`` of the finished run in ``run_dir`` (its ``summary.json``), ``("?", "?", {})`` when
    that file names none, or None when there is no ``summary.json``."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    try:
        summary = json.loads(read_bytes(path, "summary", MAX_CHECKPOINT_BYTES))
    except (InputError, OSError, ValueError, RecursionError):
        summary = None
    if not isinstance(summary, dict) or not all(isinstance(summary.get(k), str) for k in ("run_id", "kind")):
        return "?", "?", {}
    config = summary.get("config")
    return summary["run_id"], summary["kind"], config if isinstance(config, dict) else {}


# settings outside the run id that still change what a finished run reports: rerunning the same run with them
# changed does nothing, and says which differ
_REPORTED_NOT_IN_ID = ("calibration",)


def _differing(stored: dict[str, Any], config: dict[str, Any] | None) -> list[str]:
    if not config:
        return []
    out = []
    for section in _REPORTED_NOT_IN_ID:
        ran, given = stored.get(section) or {}, config.get(section) or {}
        if not isinstance(ran, dict) or not isinstance(given, dict):
            continue
        out += [f"{section}.{k}={json.dumps(ran.get(k))} where this config gives {json.dumps(given.get(k))}"
                for k in sorted(set(ran) | set(given)) if ran.get(k) != given.get(k)]
    return out


def claim(out_dir: Path, run_id: str, kind: str | None, folder: str = "hydra.run.dir",
          config: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The run-folder policy, for a run started without ``resume=`` into ``out_dir``: the checkpoint to go on
    from, None to start afresh, or one line saying why not (``folder``: the option that chose the folder).

    - no finished run and no checkpoint in the folder (a new or empty folder): None;
    - a checkpoint of this run (same run id, and same kind when ``kind`` is given: the config hashes to the
      same id; e.g. a killed run started again, a sweep point retried by Ray or requeued by SLURM): its
      checked state, to resume;
    - this run, finished (``summary.json``): :class:`RunComplete`, naming the label-quality gate's settings that
      differ from ``config`` (the run's config as a dict; they are not in the run id);
    - another run, finished or not, or a checkpoint that cannot be read: :class:`InputError` naming both run
      ids. A finished run's outputs are never mixed with another's, and a checkpoint is never dropped silently.
    """
    this = f"{kind} run {run_id}" if kind else f"run {run_id}"
    finished = _finished_run(out_dir)
    if finished is not None:
        if finished[0] == run_id and kind in (None, finished[1]):
            changed = _differing(finished[2], config)
            also = f"; it ran with {', '.join(changed)}, and stays as it is" if changed else ""
            raise RunComplete(f"{out_dir}: already holds this {this}, finished: nothing to do{also} "
                              f"(remove the folder or choose another {folder} to run it again)")
        raise InputError(f"{out_dir}: holds a finished {finished[1]} run {finished[0]}; this config gives {this}: "
                         f"choose another {folder} (a finished run's folder is not written over)")
    if not (out_dir / CHECKPOINT).exists():
        return None
    try:
        state = read_checkpoint(out_dir)
    except InputError as exc:
        raise InputError(f"{exc} (this config gives {this}; the checkpoint is kept: choose another {folder}, "
                         "or remove it to start afresh)") from None
    if state["run_id"] != run_id or kind not in (None, state["kind"]):
        raise InputError(f"{out_dir}: holds the checkpoint of an unfinished {state['kind']} run {state['run_id']}; "
                         f"this config gives {this}: continue that run with agora resume={out_dir}, or choose another "
                         f"{folder}")
    return state


class Checkpoint:
    """A run's saved progress: named finished stages, the rows of the society in progress, and small
    free-form ``extra`` state.

    Args:
        out_dir: the run's output folder.
        run_id: refuses a checkpoint written by another config.
        kind: ``society``, ``generations`` or an experiment's ``study.kind``.
        config: stored so that ``resume=DIR`` needs nothing else.
        stats: the backend counters; restored on resume, saved with every write.
        resume: load the folder's checkpoint (required to exist) instead of starting afresh.
        folder: the option that chose ``out_dir`` (named when the folder holds another run).

    Takes the folder's lock (:class:`~sim.run.lock.FolderLock`) before reading anything: a second run into the folder,
    or a resume while the run still goes, is an :class:`InputError` naming the holder. Released by
    :meth:`finish`, by :meth:`release` (:class:`sim.run.lifecycle.Run` calls it), or when the process dies.
    """

    def __init__(self, out_dir: Path, run_id: str, kind: str, config: Any, stats: BackendStats | None,
                 resume: bool = False, folder: str = "hydra.run.dir") -> None:
        self.path = out_dir / CHECKPOINT
        self.dir = out_dir / CHECKPOINT_DIR
        self.stats: BackendStats | None = None
        self._t0 = time.perf_counter()
        self.prior_wall = 0.0
        self.resumed = False
        self._saved_stats: dict[str, Any] = {}
        self._values: dict[str, Any] = {}
        self.state: dict[str, Any] = {"run_id": run_id, "kind": kind, "config": dataclasses.asdict(config),
                                      "stages": {}, "seconds": {}, "digests": {}, "extra": {}, "rows": None}
        self._committed: dict[str, Any] | None = None  # the body of the last checkpoint.json written or read
        self._rows_verified: dict[str, Any] | None = None  # the rows state whose log _verify checked on resume
        if resume and not out_dir.is_dir():
            read_checkpoint(out_dir)  # its one-line error; makes no folder
        out_dir.mkdir(parents=True, exist_ok=True)
        self.lock = FolderLock(out_dir)
        try:
            self._load(out_dir, run_id, kind, resume, folder)
        except BaseException:
            self.lock.release()
            raise
        if stats is not None:
            self.track(stats)

    def _load(self, out_dir: Path, run_id: str, kind: str, resume: bool, folder: str) -> None:
        if resume:
            state = read_checkpoint(out_dir)
            if state["run_id"] != run_id or state["kind"] != kind:
                raise InputError(f"{self.path}: checkpoint is for {state['kind']} run "
                                 f"{state['run_id']}, this config gives {kind} run {run_id}")
        else:
            found = claim(out_dir, run_id, kind, folder, self.state["config"])
            if found is None:
                return
            state = found
            log.info("%s holds a checkpoint of this %s run %s (stages done: %d): resuming it", out_dir, kind, run_id,
                     len(state["stages"]))
        for k in ("stages", "seconds", "digests", "extra", "rows"):
            self.state[k] = state[k]
        self.prior_wall = float(state["wall_seconds"])
        self._saved_stats = state.get("backend_stats", {})
        self._committed = state
        self.resumed = True
        self._verify()

    def _verify(self) -> None:
        """Check every file the checkpoint references, whether or not this resume will read it: a damaged
        file is refused in one line naming it before any work (never trusted later, never silently unused)."""
        for fname in self.state["stages"].values():
            self._checked_bytes(fname)
        if self.state["rows"] is not None:
            rowlog.verify(self.dir / "rows.jsonl", self.state["rows"], self.path.name)
            self._rows_verified = dict(self.state["rows"])

    def track(self, stats: BackendStats) -> None:
        """Save these backend counters with every checkpoint; on resume, start them from the saved ones."""
        self.stats = stats
        for k, v in self._saved_stats.items():
            setattr(stats, k, v)

    @property
    def wall_seconds(self) -> float:
        """Seconds spent on the run so far, over every attempt."""
        return self.prior_wall + time.perf_counter() - self._t0

    def done(self, name: str) -> bool:
        return name in self.state["stages"]

    def stage(self, name: str, compute: Callable[[], T], drop: tuple[str, ...] = ()) -> T:
        """``compute()``'s JSON-ready result, computed once per run: replayed from the file when present.
        ``drop``: ``extra`` keys that held the stage's partial progress, removed in the same write."""
        if name not in self.state["stages"]:
            t = time.perf_counter()
            blob = json.dumps(compute(), allow_nan=True)
            fname = f"stage{len(self.state['stages']):04d}.json"
            store.atomic_write_bytes(self.dir / fname, blob.encode())
            self._values[name] = json.loads(blob)  # the same round trip as a resumed run's read
            self.state["stages"][name] = fname
            self.state["seconds"][name] = time.perf_counter() - t
            self.state["digests"][fname] = sha256_hex(blob.encode())
            self.save(**dict.fromkeys(drop))
        if name not in self._values:
            self._values[name] = self._read_stage(self.state["stages"][name])
        return self._values[name]

    def _read_stage(self, fname: str) -> Any:
        return json.loads(self._checked_bytes(fname))

    def _checked_bytes(self, fname: str) -> bytes:
        """A stage file's bytes, refused in one line naming it when unreadable or not the recorded SHA-256."""
        path = self.dir / fname
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise damaged(path, exc.strerror or type(exc).__name__) from None
        if sha256_hex(data) != self.state["digests"][fname]:
            raise damaged(path, f"its contents do not match the SHA-256 that {CHECKPOINT} records")
        return data

    def seconds(self, *prefixes: str) -> float:
        """Compute time of the finished stages whose names start with any of ``prefixes`` (over every attempt)."""
        return sum(v for k, v in self.state["seconds"].items() if k.startswith(prefixes))

    def extra(self, key: str) -> Any:
        return self.state["extra"].get(key)

    # -- rows of the society in progress: an append-only log ---------------------------------------
    def append_rows(self, tag: str, tables: dict[str, Sequence[Any]]) -> None:
        """Log the rows of ``tables`` (dicts or dataclass records) not logged yet (rows are only ever appended);
        a new ``tag`` starts a new log. Takes effect with the next :meth:`save`, which records the log's
        committed length (see :mod:`sim.run.rowlog`)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state["rows"] = rowlog.append(self.dir / "rows.jsonl", self.state["rows"], tag, tables)

    def rows(self, tag: str) -> dict[str, list[dict[str, Any]]]:
        """The committed rows logged for ``tag`` (empty tables if none), checked against the hash chain."""
        return rowlog.read(self.dir / "rows.jsonl", self.state["rows"], tag, self.path.name,
                           verified=self._rows_verified == self.state["rows"])

    def save(self, **extra: Any) -> None:
        """Write ``checkpoint.json`` now (atomic rename); ``extra`` keys replace the stored ones (None drops)."""
        for k, v in extra.items():
            if v is None:
                self.state["extra"].pop(k, None)
            else:
                self.state["extra"][k] = v
        self.state["wall_seconds"] = self.wall_seconds
        if self.stats is not None:
            self.state["backend_stats"] = dataclasses.asdict(self.stats)
        self._write(self.state)

    def _write(self, state: dict[str, Any]) -> None:
        # the digest comes last, over the body before it: read_checkpoint pops it and re-serialises the rest
        body = _body(state)
        store.atomic_write_bytes(self.path, _body({**state, "digest": sha256_hex(body)}))
        self._committed = json.loads(body)

    def save_counters(self) -> None:
        """The run stops on an error: keep this attempt's backend counters and time in the last checkpoint
        written, and nothing else (progress after it, e.g. rows logged but not committed, stays uncommitted).
        Without a checkpoint yet there is nothing to resume, and with unchanged counters (e.g. a damaged
        checkpoint refused on resume) nothing to add: then nothing is written."""
        if self._committed is None or self.stats is None or self.lock.fd is None:
            return
        if dataclasses.asdict(self.stats) == self._committed.get("backend_stats"):
            return
        try:
            self._write({**self._committed, "wall_seconds": self.wall_seconds,
                         "backend_stats": dataclasses.asdict(self.stats)})
        except OSError as exc:  # e.g. the folder became read-only: the previous checkpoint stays as it was
            log.warning("could not save the backend counters of the failed attempt: %s", exc)

    def release(self) -> None:
        """Let another run into the folder (idempotent)."""
        self.lock.release()

    def finish(self) -> None:
        """The run is complete (its ``summary.json`` is written): nothing is left to resume."""
        self.path.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.release()


def advance(society: Society, ckpt: Checkpoint, tag: str) -> None:
    """Run the society's remaining steps, checkpointed after each (``tag`` names which society, so a resumed
    run continues mid-way only in the same one); its rows stay on ``society`` as records."""
    from sim.society.model import step_line  # here, like Society above: reading a checkpoint needs no Mesa

    midway = ckpt.extra("society")
    if midway and midway["tag"] == tag:
        rows = ckpt.rows(tag)
        state = midway["state"]
        missing = sorted(set(society.state_dict(rows=False)) - set(state))
        if missing:
            raise damaged(ckpt.path, f"the saved society state has no {', '.join(repr(k) for k in missing)}")
        try:
            society.load_state_dict(state | rows)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise damaged(ckpt.path, f"the saved society state does not load: {type(exc).__name__}: {exc}") from None
        del rows  # the records hold them now
    while society.steps < society.cfg.sim.steps:
        society.step()
        log.info("%s step %d/%d done: %s", tag, society.steps, society.cfg.sim.steps, step_line(society.step_metrics))
        log.debug("%s step %d metrics: %s", tag, society.steps,
                  {k: round(v, 3) for k, v in society.step_metrics.items() if isinstance(v, float) and not math.isnan(v)})
        ckpt.append_rows(tag, {t: getattr(society, t) for t in ROW_TABLES})
        ckpt.save(society={"tag": tag, "state": society.state_dict(rows=False)})  # a kill from here on loses at most one step


def simulate(society: Society, ckpt: Checkpoint, tag: str) -> dict[str, list[dict[str, Any]]]:
    """:func:`advance`, then the society's feedback rows as JSON-ready dicts. Use as a stage: ``drop=("society",)``."""
    advance(society, ckpt, tag)
    return {t: [row_dict(r) for r in getattr(society, t)] for t in ROW_TABLES}
