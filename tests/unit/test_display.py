"""sim/display.py: what acts instead of showing is shown as its escape, in every sink kind; printable text of
every script stays as it is; the character classes match the running Python's Unicode database."""

from __future__ import annotations

import io
import logging
import sys
import unicodedata

import pytest

from sim.display import InertFormatter, inert, inert_lines

# every kind of character that acts instead of showing (the hostile corpus's characters)
HOSTILE = {
    "nul": "\x00", "esc_csi": "\x1b[2J", "esc_osc": "\x1b]0;pwned\x07", "bel": "\x07", "backspace": "ab\x08\x08XY",
    "cr_alone": "safe\rEVIL", "c1_csi": "\x9b31m", "nel": "\x85", "del": "\x7f", "vt_ff": "\x0b\x0c",
    "rlo": "\u202eevil", "lre_pdf": "\u202ax\u202c", "isolates": "\u2066\u2067\u2068x\u2069", "marks": "\u200e\u200f\u061c",
    "line_sep": "a\u2028b\u2029c", "zero_width": "ad\u200bmin\u200c\u200d\u2060\ufeff", "soft_hyphen": "pay\u00adpal",
    "tags": "\U000e0001\U000e0041\U000e007f", "lone_surrogate": "\ud800 \udfff", "hangul_filler": "\u3164",
    "interlinear": "\ufff9x\ufffb",
}
PRINTABLE = ["中文の文章、한국어", "مرحبا بالعالم", "שלום עולם", "e\u0301 n\u0303 a\u0308\u0332", "🙂 👍🏽 ❤️ 🇫🇷",
             "👨\u200d👩\u200d👧 ❤️\u200d🔥 🧑🏽\u200d🚀", "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
             "\u0600\u0661\u0662 \u06dd", "tab\there", "x\\x1b literal", "日本\u3000語", "\u00a0nbsp"]


def _acting(cp: int) -> bool:
    """What inert() must escape, from the Unicode database itself."""
    return unicodedata.category(chr(cp)) in ("Cc", "Cf", "Cs", "Zl", "Zp")


PREPENDED = {*range(0x600, 0x606), 0x6DD, 0x70F, 0x890, 0x891, 0x8E2, 0x110BD, 0x110CD}  # visible: kept
FILLERS = {0x115F, 0x1160, 0x3164, 0xFFA0}  # letters that draw nothing: shown
RAW = {c for v in HOSTILE.values() for c in v if _acting(ord(c)) or ord(c) in FILLERS}


def test_every_control_format_separator_and_surrogate_of_this_python_is_escaped():
    """The hard-coded ranges against this Python's unicodedata: a newer Unicode's format character fails here."""
    acting = [cp for cp in range(0x110000) if (_acting(cp) and cp not in PREPENDED) or cp in FILLERS]
    out = inert("".join(map(chr, acting)), newlines=False)
    assert out.isascii() and len(out) > 5 * len(acting)  # each one an escape of 4 to 10 characters
    assert inert("".join(map(chr, PREPENDED))) == "".join(map(chr, PREPENDED))


def test_printable_characters_of_every_category_pass_unchanged():
    kept = "".join(chr(cp) for cp in range(0x110000) if not _acting(cp) and cp not in FILLERS)
    assert inert(kept) == kept and inert(kept, newlines=False) == kept


@pytest.mark.parametrize("text", PRINTABLE)
def test_scripts_emoji_sequences_and_combining_marks_are_kept(text):
    assert inert(text) == text and inert(text, newlines=False) == text


@pytest.mark.parametrize("name", list(HOSTILE))
def test_each_hostile_kind_is_shown_as_escapes_never_dropped(name):
    raw = HOSTILE[name]
    out = inert(raw)
    assert not set(out) & RAW
    assert out.isascii()  # only escapes and the ASCII text around them
    assert len(out) > len(raw)  # every acting character became a visible escape of several characters
    # the escapes are Python's: reading them back gives the original text
    assert out.encode().decode("unicode_escape").encode("utf-16", "surrogatepass") == raw.encode("utf-16", "surrogatepass")


def test_the_chosen_rendering():
    assert inert("ok\x1b[2J \u202eevil \U000e0041 \ud800") == "ok\\x1b[2J \\u202eevil \\U000e0041 \\ud800"
    assert inert("a\x00b\x9bc\x7f") == "a\\x00b\\x9bc\\x7f"
    assert inert("one\r\ntwo\rthree\nfour\tfive") == "one\ntwo\\rthree\nfour\tfive"  # CR LF is a line end
    assert inert("one\r\ntwo\nthree", newlines=False) == "one\\r\\ntwo\\nthree"
    assert inert("x\u200dy 🧑\u200d") == "x\\u200dy 🧑\\u200d"  # a joiner outside an emoji sequence shows
    assert inert(inert(HOSTILE["esc_osc"])) == inert(HOSTILE["esc_osc"])  # idempotent: no page escapes twice
    assert inert(42) == "42" and inert(None) == "None"


def test_inert_lines_keeps_a_value_from_starting_a_line_of_its_own():
    assert inert_lines(["agora: run x", "  model: m\nagora: forged"]) == "agora: run x\n  model: m\\nagora: forged"


def _format(*args, msg="reply %s then %r; %d items %.2f", exc=None) -> str:
    rec = logging.LogRecord("agora", logging.WARNING, __file__, 1, msg, args, exc)
    return InertFormatter("[%(name)s][%(levelname)s] - %(message)s").format(rec)


def test_log_records_args_are_one_line_and_inert_numbers_keep_their_format():
    import numpy as np

    line = _format("a\x1b[2J\nforged", "b\u202e", np.int64(3), np.float64(0.5))
    assert line == "[agora][WARNING] - reply a\\x1b[2J\\nforged then 'b\\u202e'; 3 items 0.50"


def test_log_messages_and_tracebacks_are_inert_with_their_own_lines_kept():
    try:
        raise ValueError("server said \x1b]0;pwned\x07\ud800")
    except ValueError:
        line = _format(msg="first line\nsecond line \x9b", exc=sys.exc_info())
    assert "first line\nsecond line \\x9b" in line and "Traceback (most recent call last):\n" in line
    assert "server said \\x1b]0;pwned\\x07\\ud800" in line and not set(line) & RAW
    rec = logging.LogRecord("agora", logging.INFO, __file__, 1, "%(who)s", ({"who": "\x1bx"},), None)
    assert InertFormatter("%(message)s").format(rec) == "\\x1bx"


def test_the_formatter_leaves_the_record_as_it_was_for_other_handlers():
    rec = logging.LogRecord("agora", logging.INFO, __file__, 1, "%s", ("\x1b",), None)
    InertFormatter().format(rec)
    assert rec.args == ("\x1b",)


def test_a_surrogate_in_a_log_value_cannot_break_a_utf8_handler():
    buf = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    handler = logging.StreamHandler(buf)
    handler.setFormatter(InertFormatter("%(message)s"))
    log = logging.getLogger("agora.test_display")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("reply %s", "\ud800\x1b")
    finally:
        log.removeHandler(handler)
    buf.flush()
    assert buf.buffer.getvalue() == b"reply \\ud800\\x1b\n"
