"""``agora-report``, ``agora-sanity`` and ``agora-injection``: commands with their own small argument lists
(argparse, errors as one line like ``agora``'s)."""

from __future__ import annotations

import argparse
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from agents.llm.base import BackendError
from scenarios.errors import InputError
from sim.commands.errors import OneLineParser, fail, interruptible, os_error_line
from sim.display import inert

if TYPE_CHECKING:
    from sim.report.compare import Unfinished


# -- agora-report --------------------------------------------------------------------------------
def report_main(argv: Sequence[str] | None = None) -> None:
    ap = OneLineParser(prog="agora-report", description="Compare finished agora runs or a --multirun sweep side by "
                       "side (report.md, report.html, comparison.parquet, plots); runs that did not finish are listed "
                       "with the reason (failed, killed, interrupted, running, never started).")
    ap.add_argument("dirs", nargs="+", help="run folders, or folders holding runs (a sweep's multirun/... folder)")
    ap.add_argument("-o", "--out", type=_path, help="output folder (default: the one folder given when it holds runs, "
                    "e.g. a sweep; DIR/agora_report for one run folder, whose own report.md stays; ./agora_report for "
                    "several)")
    args = ap.parse_args(argv)
    from sim.report.compare import NotARun, compare, find_runs, plural, unfinished_runs

    out = args.out or default_report_dir([Path(d) for d in args.dirs])
    unfinished = unfinished_runs(args.dirs)
    unfinished += never_started(args.dirs)
    told = (f"{len(unfinished)} did not finish: " + "; ".join(f"{u.folder} ({u.reason})" for u in unfinished)
            if unfinished else "")
    try:
        runs = find_runs(args.dirs)
        path = compare(args.dirs, out, unfinished)
    except (FileNotFoundError, NotARun) as exc:
        fail(f"{exc}" + (f"; {told}" if told else ""), "agora-report", logged=False)
    except OSError as exc:  # the output folder: a file, read-only, disk full
        fail(f"cannot write the report: {os_error_line(exc)}", "agora-report", logged=False)
    print(inert(f"agora-report: compared {plural(len(runs), 'run')} -> {path}" + (f"; {told}" if told else ""),
                newlines=False))


def never_started(dirs: Sequence[str]) -> list[Unfinished]:
    """Points of each ``--multirun`` sweep at or below ``dirs`` (a folder holding Hydra's ``multirun.yaml``) that
    made no folder: the basic launcher stops a sweep at a point that exits, so later points never start. The
    points are the sweep's overrides expanded as Hydra's basic sweeper expands them; a point has started when a
    run folder below the sweep holds its overrides (``.hydra/overrides.yaml``) or is named by its number."""
    import yaml
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from sim.report.compare import Unfinished

    out: list[Unfinished] = []
    for sweep in sorted({m.parent for d in map(Path, dirs) if d.is_dir() for m in d.rglob("multirun.yaml")}):
        try:
            hydra_cfg = OmegaConf.load(sweep / "multirun.yaml").hydra
            if not str(hydra_cfg.sweeper.get("_target_", "")).endswith(".BasicSweeper"):
                continue  # another sweeper (Optuna, Ax...) chooses its points as it goes
            given = hydra_cfg.sweeper.get("params")
            params = [f"{k}={v}" for k, v in (OmegaConf.to_container(given, resolve=False) if given else {}).items()]
            task = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)
            (points,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides([*params, *task]), None)
        except Exception:  # noqa: BLE001 — an unreadable or foreign multirun.yaml: nothing to add
            continue
        started: Counter[tuple[str, ...]] = Counter()  # two points of a sweep may have the same overrides
        for ov in sweep.rglob(".hydra/overrides.yaml"):
            try:
                started[tuple(sorted(map(str, yaml.safe_load(ov.read_text()) or [])))] += 1
            except (OSError, yaml.YAMLError, UnicodeDecodeError):
                continue
        for i, point in enumerate(points):
            if started[tuple(sorted(point))] > 0:
                started[tuple(sorted(point))] -= 1
            elif not (sweep / str(i)).exists():
                out.append(Unfinished(str(sweep / str(i)), " ".join(point), f"never started: no folder; point #{i} of "
                                      f"{len(points)}"))
    return out


def default_report_dir(dirs: list[Path]) -> Path:
    """Where ``agora-report`` writes without ``-o`` (as its ``--help`` says)."""
    if len(dirs) != 1:
        return Path("agora_report")
    return dirs[0] / "agora_report" if (dirs[0] / "summary.json").is_file() else dirs[0]


