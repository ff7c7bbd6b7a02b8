"""The row log of a society in progress: ``checkpoint.d/rows.jsonl``, one JSON line per row, appended a
step at a time, with a hash chain (one hash per line, over the previous hash and the line) that
``checkpoint.json`` records with the committed length and counts. A step converts, hashes and writes
only its own rows, one at a time (a 100,000-agent step logs 850,000 rows: their JSON is never held
whole), so a step costs O(its rows); reading checks the whole chain before any line is parsed."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from scenarios.errors import InputError
from sim.run import store

ROW_TABLES = ("stances", "transcripts", "preferences")


def damaged(path: Path, problem: str) -> InputError:
    return InputError(f"{path}: damaged checkpoint ({problem}); cannot resume")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@functools.cache
def _field_names(cls: type) -> tuple[str, ...] | None:
    return tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None


def row_dict(r: Any) -> Any:
    """A record as the dict ``dataclasses.asdict`` gives (records are flat: no deep copy needed), or ``r``."""
    names = _field_names(type(r))
    return r if names is None else {n: getattr(r, n) for n in names}


def _lines(path: Path, limit: int) -> Iterator[bytes]:
    """The lines of ``path``'s first ``limit`` bytes, one at a time (the last one without its newline if cut)."""
    with open(path, "rb") as fh:
        while limit > 0:
            line = fh.readline(limit)
            if not line:
                return
            limit -= len(line)
            yield line


def append(path: Path, state: dict[str, Any] | None, tag: str, tables: dict[str, Sequence[Any]]) -> dict[str, Any]:
    """Append the rows of ``tables`` beyond those ``state`` records (a new ``tag`` starts the log afresh)
    and return the state to commit; a tail written after the last commit is dropped first."""
    if state is None or state["tag"] != tag:
        state = {"tag": tag, "bytes": 0, "counts": dict.fromkeys(ROW_TABLES, 0), "sha256": ""}
    size, h = state["bytes"], state["sha256"]
    try:
        with open(path, "ab") as fh:
            fh.truncate(state["bytes"])
            fh.seek(state["bytes"])
            for t in ROW_TABLES:
                for r in itertools.islice(tables[t], state["counts"][t], None):
                    line = (json.dumps([t, row_dict(r)], allow_nan=True) + "\n").encode()
                    h = sha256_hex(h.encode() + line)
                    size += fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:  # e.g. disk full: checkpoint.json still records the last committed length
        if exc.filename is None:
            raise store.named(exc, path) from exc
        raise
    return {"tag": tag, "bytes": size, "counts": {t: len(tables[t]) for t in ROW_TABLES}, "sha256": h}


def verify(path: Path, state: dict[str, Any], recorder: str) -> None:
    """Check the committed part of the log against the hash chain ``state`` records (one pass, a line at a
    time, nothing parsed); a missing, truncated or altered file is :func:`damaged`."""
    try:
        h, size = "", 0
        for line in _lines(path, state["bytes"]):
            h, size = sha256_hex(h.encode() + line), size + len(line)
    except OSError as exc:
        raise damaged(path, exc.strerror or type(exc).__name__) from None
    if size < state["bytes"]:
        raise damaged(path, f"truncated: {size:,} bytes, {recorder} records {state['bytes']:,}")
    if h != state["sha256"]:
        raise damaged(path, f"its rows do not match the hash chain that {recorder} records")


def read(path: Path, state: dict[str, Any] | None, tag: str, recorder: str,
         verified: bool = False) -> dict[str, list[dict[str, Any]]]:
    """The committed rows for ``tag`` (empty tables if none). Read twice, a line at a time: the hash chain
    is checked over the whole log before any line is parsed (unless ``verified`` already, by :func:`verify`
    on this state), and no copy of the file is held."""
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in ROW_TABLES}
    if state is None or state["tag"] != tag:
        return out
    if not verified:
        verify(path, state, recorder)
    try:
        for line in _lines(path, state["bytes"]):
            t, r = json.loads(line)
            out[t].append(r)
    except OSError as exc:
        raise damaged(path, exc.strerror or type(exc).__name__) from None
    if {t: len(v) for t, v in out.items()} != state["counts"]:
        raise damaged(path, f"holds other row counts than {recorder} records")
    return out
