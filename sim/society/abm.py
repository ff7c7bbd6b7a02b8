"""mesa, imported without its process-wide side effect.

mesa 3.3 sets multiprocessing's start method to "spawn" when imported (``mesa/batchrunner.py``; mesa PR
#3073 moves the call into ``batch_run``, unreleased in 3.3.x). Under "spawn" every multiprocessing lock
is a named semaphore watched by a resource-tracker process; tqdm's default write lock becomes one, and a
run ended by a signal (a timeout, a kill) leaves the tracker's "There appear to be 1 leaked semaphore
objects" warning on the screen. agora never calls ``batch_run``: the start method in force before the
import is put back.
"""

import multiprocessing

_before = multiprocessing.get_start_method(allow_none=True)
import mesa  # noqa: E402  (after reading the start method it changes)

multiprocessing.set_start_method(_before, force=True)

__all__ = ["mesa"]
