"""The feedback store: explicit polars schemas, validation on write, atomic parquet files."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from alignment.preferences import PREFERENCE_SCHEMA, Preference, SchemaError, to_trl, to_trl_chat, trl_ties, validate_preferences
from sim.society.records import STANCE_SCHEMA, TRANSCRIPT_SCHEMA, Message, Stance


def frame(rows: Sequence[Mapping[str, Any]], schema: Mapping[str, pl.DataType], name: str) -> pl.DataFrame:
    """Build a DataFrame with exactly ``schema``'s columns and types, or raise naming the problem."""
    for i, row in enumerate(rows):
        extra, missing = set(row) - set(schema), set(schema) - set(row)
        if extra or missing:
            raise SchemaError(f"{name} row {i}: unexpected columns {sorted(extra)}, missing {sorted(missing)}")
    try:
        return pl.DataFrame(list(rows), schema=dict(schema), strict=True)
    except (TypeError, pl.exceptions.PolarsError) as exc:
        raise SchemaError(f"{name}: {exc}") from None


def record_frame(records: Sequence[Any], schema: Mapping[str, pl.DataType], name: str) -> pl.DataFrame:
    """:func:`frame` for dataclass records whose fields are ``schema``'s columns, built a column at a time:
    the same frame without a dict per row (a 100,000-agent step makes ~850,000 rows)."""
    if records:
        fields = tuple(f.name for f in dataclasses.fields(records[0]))
        if fields != tuple(schema):
            raise SchemaError(f"{name}: record fields {list(fields)} are not the schema's columns {list(schema)}")
    try:
        return pl.DataFrame({k: [getattr(r, k) for r in records] for k in schema}, schema=dict(schema), strict=True)
    except (TypeError, pl.exceptions.PolarsError) as exc:
        raise SchemaError(f"{name}: {exc}") from None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask, read from /proc on Linux; elsewhere ``os.umask`` sets it and swaps it straight back
    (process-wide, so a file another thread made in that instant could get 022: the /proc read avoids that)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, rename: readers see old or new, never half.

    ``mkstemp`` makes the temp file 0600 whatever the umask; it gets the mode ``open()`` would have given
    (0o666 & ~umask: 0644 under umask 022), so a run's outputs are as readable as its log to colleagues.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            raise named(exc, path) from exc
        raise
    _fsync_dir(path.parent)


def named(exc: OSError, path: Path) -> OSError:
    """``exc`` naming ``path`` when it names no file: a failed write, flush or fsync (``ENOSPC``, ``EIO``)
    carries only an errno, and "[Errno 28] No space left on device" does not say which file was lost."""
    return exc if exc.filename is not None else OSError(exc.errno, exc.strerror or str(exc), str(path))


def write_parquet(df: pl.DataFrame, path: Path) -> None:
    import io

    buf = io.BytesIO()
    df.write_parquet(buf, compression="zstd", statistics=True)
    atomic_write_bytes(path, buf.getvalue())


def write_json(obj: Any, path: Path) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def feedback_tables(stances: Sequence[Mapping[str, Any]], transcripts: Sequence[Mapping[str, Any]],
                    preferences: Sequence[Mapping[str, Any]]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The three record lists of a society as schema-checked frames (preferences validated)."""
    prefs = frame(preferences, PREFERENCE_SCHEMA, "preferences")
    validate_preferences(prefs)
    return (frame(stances, STANCE_SCHEMA, "stances"), frame(transcripts, TRANSCRIPT_SCHEMA, "transcripts"), prefs)


def record_tables(stances: Sequence[Stance], transcripts: Sequence[Message],
                  preferences: Sequence[Preference]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """:func:`feedback_tables` from a society's records (no dict per row)."""
    prefs = record_frame(preferences, PREFERENCE_SCHEMA, "preferences")
    validate_preferences(prefs)
    return (record_frame(stances, STANCE_SCHEMA, "stances"), record_frame(transcripts, TRANSCRIPT_SCHEMA, "transcripts"),
            prefs)


TRL_FILES = ("preferences_trl.parquet", "preferences_trl_chat.parquet")


def write_feedback(out_dir: Path, stances: pl.DataFrame, transcripts: pl.DataFrame, prefs: pl.DataFrame) -> dict[str, Any]:
    """Write stances, transcripts, preferences and their TRL exports (standard and conversational), each
    atomically; what the exports hold, for ``summary.json``."""
    write_parquet(stances, out_dir / "stances.parquet")
    write_parquet(transcripts, out_dir / "transcripts.parquet")
    write_parquet(prefs, out_dir / "preferences.parquet")
    trl = to_trl(prefs)
    write_parquet(trl, out_dir / TRL_FILES[0])
    write_parquet(to_trl_chat(trl), out_dir / TRL_FILES[1])
    return {"files": list(TRL_FILES), "pairs": len(trl), "ties_left_out": trl_ties(prefs)}
