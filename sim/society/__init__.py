"""The Mesa model of a society: citizens, their network, the records they make, and the step that runs them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.society.model import Society

__all__ = ["Society"]


def __getattr__(name: str) -> Any:
    # ``from sim.society import Society`` loads the model (and Mesa) only when asked: the run infrastructure
    # imports sim.society.records, which needs neither
    if name == "Society":
        from sim.society.model import Society

        return Society
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
