"""The parts of a report page, each written twice: as Markdown (``report.md``) and as HTML (``report.html``).

A section's body is a list of parts. A ``str`` is Markdown that agora itself wrote (numbers, labels,
its own sentences; an id from a file goes in as :func:`code_span`): the HTML page renders it with the
``markdown`` package. Anything else is a block that writes both formats itself, so that text from agents or
files is escaped for each format only where it lands (no ``&#x27;`` in ``report.md``, no raw HTML from an
agent in ``report.html``), tables align numbers right and text left, and the raw key behind a label stays
within reach (a tooltip). Text from agents or files is made inert first (:func:`sim.display.inert`: terminal
escapes, bidi overrides and invisible characters shown as escapes), before anything splits it into lines.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alignment.metrics import Interval
from sim.display import inert
from sim.report.labels import is_labelled, label

# a backslash is literal in CommonMark unless ASCII punctuation or the line's end follows: only then escaped,
# so an inert escape (``\\x1b``, :mod:`sim.display`) reads as it is in report.md
_MD_SPECIAL = re.compile(r"[`*\[\]<|]|\\(?=[!-/:-@\[-`{-~]|$)")


def md_escape(text: str) -> str:
    """Plain text for Markdown: the characters that would make markup, HTML or links backslash-escaped
    (CommonMark allows it for any ASCII punctuation), so an agent's ``<b>`` or ``[x](...)`` stays text.
    Underscores and apostrophes stay as they are: they make no links or HTML. One line: controls inert."""
    out = _MD_SPECIAL.sub(lambda m: "\\" + m.group(), inert(text, newlines=False))
    return "\\" + out if out.startswith(("#", ">", "-", "+")) else out


def own_md(text: str) -> str:
    """agora's own words in a table cell: only what would break the table or start HTML is escaped."""
    return inert(text, newlines=False).replace("|", "\\|").replace("<", "\\<")


def html_text(text: object) -> str:
    """Untrusted text for HTML: inert, then entities."""
    return html.escape(inert(text))


def one_line(text: object) -> str:
    """Whitespace runs as one space; made inert first, so a control that Python counts as whitespace
    (``\\x1f``, U+2028) shows instead of turning into a space."""
    return " ".join(inert(text).split())


def _backticks(text: str) -> str:
    """A run of backticks longer than any in ``text`` (CommonMark: such a fence cannot be closed from inside)."""
    return "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)


def code_span(text: object) -> str:
    """Untrusted text (an id from a file) as an inline code span in agora's own Markdown: inert, one line,
    its backticks kept (a longer fence, padded when the text starts or ends with one)."""
    s = one_line(text)
    fence = _backticks(s)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}" if s else "` `"


def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, float):
        if x != x:
            return "n/a"
        if 0 < abs(x) < 10 ** -digits:  # small effects stay visible, in the same notation: -0.00069
            import numpy as np

            return np.format_float_positional(x, precision=2, unique=False, fractional=False, trim="-")
        return f"{x:.{digits}f}"
    return str(x)


def figure_json(v: Any) -> Any:
    """An :class:`~alignment.metrics.Interval` record in its ``summary.json`` form; anything else as it is."""
    return v.to_json() if isinstance(v, Interval) else v


def has_interval(v: Any) -> bool:
    v = figure_json(v)
    return isinstance(v, Mapping) and v.get("low") is not None and v.get("high") is not None


def fmt_interval(v: Any, digits: int = 3) -> str:
    """``0.512 [0.401, 0.630]`` from a headline entry (a number, an :class:`~alignment.metrics.Interval` or
    ``{"value","low","high"}``); a figure that could not be computed carries its reason (``"na"``): ``n/a (no
    values)``, ``0.500 (one value: no interval)``."""
    v = figure_json(v)
    if not isinstance(v, Mapping):
        return fmt(v, digits)
    s = fmt(v.get("value"), digits)
    if has_interval(v):
        s += f" [{fmt(v['low'], digits)}, {fmt(v['high'], digits)}]"
    if v.get("na"):
        s += f" ({one_line(v['na'])})"
    return s


def na_or(block: Mapping[str, Any] | Interval, key: str) -> Any:
    """``block[key]``, or ``n/a (reason)`` when it is null with a ``<key>_na`` reason."""
    block = figure_json(block)
    v = block.get(key)
    return f"n/a ({block[key + '_na']})" if v is None and block.get(key + "_na") else v


