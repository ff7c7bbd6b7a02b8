"""The ``study`` node of a run's config (``StudyConfig``). An experiment's settings (``study.<key>.*``) live in its
folder (``sim/experiments/<name>/config.py``); the ``experiment=`` presets in ``conf/experiment/`` select them.

Each setting is documented once, in its class; ``sim.config.AgoraConfig`` holds them under ``study``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

MAX_TOKENS = 4096  # new tokens per reply: sim.tokens.* has the same bound (a typo of 48000 would hang a run)


@dataclass(frozen=True)
class StudyConfig:
    """Which experiment a run is, and that experiment's settings: the ``study`` option.

    A registered experiment's node is a subclass holding ``kind`` and ``<key>``: its settings
    (:mod:`sim.experiments.registry` makes it, the CLI stores it as option ``study=<name>``, and
    ``conf/experiment/<name>.yaml`` selects it), so a run's config holds its own experiment's settings only.

    Attributes:
        kind: ``society`` (a society run, or generations with ``alignment.generations``) or an experiment's name
            (the ``experiment=`` presets set it).
    """

    kind: str = "society"
    published_id: ClassVar[bool] = True  # its runs keep the ids published on 2026-12-07 (sim/run/ids.py)

    @property
    def settings_key(self) -> str | None:
        """The ``study.<key>`` that holds this run's own experiment settings (None: it has none)."""
        keys = [f.name for f in fields(self) if f.name != "kind"]
        return keys[0] if len(keys) == 1 else None