# -- agora-sanity, agora-injection: measurements with their own small argument lists -------------
def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [``low``, ``high``] (a bad count fails at once, not after the model loads)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:,}, got {value:,}")
        return value
    return parse


def _path(text: str) -> Path:
    """An argparse type: a non-empty path (``Path('')`` is the current folder, never what was meant)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a path, got ''")
    return Path(text)


def _file_path(text: str) -> Path:
    """An argparse type: a file's path; a name ending in a separator means a folder (``Path`` would drop the slash)."""
    if text.strip() and text.rstrip().endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(f"names a file, got the folder '{text}' (e.g. {text.rstrip('/' + os.sep)}/injection.json)")
    return _path(text)


SEED = _int_in(0, 2**32 - 1)  # torch.manual_seed and numpy's legacy seeding take 32-bit seeds


def _writable_output(ap: argparse.ArgumentParser, path: Path, folder: bool) -> None:
    """Fail before the work, in one line, when the result could not be written at the end."""
    try:
        if folder:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.parent.is_dir() or path.is_dir():
            raise NotADirectoryError(2, "no such folder" if not path.parent.is_dir() else "is a folder", str(path))
    except OSError as exc:
        ap.error(f"cannot write {os_error_line(exc)}")


def _measure(prog: str, work: Callable[[], None]) -> None:
    """Run a measurement command's work with its input and backend errors (missing weights, a file it cannot
    write) as one ``PROG: error:`` line, exit 2."""
    from sim.run.checkpoint import RunComplete

    try:
        interruptible(work, prog)
    except RunComplete as exc:  # the same command again after it finished
        print(inert(f"{prog}: {exc}", newlines=False))
    except (InputError, BackendError) as exc:
        fail(str(exc), prog, logged=False)
    except OSError as exc:
        fail(os_error_line(exc), prog, logged=False)


def sanity_main(argv: Sequence[str] | None = None) -> None:
    from alignment.sanity import max_pairs

    ap = OneLineParser(prog="agora-sanity", description="Known-rule sanity check: do the reward model and DPO "
                       "learn a rule planted in synthetic preferences? (a run like every run: report.md, summary.json; "
                       "the same command again resumes a stopped one)")
    ap.add_argument("--out", type=_path, default=Path("outputs/sanity"), help="output folder (default outputs/sanity)")
    ap.add_argument("--train", type=_int_in(2, max_pairs() - 2), default=64, help="training pairs (default 64)")
    ap.add_argument("--eval", type=_int_in(2, max_pairs() - 2), default=32, help="held-out pairs (default 32)")
    ap.add_argument("--seed", type=SEED, default=0)
    args = ap.parse_args(argv)
    if args.train + args.eval > max_pairs():
        ap.error(f"--train + --eval must be <= {max_pairs()} (two pairs per bundled dilemma), got {args.train + args.eval}")
    _writable_output(ap, args.out, folder=True)
    _measure("agora-sanity", lambda: _sanity(args.out, args.train, args.eval, args.seed))


def _sanity(out: Path, train: int, held_out: int, seed: int) -> None:
    from agents.llm.embedded.weights import require_default_weights
    from sim.experiments.entry_points import run_sanity_command, sanity_lines

    require_default_weights(minilm=True)  # the reward model's backbone and the policy, before any training
    print("\n".join(sanity_lines(run_sanity_command(out, train, held_out, seed))))


def injection_main(argv: Sequence[str] | None = None) -> None:
    from scenarios.dilemma import load_dilemmas

    pool = len(load_dilemmas("default"))
    ap = OneLineParser(prog="agora-injection", description="How often does text an agent writes move a judge's "
                       "label? Before and after agora's mitigations (writes --out, and report.md and summary.json beside "
                       "it: its folder is the run's; the same command again resumes a stopped one).")
    ap.add_argument("--dilemmas", type=_int_in(1, pool), default=40,
                    help=f"answer pairs, one per dilemma of the bundled set (default 40, at most {pool})")
    ap.add_argument("--seed", type=SEED, default=0)
    ap.add_argument("--out", type=_file_path, default=Path("outputs/injection/injection.json"),
                    help="output file (default outputs/injection/injection.json); its folder is the run's")
    args = ap.parse_args(argv)
    if args.out == Path("outputs/injection/injection.json"):
        args.out.parent.mkdir(parents=True, exist_ok=True)
    _writable_output(ap, args.out, folder=False)
    _measure("agora-injection", lambda: _injection(args.dilemmas, args.seed, args.out))


def _injection(n: int, seed: int, out: Path) -> None:
    from sim.experiments.entry_points import injection_lines, run_injection_command

    print("\n".join(injection_lines(run_injection_command(n, seed, out))))