def panel_text(summary: Mapping[str, Any], study: str) -> str:
    """``(4 members)``, or ``(4 members: panel_size=9 asked, population.size 4)`` when the run used fewer."""
    return members_text(summary.get("panel_size"), summary.get("config", {}).get("study", {}).get(study, {}).get("panel_size"),
                        study)


def members_text(used: int | None, asked: int | None, study: str) -> str:
    """:func:`panel_text` from the panel size used and the one ``study.<study>.panel_size`` asked for."""
    if used is None:
        return ""
    return f"({used} members" + (f": study.{study}.panel_size={asked} asked, more than population.size)"
                                 if asked and asked > used else ")")


@dataclass(frozen=True)
class Term:
    """A raw key shown by its label (its key as a tooltip in HTML)."""

    key: str
    guess: bool = True  # unknown keys: underscores to spaces (False: shown as they are)

    def md(self) -> str:
        return own_md(label(self.key, self.guess))

    def html(self) -> str:
        shown = html_text(label(self.key, self.guess))
        return f'<span title="{html_text(self.key)}">{shown}</span>' if shown != html_text(self.key) else shown


def _numeric(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) or isinstance(v, Interval) or (
        isinstance(v, Mapping) and "value" in v)


@dataclass(frozen=True)
class Table:
    """Rows of dicts. Columns whose cells are all numbers (or intervals) are right-aligned, the rest left;
    a column named by a raw key is headed by its label. ``Term`` cells show a label too."""

    rows: Sequence[Mapping[str, Any]]
    columns: Sequence[str] | None = None
    digits: int = 3
    right: Sequence[str] = ()  # text columns aligned right all the same (intervals)
    code: Sequence[str] = ()  # columns of identifiers, shown verbatim as code

    def cols(self) -> list[str]:
        return list(self.columns or (self.rows[0].keys() if self.rows else []))

    def numeric(self, c: str) -> bool:
        if c in self.right:
            return True
        vals = [r.get(c) for r in self.rows if r.get(c) is not None]
        return bool(vals) and sum(map(_numeric, vals)) * 2 > len(vals)  # mostly numbers (Markdown aligns columns only)

    def keys(self) -> list[str]:
        """The raw keys this table shows by their labels."""
        terms = [v.key for r in self.rows for v in r.values() if isinstance(v, Term) and is_labelled(v.key)]
        return [c for c in self.cols() if label(c, guess=False) != c] + terms

    def _cell(self, c: str, v: Any, escape) -> str:  # noqa: ANN001
        if isinstance(v, Term):
            return v.md() if escape is md_escape else v.html()
        if c in self.code and v is not None:
            return code_span(v) if escape is md_escape else f"<code>{html_text(one_line(v))}</code>"
        if _numeric(v) or (c in self.right and escape is md_escape):  # agora's own digits: nothing to escape
            return own_md(fmt_interval(v, self.digits))
        return escape(one_line(fmt_interval(v, self.digits)))  # md_escape, html.escape

    def md(self) -> str:
        if not self.rows:
            return "_(no rows)_"
        cols = self.cols()
        lines = ["| " + " | ".join(own_md(label(c, guess=False)) for c in cols) + " |",
                 "|" + "".join("---:|" if self.numeric(c) else ":---|" for c in cols)]
        lines += ["| " + " | ".join(self._cell(c, r.get(c), md_escape) for c in cols) + " |" for r in self.rows]
        return "\n".join(lines)

    def html(self) -> str:
        if not self.rows:
            return "<p><em>(no rows)</em></p>"
        cols = self.cols()
        num = ' class="num"'
        numeric = {c: self.numeric(c) for c in cols}  # once per column: it scans every row
        right = lambda c, v: _numeric(v) or c in self.right or (v is None and numeric[c])  # noqa: E731  (per cell)
        head = "".join(f"<th{num if numeric[c] else ''}>{Term(c, guess=False).html()}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td{num if right(c, r.get(c)) else ''}>{self._cell(c, r.get(c), html.escape)}</td>"
                                        for c in cols) + "</tr>" for r in self.rows)
        return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


