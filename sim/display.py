"""Untrusted text made inert for display: the one home of what a page, a log line or a console line may show.

Agents' replies, dilemma and constitution files, CCAI statements and server errors can carry characters that
act instead of showing: terminal escapes (ESC, CSI, OSC; C1's one-byte CSI ``\\x9b``) that clear a screen or
retitle a window, a bare CR that overwrites a line, NUL, bidi controls that reverse the text after them
(U+202E), line separators and zero-width characters that hide or join text. :func:`inert` shows each of them
as its Python escape, so nothing is dropped silently and the page says what was there:

    >>> inert("ok\\x1b[2J \\u202eevil")
    'ok\\\\x1b[2J \\\\u202eevil'

Shown as escapes (``\\x1b``, ``\\r``, ``\\x9b``, ``\\u202e``, ``\\ud800``, ``\\U000e0041``): every C0 and C1 control
and DEL (Unicode category Cc) but TAB, and LF where the sink has lines (``newlines=True``: CR LF is then a
line end, LF; elsewhere LF shows as ``\\n``); every format character (Cf: bidi embeddings, overrides, isolates
and marks, zero-width space, joiners, word joiner, BOM, soft hyphen, invisible operators, tag characters); the
line and paragraph separators (Zl, Zp); lone surrogates (Cs); and the blank Hangul fillers (letters that draw
nothing). Kept: every printable character (CJK, emoji, combining marks, Arabic and Hebrew letters); Arabic's
visible prepended marks (U+0600-0605, U+06DD, U+070F, U+0890-0891, U+08E2; Kaithi's U+110BD, U+110CD); a
zero-width joiner between two emoji (family and profession emoji); a flag's tag sequence after U+1F3F4 (the
Scotland flag). Text that already reads ``\\x1b`` is left as it is: the notation shows, it does not act.

The data files (parquet, JSON) keep the raw text: only what is displayed goes through here.
"""

from __future__ import annotations

import logging
import numbers
import re
from collections.abc import Iterable

# Unicode 14 (Python 3.11); tests/unit/test_display.py checks these against the running unicodedata
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f"  # Cc but TAB and LF
_FORMAT = ("\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
           "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f")  # Cf
_OTHER = "\u2028\u2029\ud800-\udfff\u115f\u1160\u3164\uffa0"  # Zl, Zp, Cs, blank Hangul fillers
_EMOJI = "\u2190-\u2bff\U0001f000-\U0001faff"  # arrows, symbols, dingbats and the emoji blocks
_KEEP = (r"\U0001f3f4[\U000e0030-\U000e0039\U000e0061-\U000e007a]{1,6}\U000e007f"  # a subdivision flag
         rf"|(?<=[{_EMOJI}\ufe0f\U0001f3fb-\U0001f3ff])\u200d(?=[{_EMOJI}])")  # an emoji ZWJ sequence's joiner
_SHOWN = f"{_CONTROLS}{_FORMAT}{_OTHER}"
_LINES = re.compile(rf"(?P<keep>{_KEEP}|[\t\n])|(?P<crlf>\r\n)|[{_SHOWN}]")
_ONE_LINE = re.compile(rf"(?P<keep>{_KEEP}|\t)|[\n{_SHOWN}]")


def _escape(ch: str) -> str:
    n = ord(ch)
    if ch in "\r\n":
        return "\\r" if ch == "\r" else "\\n"
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def _shown(m: re.Match[str]) -> str:
    return m.group() if m.lastgroup == "keep" else "\n" if m.lastgroup == "crlf" else _escape(m.group())


def inert(text: object, *, newlines: bool = True) -> str:
    """``text`` (``str()`` of anything) with every character that acts instead of showing written as its escape.

    Args:
        text: untrusted text, or anything whose ``str()`` may hold some.
        newlines: keep LF (and CR LF, as LF) where the sink has lines (a page, a quote); ``False`` for a sink
            that is one line (a log record's value, an error line, a table cell): LF shows as ``\\n``.
    """
    s = text if isinstance(text, str) else str(text)
    return (_LINES if newlines else _ONE_LINE).sub(_shown, s)


def inert_lines(lines: Iterable[object]) -> str:
    """Console or page lines, each made :func:`inert` on its own: a value holding a newline cannot start a line
    that looks like agora's."""
    return "\n".join(inert(line, newlines=False) for line in lines)


class _Arg:
    """A log record's argument shown inert as one line, through ``%s`` and ``%r`` alike."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return inert(self.value, newlines=False)

    def __repr__(self) -> str:
        return inert(repr(self.value), newlines=False)


def _arg(value: object) -> object:
    return value if isinstance(value, numbers.Number) else _Arg(value)  # numbers keep %d, %.3f (numpy's too)


class InertFormatter(logging.Formatter):
    """The log format of ``cli.log`` and the console (``conf/``'s ``hydra.job_logging``): every record's
    arguments inert as one line each (a value cannot forge a log line), then the whole record inert with
    its own line breaks kept (a traceback's, agora's multi-line messages)."""

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_arg(a) for a in args)
        elif isinstance(args, dict):  # log.info("%(name)s", {...})
            record.args = {k: _arg(v) for k, v in args.items()}
        try:
            return inert(super().format(record))
        finally:
            record.args = args  # other handlers see the record as it was
