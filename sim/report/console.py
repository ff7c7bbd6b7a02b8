"""What the commands print: a finished run's headline lines, the label-quality gate's, agora-eval's results
and its ``--help`` page. Every line is made inert on its own (:func:`sim.display.inert_lines`): a name from a
file or a server cannot move the terminal or start a line of its own."""

from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

from sim.display import inert_lines
from sim.gate.calibration import lines as gate_lines
from sim.report.render import fmt_interval


def quality_lines(block: dict | None) -> list[str]:
    return gate_lines(block) if block else []


def finished_lines(summary: dict, out: Path, lines: Callable[[dict, Path], str] | None = None) -> str:
    """What ``agora`` prints when a run finishes: its experiment's own ``lines`` (registered as its ``console``), or
    its headline figures, one per line."""
    return (lines or study_lines)(summary, out)


def study_lines(summary: dict, out: Path) -> str:
    """An experiment's headline figures, one per line (the full report is in report.md)."""

    lines = [f"agora: {summary['kind']} run {summary['run_id']} finished in {summary['wall_seconds']:.0f} s -> {out}"]
    lines += [f"  {k}: {fmt_interval(v)}" for k, v in summary["headline"].items()]
    return inert_lines(lines + [f"  report: {out / 'report.md'}"])


# -- agora-eval --help ---------------------------------------------------------------------------
EVAL_ABOUT = """\
agora-eval: is the feedback any good? Scores the configured model's judges and stances (and optionally
a trained reward model) against data nobody here wrote: MoralChoice (low- and high-ambiguity moral
scenarios), steerability (does a cultural persona move P(moral action)?) and HHH (438
helpful/honest/harmless comparisons). Writes eval.json, eval.md, eval_items.parquet and plots to
outputs/eval/<timestamp>/.

By default it runs moralchoice and steerability, whose MoralChoice data (MIT) ships with agora. The hhh
suite needs the Constitutional AI paper's 438HHHEvaluations.jsonl, which agora cannot ship (its
repository, anthropics/ConstitutionalHarmlessnessPaper, has no licence): download it and add the suite
with eval.suites=[hhh,moralchoice,steerability] eval.hhh_path=/path/to/438HHHEvaluations.jsonl.

Usage: agora-eval [key=value ...]   agora's own groups and keys apply too (llm=..., population.size=...,
       constitution=..., sim.judge_reader=..., seed=...; see `agora --help`)."""
EVAL_EXAMPLES = """\
Examples:
  agora-eval                                         # moralchoice and steerability on the embedded model
  agora-eval eval.suites=[moralchoice] eval.scenarios=0 population.size=4
  agora-eval eval.suites=[hhh] eval.hhh_items=50 eval.hhh_path=HHH.jsonl     # a quick judge check
  agora-eval eval.suites=[hhh] eval.hhh_path=HHH.jsonl eval.reward_model=outputs/evolve/<timestamp>/generation_0/reward_model
  agora-eval llm=openai_compatible llm.base_url=http://127.0.0.1:8000/v1 llm.model=NAME"""


def attribute_docs(cls: type) -> dict[str, str]:
    """A dataclass's ``Attributes:`` docstring section as {name: text} (each setting is documented once, there)."""
    doc, out, name = inspect.getdoc(cls) or "", {}, None
    for line in doc.split("Attributes:", 1)[-1].splitlines()[1:]:
        m = re.match(r"    (\w+): (.*)", line)
        if m:
            name, out[m[1]] = m[1], m[2].strip()
        elif line.startswith("      ") and name:
            out[name] += " " + line.strip()
        elif line.strip():
            break
    return out


def _override(value: object) -> str:
    """A default as it is written on the command line."""
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return "''" if value == "" else str(value)


def eval_help() -> str:
    """``agora-eval --help``: what it does, its ``eval.*`` keys with their defaults and meaning, examples."""
    from alignment.config import EvalConfig

    docs, rows = attribute_docs(EvalConfig), []
    for f in dataclasses.fields(EvalConfig):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        rows.append((f"eval.{f.name}={_override(default)}", docs.get(f.name, "")))
    width = max(len(k) for k, _ in rows)
    keys = "\n".join(textwrap.fill(d.replace("``", ""), 104, initial_indent=f"  {k:<{width}}  ",
                                    subsequent_indent=" " * (width + 4)) for k, d in rows)
    return f"{EVAL_ABOUT}\n\nKeys, with their defaults:\n{keys}\n\n{EVAL_EXAMPLES}"