@dataclass(frozen=True)
class Quote:
    """Untrusted text (an agent's reply, a dilemma), shown whole; ``who`` is agora's own caption (Markdown)."""

    text: str
    who: str = ""
    css: str = "said"  # "dilemma": the situation the replies answer

    def md(self) -> str:
        lines = [md_escape(line) if line.strip() else "" for line in inert(self.text).strip().splitlines()]
        body = "\n".join("> " + line if line else ">" for line in lines) or "> _(empty)_"
        return (f"{self.who}\n\n" if self.who else "") + body

    def html(self) -> str:
        import markdown

        who = markdown.markdown(self.who) if self.who else ""
        return f'{who}<blockquote class="{self.css}">{html.escape(inert(self.text).strip())}</blockquote>'


@dataclass(frozen=True)
class Items:
    """A list of untrusted lines (constitution principles), numbered or not; ``note`` follows each (ours)."""

    items: Sequence[tuple[str, str]]  # (untrusted text, agora's note)
    ordered: bool = True

    def md(self) -> str:
        mark = (lambda k: f"{k}.") if self.ordered else (lambda k: "-")
        return "\n".join(f"{mark(k)} {md_escape(one_line(t))}{' ' + n if n else ''}"
                         for k, (t, n) in enumerate(self.items, start=1))

    def html(self) -> str:
        tag = "ol" if self.ordered else "ul"
        return f"<{tag}>" + "".join(f"<li>{html.escape(one_line(t))}{' ' + html_text(n) if n else ''}</li>"
                                    for t, n in self.items) + f"</{tag}>"


@dataclass(frozen=True)
class Code:
    """A fenced block (YAML, logs)."""

    text: str
    lang: str = ""

    def md(self) -> str:
        text = inert(self.text).rstrip()
        fence = max(_backticks(text), "```", key=len)  # a line of backticks inside cannot close it
        return f"{fence}{self.lang}\n{text}\n{fence}"

    def html(self) -> str:
        return f"<pre><code>{html.escape(inert(self.text).rstrip())}</code></pre>"


@dataclass(frozen=True)
class Figure:
    """A PNG beside the report, with its caption (agora's own words)."""

    src: str
    caption: str

    def md(self) -> str:
        return f"![{md_escape(self.caption)}]({self.src})\n\n*{md_escape(self.caption)}*"

    def html(self) -> str:
        c = html_text(self.caption)
        return f'<figure><img src="{html_text(self.src)}" alt="{c}"><figcaption>{c}</figcaption></figure>'


@dataclass(frozen=True)
class Details:
    """Collapsed in HTML (``<details>``); in Markdown its summary in bold, then its parts."""

    summary: str
    parts: Sequence[Part] = field(default_factory=list)
    open: bool = False

    def md(self) -> str:
        return f"**{md_escape(self.summary)}**\n\n" + to_md(self.parts)

    def html(self) -> str:
        return (f"<details{' open' if self.open else ''}><summary>{html_text(self.summary)}</summary>"
                f"{to_html(self.parts)}</details>")


@dataclass(frozen=True)
class Grid:
    """Small figures side by side in HTML (as many columns as fit); one after another in Markdown."""

    parts: Sequence[Part] = field(default_factory=list)

    def md(self) -> str:
        return to_md(self.parts)

    def html(self) -> str:
        return f'<div class="grid">{to_html(self.parts)}</div>'


BLOCKS = (Term, Table, Quote, Items, Code, Figure, Details, Grid)
Block = Term | Table | Quote | Items | Code | Figure | Details | Grid
Part = str | Block


def parts_of(body: Part | Sequence[Part] | None) -> list[Part]:
    if body is None or body == "":
        return []
    return [body] if isinstance(body, (str, *BLOCKS)) else [p for p in body if p != ""]


def to_md(body: Part | Sequence[Part] | None) -> str:
    return "\n\n".join(p if isinstance(p, str) else p.md() for p in parts_of(body))


def to_html(body: Part | Sequence[Part] | None) -> str:
    import markdown

    return "\n".join(markdown.markdown(p, extensions=["tables", "fenced_code"]) if isinstance(p, str) else p.html()
                     for p in parts_of(body))


def keys_shown(body: Part | Sequence[Part] | None) -> list[str]:
    """Raw keys the parts show by their labels (tables' columns and ``Term`` cells), in order."""
    out: list[str] = []
    for p in parts_of(body):
        if isinstance(p, Table):
            out += p.keys()
        elif isinstance(p, (Details, Grid)):
            out += keys_shown(p.parts)
        elif isinstance(p, Term) and is_labelled(p.key):
            out.append(p.key)
    return list(dict.fromkeys(out))
