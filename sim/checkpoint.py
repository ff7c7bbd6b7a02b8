"""Checkpoint and resume for every kind of run.

A run's progress lives in its output folder, written after every finished unit of work (a society
step, a generation's training, an experiment's stage): ``checkpoint.json`` (small, rewritten
atomically) names the finished stages, whose results sit in ``checkpoint.d/`` (one file each, written
once), and the rows of the society in progress, appended to ``checkpoint.d/rows.jsonl`` (each step
adds only its own rows: a long run writes O(rows) bytes, not O(steps × rows)). ``agora resume=DIR``
rebuilds everything else from the seed and replays finished units, so a run killed at any point ends
with the same outputs as one that never stopped.

Hand-written rather than ``joblib.Memory``: a unit's result must be tied to one run (run id + kind,
refused otherwise), written atomically with the backend's counters and the elapsed time, and read
back identically whether or not the run stopped (every result goes through one JSON round trip).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agents.llm.base import BackendStats
from scenarios.dilemma import InputError
from sim import store

if TYPE_CHECKING:
    from sim.society import Society

CHECKPOINT = "checkpoint.json"
CHECKPOINT_DIR = "checkpoint.d"
ROW_TABLES = ("stances", "transcripts", "preferences")
T = TypeVar("T")
log = logging.getLogger(__name__)


def read_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The checkpoint of an unfinished run, or a one-line error saying why there is none."""
    ckpt = run_dir / CHECKPOINT
    if not ckpt.is_file():
        done = (run_dir / "summary.json").is_file()
        raise InputError(f"{run_dir}: " + ("run already complete (summary.json present), nothing to resume" if done
                                           else f"no {CHECKPOINT} (it is written after each finished step or stage)"))
    try:
        return json.loads(ckpt.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{ckpt}: unreadable checkpoint ({exc})") from None


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
    """

    def __init__(self, out_dir: Path, run_id: str, kind: str, config: Any, stats: BackendStats | None,
                 resume: bool = False) -> None:
        self.path = out_dir / CHECKPOINT
        self.dir = out_dir / CHECKPOINT_DIR
        self.stats: BackendStats | None = None
        self._t0 = time.perf_counter()
        self.prior_wall = 0.0
        self.resumed = False
        self._saved_stats: dict[str, Any] = {}
        self._values: dict[str, Any] = {}
        self.state: dict[str, Any] = {"run_id": run_id, "kind": kind, "config": dataclasses.asdict(config),
                                      "stages": {}, "seconds": {}, "extra": {}, "rows": None}
        if resume:
            state = read_checkpoint(out_dir)
            if state.get("run_id") != run_id or state.get("kind", "society") != kind:
                raise InputError(f"{self.path}: checkpoint is for {state.get('kind', 'society')} run "
                                 f"{state.get('run_id')}, this config gives {kind} run {run_id}")
            for k in ("stages", "seconds", "extra", "rows"):
                self.state[k] = state.get(k, self.state[k])
            self.prior_wall = float(state.get("wall_seconds", 0.0))
            self._saved_stats = state.get("backend_stats", {})
            self.resumed = True
        if stats is not None:
            self.track(stats)

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
            self.save(**dict.fromkeys(drop))
        if name not in self._values:
            self._values[name] = json.loads((self.dir / self.state["stages"][name]).read_text())
        return self._values[name]

    def seconds(self, *prefixes: str) -> float:
        """Compute time of the finished stages whose names start with any of ``prefixes`` (over every attempt)."""
        return sum(v for k, v in self.state["seconds"].items() if k.startswith(prefixes))

    def extra(self, key: str) -> Any:
        return self.state["extra"].get(key)

    # -- rows of the society in progress: an append-only log ---------------------------------------
    def append_rows(self, tag: str, tables: dict[str, list[dict[str, Any]]]) -> None:
        """Log the rows of ``tables`` not logged yet (rows are only ever appended); a new ``tag`` starts a
        new log. Takes effect with the next :meth:`save`, which records the log's committed length."""
        log_path = self.dir / "rows.jsonl"
        rows = self.state["rows"]
        if rows is None or rows["tag"] != tag:
            rows = {"tag": tag, "bytes": 0, "counts": dict.fromkeys(ROW_TABLES, 0)}
        lines = [json.dumps([t, r], allow_nan=True) + "\n" for t in ROW_TABLES for r in tables[t][rows["counts"][t]:]]
        data = "".join(lines).encode()
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as fh:
            fh.truncate(rows["bytes"])  # drop a tail written after the last committed checkpoint
            fh.seek(rows["bytes"])
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        self.state["rows"] = {"tag": tag, "bytes": rows["bytes"] + len(data),
                              "counts": {t: len(tables[t]) for t in ROW_TABLES}}

    def rows(self, tag: str) -> dict[str, list[dict[str, Any]]]:
        """The committed rows logged for ``tag`` (empty tables if none)."""
        out: dict[str, list[dict[str, Any]]] = {t: [] for t in ROW_TABLES}
        rows = self.state["rows"]
        if rows is None or rows["tag"] != tag:
            return out
        with open(self.dir / "rows.jsonl", "rb") as fh:
            data = fh.read(rows["bytes"])
        for line in data.decode().splitlines():
            t, r = json.loads(line)
            out[t].append(r)
        if {t: len(v) for t, v in out.items()} != rows["counts"]:
            raise InputError(f"{self.dir / 'rows.jsonl'}: holds fewer rows than {self.path} records; cannot resume")
        return out

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
        store.atomic_write_bytes(self.path, json.dumps(self.state, allow_nan=True).encode())

    def finish(self) -> None:
        """The run is complete (its ``summary.json`` is written): nothing is left to resume."""
        self.path.unlink(missing_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def simulate(society: Society, ckpt: Checkpoint, tag: str) -> dict[str, list[dict[str, Any]]]:
    """The society's remaining steps, checkpointed after each (``tag`` names which society, so a resumed
    run continues mid-way only in the same one); its feedback rows. Use as a stage: ``drop=("society",)``."""
    midway = ckpt.extra("society")
    if midway and midway["tag"] == tag:
        society.load_state_dict(midway["state"] | ckpt.rows(tag))
    while society.steps < society.cfg.sim.steps:
        society.step()
        log.info("%s step %d/%d done: %s", tag, society.steps, society.cfg.sim.steps,
                 {k: round(v, 3) for k, v in society.step_metrics.items() if isinstance(v, float) and not math.isnan(v)})
        state = society.state_dict()
        ckpt.append_rows(tag, {t: state.pop(t) for t in ROW_TABLES})
        ckpt.save(society={"tag": tag, "state": state})  # a kill from here on loses at most one step
    return {"stances": society.stances, "transcripts": society.transcripts, "preferences": society.preferences}
