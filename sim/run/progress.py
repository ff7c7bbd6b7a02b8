"""Progress bars (tqdm) that suit where they are written: :func:`bar`."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

# written to a file or a pipe (nohup, a SLURM or Ray log, CI), a bar's frames pile up in the log
LOG_INTERVAL_S = 30.0


def for_log(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A bar's tqdm arguments, with ``mininterval`` raised to :data:`LOG_INTERVAL_S` when stderr is not a terminal:
    a log then keeps one frame per 30 s of a long stage, not one or ten a second."""
    isatty = getattr(sys.stderr, "isatty", None)
    if not kwargs.get("disable") and not (isatty is not None and isatty()):
        return kwargs | {"mininterval": max(float(kwargs.get("mininterval", 0.1)), LOG_INTERVAL_S)}
    return kwargs


def bar(**kwargs: Any) -> tqdm:
    """``tqdm(**kwargs)`` as :func:`for_log` sets it."""
    return tqdm(**for_log(kwargs))
