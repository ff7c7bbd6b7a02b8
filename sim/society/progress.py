"""A society step's progress: its bar (model calls sent and answered, an ETA from the previous step's pace) and
the backend wrapper that counts each call on it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from agents.llm.base import GenerateRequest, LLMBackend, ScoreRequest
from sim.run.progress import for_log


class StepBar(tqdm):
    """A society step's progress bar (model calls), its ETA seeded from the previous step's pace.

    Calls count themselves when sent (:class:`Counted`), so early in a step the total holds only the
    first phase's calls, and with batched calls the first answer arrives after a whole batch: tqdm's
    rate from it read ``1/52 [00:31<26:22]``. Every step of a society makes the same calls (the same
    phases over the same agents), so ``expected`` — the previous step's (calls, seconds) — gives the
    total and a prior rate that fades as this step's own calls complete. Without one (a society's
    first step) the ETA shows ``?`` until every call sent so far has been answered: a whole burst
    measured, not its first reply.
    """

    def __init__(self, *args: Any, expected: tuple[int, float] | None = None, **kwargs: Any) -> None:
        self.expected, self.sent, self.burst_seen = expected, 0, False  # before tqdm's first refresh reads them
        if expected:
            kwargs["total"] = expected[0]
        super().__init__(*args, **for_log(kwargs))

    def send(self, n: int) -> None:
        self.sent += n
        self.total = max(self.sent, self.expected[0] if self.expected else 0)

    def update(self, n: float | None = 1) -> bool | None:
        self.burst_seen = self.burst_seen or self.n + (n or 0) >= self.sent
        return super().update(n)

    def measured(self) -> tuple[int, float] | None:
        """This bar's (calls answered, seconds): the next step's ``expected`` (None if it showed nothing)."""
        return None if self.disable or not self.n else (int(self.n), self._time() - self.start_t)

    def pace(self, elapsed: float) -> float:
        """Calls per second for the ETA (0 shows '?'): this step's, with the previous step's weighted by
        the share of calls still to come, ``(n + w C) / (elapsed + w S)``, ``w = 1 - n / C``."""
        if self.expected and self.expected[1] > 0:
            calls, secs = self.expected
            w = max(0.0, 1.0 - self.n / calls)
            return (self.n + w * calls) / (elapsed + w * secs)
        return self.n / elapsed if self.burst_seen and elapsed > 0 else 0.0

    @property
    def format_dict(self) -> dict[str, Any]:
        d = super().format_dict
        return d | {"rate": self.pace(d["elapsed"])}


class Counted:
    """A backend whose calls count themselves on a progress bar: each is counted as sent (:meth:`StepBar.send`)
    and ticks when answered, so the bar's total is what the phases actually sent (no arithmetic to keep in step)."""

    def __init__(self, backend: LLMBackend, bar: StepBar) -> None:
        self.backend, self.bar = backend, bar

    def __getattr__(self, name: str) -> Any:  # name, stats, token_logprobs, ...
        return getattr(self.backend, name)

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[str]:
        self.bar.send(len(requests))
        out = await self.backend.generate(requests)
        self.bar.update(len(requests))
        return out

    async def score_choices(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        self.bar.send(len(requests))
        out = await self.backend.score_choices(requests)
        self.bar.update(len(requests))
        return out
