"""The console scripts' entry points (``pyproject.toml``). Each sets a one-line Ctrl-C (and SIGTERM) first and only
then loads its command: loading ``sim.cli`` takes ~2 s (Hydra, polars, every experiment), and a Ctrl-C in that
window would otherwise print a traceback. A command replaces this handler with its own when its work starts
(``sim.commands.errors.interruptible``); ``agora-report`` keeps it (its writes are atomic). Nothing
here may import more than the standard library."""

from __future__ import annotations

import signal
import sys
from typing import NoReturn


def _start(prog: str, entry: str) -> None:
    def stop(signum: int, frame: object) -> NoReturn:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130)  # not os._exit: a `finally` on the way out (a lock's release) still runs

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    import sim.cli

    getattr(sim.cli, entry)()


def main() -> None:
    _start("agora", "main")


def eval_main() -> None:
    _start("agora-eval", "eval_main")


def report_main() -> None:
    _start("agora-report", "report_main")


def sanity_main() -> None:
    _start("agora-sanity", "sanity_main")


def injection_main() -> None:
    _start("agora-injection", "injection_main")
