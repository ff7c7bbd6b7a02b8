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

Held, a stop signal that lands in the loop's own code is recorded (and ``on_signal`` runs: the loop's main task is
cancelled); when the held section ends, the handler it replaced runs with it, outside the loop, as if the signal
came then. One that lands in a task (e.g. inside a model's forward pass) runs its handler at once, as it would
without ``Held``: the run stops as fast as before. A second stop signal runs its handler at once (a second Ctrl-C
is not kept waiting). One that comes while the report is written is logged: the run has finished."""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)
_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep
_LOOP_FILES = (selectors.__file__, socket.__file__, threading.__file__)
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


def in_loop_bookkeeping(frame: FrameType | None) -> bool:
    """Whether a signal handler called in ``frame`` interrupted the event loop's own code (asyncio, the selector,
    its self-pipe) rather than a task's or a callback's: only there may an exception lose a task's wake-up."""
    if frame is None:
        return True
    name = frame.f_code.co_filename
    return name.startswith(_ASYNCIO_DIR) or name in _LOOP_FILES


class Held:
    """``with Held(on_signal):`` stop signals are recorded, and their handlers run when the block ends (see the
    module's docstring). Outside the main thread (where no handler can be set) it does nothing.

    Args:
        on_signal: called when a signal is recorded (the event loop's main task is cancelled). With it, a signal that
            lands outside the loop's own code (:func:`in_loop_bookkeeping`: in a task, a callback, a model's forward
            pass) runs its handler at once, as without ``Held``: only the loop's bookkeeping waits.
        after_success: run a recorded signal's handler when the block ended without an error; False for a block
            whose end means the work is complete (the report): the signal is then logged, not acted on."""

    def __init__(self, on_signal: Callable[[], None] | None = None, after_success: bool = True) -> None:
        self.on_signal, self.after_success = on_signal, after_success
        self.signum: int | None = None
        self._frame: FrameType | None = None
        self._saved: dict[int, Any] = {}  # never cleared: the handlers this section replaced
        self._active = False

    def __enter__(self) -> Held:
        if threading.current_thread() is threading.main_thread():
            for sig in _CANDIDATES:
                handler = signal.getsignal(sig)
                if _stops(handler):
                    self._saved[sig] = handler
                    signal.signal(sig, self._take)
            self._active = bool(self._saved)
        return self

    def _take(self, signum: int, frame: FrameType | None) -> None:
        handler = self._handler(signum)
        if not self._active:  # it came while the section was ending
            handler(signum, frame)
            return
        if self.signum is not None or (self.on_signal is not None and not in_loop_bookkeeping(frame)):
            self._restore()  # the second one, or one where raising is safe: at once, and only once
            self.signum = None
            handler(signum, frame)
            return
        self.signum, self._frame = signum, frame
        if self.on_signal is not None:
            self.on_signal()

    def _handler(self, signum: int) -> Callable[[int, FrameType | None], Any]:
        handler = self._saved.get(signum)
        return handler if callable(handler) else signal.default_int_handler

    def _restore(self) -> None:
        self._active = False
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self._restore()  # first: a signal from here on goes to its own handler, none is lost
        signum, self.signum = self.signum, None
        if signum is None:
            return
        if exc_type is None and not self.after_success:
            log.warning("a stop signal (%s) came while the finished run was written: the run is complete",
                        signal.Signals(signum).name)
            return
        self._handler(signum)(signum, self._frame)  # raises: KeyboardInterrupt, or Submitit's requeue
        if exc_type is None or issubclass(exc_type, asyncio.CancelledError):
            raise KeyboardInterrupt  # a handler that returned (Submitit on a rank other than 0): still stopped
