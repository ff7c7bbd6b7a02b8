"""The command line's pieces below ``sim/cli.py`` (which parses and dispatches): one-line errors, sweep
checks, run folders, and the commands with their own argument lists."""
