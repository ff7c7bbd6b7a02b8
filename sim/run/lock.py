"""The run-folder lock: one run at a time writes into an output folder.

An exclusive ``flock`` on ``out_dir/.agora.lock``, taken by :class:`~sim.run.checkpoint.Checkpoint`
and held for the run's life.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime
from pathlib import Path

from scenarios.errors import InputError

LOCK = ".agora.lock"  # held (flock) for a run's life; the kernel drops it when the process dies, even by kill -9


def _holder_line(fd: int) -> str:
    """``pid N, started T`` from an open lock file (what its holder wrote), or what is known."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {int(info['pid'])}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):  # the holder is still writing it
        return "pid unknown"


def _in_use(out_dir: Path, who: str) -> InputError:
    return InputError(f"{out_dir}: in use by another run ({who}); "
                      f"wait for it to end (or kill it) before running or resuming into this folder")


def holder(out_dir: Path) -> str | None:
    """``pid N, started T`` of the running run that holds ``out_dir``'s lock, or None; changes nothing in the folder."""
    try:
        fd = os.open(out_dir / LOCK, os.O_RDONLY)
    except OSError:
        return None  # no lock file: no run holds the folder
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_line(fd)
    finally:
        os.close(fd)  # also drops the probe's shared lock
    return None


def check_unlocked(out_dir: Path) -> None:
    """Raise :class:`InputError` if a running run holds ``out_dir``'s lock; changes nothing in the folder.
    The CLI asks before Hydra writes ``.hydra/`` and ``cli.log`` there (the lock itself is taken later, by
    :class:`Checkpoint`, which is what keeps two runs apart)."""
    who = holder(out_dir)
    if who is not None:
        raise _in_use(out_dir, who)


class FolderLock:
    """An exclusive ``flock`` on ``out_dir/.agora.lock``, which records the holder's pid and start time.

    Released (file removed first, so a finished folder holds only its outputs) by :meth:`release`, or by
    the kernel when the holder dies. A run that opened the file just before it was removed locks an
    unlinked inode: it notices (the path names another inode, or none) and opens it again.
    """

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                err = _in_use(out_dir, _holder_line(fd))
                os.close(fd)
                raise err from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd: int | None = fd
        os.ftruncate(fd, 0)
        started = datetime.now().astimezone().isoformat(timespec="seconds")
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "started": started}).encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # while still held: no other run can have it yet
            os.close(self.fd)
            self.fd = None
