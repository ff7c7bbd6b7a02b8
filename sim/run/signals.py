"""Stop signals taken where a run can stop: :class:`Held`.

A stop signal's handler (Ctrl-C, the SIGTERM that ``agora`` treats alike, Submitit's preemption signal) raises
wherever the main thread happens to be. Two places cannot take that:

- the event loop's own bookkeeping. An exception raised between a handle leaving the loop's ready queue and
  running it loses the wake-up of the task it was for; that task then never ends, and closing the loop (which
  cancels and awaits every task) waits for ever. Seen: a Submitit point requeued on its preemption signal hung
  in ``asyncio.Runner.close`` (1 in ~35 tries). ``asyncio.Runner`` avoids this for the default SIGINT handler by
  cancelling its main task instead; :class:`Held` does the same for every stop handler.
- C code that replaces a pending exception with its own: matplotlib's affine-matrix converter turned a
  requeue's ``SystemExit`` raised mid-plot into ``ValueError: Invalid affine transformation matrix``, and the
  point failed. The report is therefore written with stop signals held.

Held, a stop signal is recorded (and, where given, ``on_signal`` runs: the loop's main task is cancelled); when
the held section ends, the handler it replaced runs with it, outside the loop, as if the signal came then. A
second stop signal while one is held runs its handler at once (a second Ctrl-C is not kept waiting)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

_CANDIDATES = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, n))


def _stops(handler: Any) -> bool:
    """Whether ``handler`` stops the run: Python's default Ctrl-C, ``agora``'s own (:mod:`sim.launch`,
    :mod:`sim.commands.errors`), or Submitit's checkpoint-and-requeue. Submitit's SIGTERM handler (it logs and
    ignores the signal, as SLURM's KillWait expects) and any other are left as they are."""
    if handler is signal.default_int_handler:
        return True
    module, name = getattr(handler, "__module__", "") or "", getattr(handler, "__name__", "")
    if module in ("sim.launch", "sim.commands.errors"):
        return True
    return module.startswith("submitit") and name in ("checkpoint_and_try_requeue", "checkpoint_and_exit")


class Held:
    """``with Held(on_signal):`` stop signals are recorded, and their handlers run when the block ends (see the
    module's docstring). Outside the main thread (where no handler can be set) it does nothing."""

    def __init__(self, on_signal: Callable[[], None] | None = None) -> None:
        self.on_signal = on_signal
        self.signum: int | None = None
        self._frame: FrameType | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Held:
        if threading.current_thread() is threading.main_thread():
            for sig in _CANDIDATES:
                handler = signal.getsignal(sig)
                if _stops(handler):
                    self._previous[sig] = handler
                    signal.signal(sig, self._take)
        return self

    def _take(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # the second one: at once
            self._restore()
            self._previous_handler(signum)(signum, frame)
            return
        self.signum, self._frame = signum, frame
        if self.on_signal is not None:
            self.on_signal()

    def _previous_handler(self, signum: int) -> Callable[[int, FrameType | None], Any]:
        handler = self._previous.get(signum) or signal.getsignal(signum)
        return handler if callable(handler) else signal.default_int_handler

    def _restore(self) -> None:
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        handler = self._previous_handler(self.signum) if self.signum is not None else None
        self._restore()
        if handler is not None and self.signum is not None:
            handler(self.signum, self._frame)  # raises: KeyboardInterrupt, or Submitit's requeue
            raise KeyboardInterrupt  # a handler that returned (Submitit on a rank other than 0): still stopped
