"""The error every layer raises for bad user input (files, config values, stored checkpoints)."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input; the message is one line that names the file, the line and the problem."""
