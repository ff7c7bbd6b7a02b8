"""Progress bars written to a log (stderr not a terminal) redraw every 30 s, not ten times a second."""

from __future__ import annotations

import io
import sys

from sim.run.progress import LOG_INTERVAL_S, bar
from sim.society.progress import StepBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_on_a_terminal_keeps_its_interval_and_one_in_a_log_slows_down(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    with bar(total=3, mininterval=1.0) as b:
        assert b.mininterval == 1.0
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with bar(total=3) as b:
        assert b.mininterval == LOG_INTERVAL_S


def test_a_society_step_bar_in_a_log_slows_down_too(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with StepBar(total=0, unit="call", mininterval=1.0, expected=(10, 1.0)) as b:
        assert b.mininterval == LOG_INTERVAL_S and b.total == 10
    monkeypatch.setattr(sys, "stderr", Terminal())
    with StepBar(total=0, unit="call", mininterval=1.0) as b:
        assert b.mininterval == 1.0
