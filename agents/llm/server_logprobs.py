"""Prompt log-probabilities in a server's response body: pure functions, no I/O.

Two forms are read. vLLM's chat ``prompt_logprobs`` (a continued assistant message; per prompt token
``{token_id: {"logprob", "decoded_token"}}``) and the OpenAI legacy completions ``echo`` form
(``choices[0].logprobs.tokens`` / ``token_logprobs`` for the echoed prompt, then the generated tokens;
vLLM and llama-cpp-python's server with ``--logits_all true``). Both give one ``(token text,
log-probability)`` pair per prompt token; :func:`locate` finds which of them are the scored text.

Why locating is not string matching: servers spell a token's text in four ways — the raw vocabulary
piece (byte-level BPE's bytes-as-unicode ``"ĠâĢĶ"``, SentencePiece's ``"▁word"`` and byte-fallback
``"<0xE2>"``), the piece decoded alone (a character split over tokens becomes U+FFFD, SentencePiece
drops the word's leading space), decoded with the bytes of a split character moved onto the token that
completes it (the others ``""``; vLLM 0.11 on), or decoded with split bytes dropped (llama-cpp-python).
A raw stream gives exact bytes and is matched byte for byte; a decoded one is compared on what it
still shows (ASCII exactly, whitespace ignored, shown non-ASCII characters in order, lost ones
allowed for). When lossy tokens right before the text leave its first token in doubt (a reply
opening with an emoji split over tokens), :func:`locate` says so and the caller counts the tokens of
the same prompt without the text — the server's own answer, not a guess.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence

Entry = tuple[str | None, float | None]  # one prompt token: its text as the server spells it, its log-probability


class MalformedResponse(ValueError):
    """A 200 response whose body cannot be read as the reply asked for (retried like a 5xx)."""


def check_logprob(v: object, where: str) -> float:
    """A server's log-probability, checked: a number, not NaN, not above 0 (``-inf`` is probability 0)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v > 1e-3:
        raise MalformedResponse(f"{where}: {v!r:.40} is not a log-probability")
    return float(v)


def prompt_logprobs_entries(body: dict, what: str) -> list[Entry]:
    """vLLM's ``prompt_logprobs`` of a chat completion: the first prompt token has none (``None``)."""
    entries = body.get("prompt_logprobs")
    if not isinstance(entries, list) or not entries:
        raise MalformedResponse(f"{what}: no prompt_logprobs in the response")
    out: list[Entry] = []
    for k, entry in enumerate(entries):
        if entry is None and k == 0:
            out.append((None, None))
            continue
        if not isinstance(entry, dict) or not entry:
            raise MalformedResponse(f"{what}: a prompt_logprobs entry is {entry!r:.40}")
        info = next(iter(entry.values()))  # prompt_logprobs=0: the prompt's own token only
        if not isinstance(info, dict) or not isinstance(info.get("decoded_token"), str):
            raise MalformedResponse(f"{what}: a prompt_logprobs entry without decoded_token")
        out.append((info["decoded_token"], info.get("logprob")))  # checked where summed (check_logprob)
    return out


def echo_entries(body: dict, what: str) -> list[Entry]:
    """The echoed prompt of a legacy completion (``echo=true, logprobs=N``): its tokens, without the
    ``usage.completion_tokens`` generated after it (a server may finish a split character, llama.cpp
    generating 3 tokens for ``max_tokens=1``)."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedResponse(f"{what}: no 'choices' ({str(body)[:60]!r})")
    lp = choices[0].get("logprobs")
    if not isinstance(lp, dict):
        raise MalformedResponse(f"{what}: no logprobs for the echoed prompt")
    tokens, values = lp.get("tokens"), lp.get("token_logprobs")
    if (not isinstance(tokens, list) or not isinstance(values, list) or len(tokens) != len(values)
            or not all(isinstance(t, str) for t in tokens)):
        raise MalformedResponse(f"{what}: logprobs.tokens and logprobs.token_logprobs are not two lists of one length")
    usage = body.get("usage")
    generated = usage.get("completion_tokens") if isinstance(usage, dict) else None
    if isinstance(generated, bool) or not isinstance(generated, int) or not 0 <= generated < len(tokens):
        raise MalformedResponse(f"{what}: usage.completion_tokens is {generated!r:.20}, so the echoed prompt's end is unknown")
    keep = len(tokens) - generated
    return list(zip(tokens[:keep], values[:keep], strict=True))


def continuation_logprob(entries: Sequence[Entry], start: int, what: str) -> float:
    """Sum of the log-probabilities of ``entries[start:]``, each checked."""
    return sum(check_logprob(lp, f"{what}: prompt logprob of {tok!r:.20}") for tok, lp in entries[start:])


# GPT-2's byte <-> unicode table (printable bytes stand for themselves, the rest are moved to U+0100..);
# the 10 lines transformers' copy would cost a multi-second import in a server client.
def _byte_table() -> dict[str, int]:
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = [b for b in range(256) if b not in kept]
    return {chr(b): b for b in kept} | {chr(256 + n): b for n, b in enumerate(moved)}


_BYTE_LEVEL = _byte_table()
_SP_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _raw_bytes(tokens: Sequence[str | None]) -> tuple[str, list[bytes | None]] | None:
    """``(kind, each token's exact bytes)`` when the stream is raw vocabulary pieces, else ``None``.

    Byte-level BPE: every character in the 256-character alphabet and some moved byte among them (a
    space is ``Ġ``; decoded text has real spaces, which the alphabet lacks). SentencePiece: ``▁`` or
    byte-fallback pieces, and no real space anywhere (some vocabularies hold ``"\\n"`` pieces)."""
    seen = [t for t in tokens if t is not None]
    chars = set("".join(seen))
    if chars and chars <= _BYTE_LEVEL.keys() and any(ord(c) >= 256 for c in chars):
        return "byte_level", [None if t is None else bytes(_BYTE_LEVEL[c] for c in t) for t in tokens]
    if " " not in chars and any("\u2581" in t or _SP_BYTE.fullmatch(t) for t in seen):
        return "sentencepiece", [None if t is None else bytes([int(m.group(1), 16)]) if (m := _SP_BYTE.fullmatch(t))
                                 else t.replace("\u2581", " ").encode() for t in tokens]
    return None


def locate(tokens: Sequence[str | None], text: str) -> tuple[int, int]:
    """``(lo, hi)``: the scored ``text`` is ``tokens[start:]`` for one ``start`` in ``lo..hi`` (``lo == hi``
    when the tokens alone settle it; see the module's docstring). ``None`` marks a token with no text
    (the first prompt token of ``prompt_logprobs``), never part of the text.

    Raises :class:`MalformedResponse` when no suffix of the tokens is the text: a token after it (an
    end-of-turn a server appended), a tail that differs, a prompt shorter than the text."""
    if not text.strip():
        raise ValueError("an empty text cannot be located")
    raw = _raw_bytes(tokens)
    if raw is not None:  # SentencePiece reads a "▁" in the text as the space it stands for
        start = _exact_start(raw[1], (text.replace("\u2581", " ") if raw[0] == "sentencepiece" else text).encode())
        return start, start
    return _decoded_start(tokens, text)


def _exact_start(pieces: Sequence[bytes | None], want: bytes) -> int:
    if pieces and pieces[-1] == b"":  # a vocabulary piece is never empty
        raise MalformedResponse("the echoed prompt has a token after the scored text ('')")
    acc = b""
    for i in range(len(pieces) - 1, -1, -1):
        piece = pieces[i]
        if piece is None:
            break
        acc = piece + acc
        if len(acc) >= len(want):
            if acc.endswith(want) and not acc[: len(acc) - len(want)].strip():  # the template's space in the first token
                return i
            break
        if not want.endswith(acc):
            break
    last = pieces[-1]
    if last is not None and (not last or not want.endswith(last) and not last.endswith(want)):
        raise MalformedResponse(f"the echoed prompt has a token after the scored text ({last.decode(errors='replace')!r:.24})")
    raise MalformedResponse("the echoed prompt does not end with the scored text")


def _embed(shown: str, t: str, j: int) -> int | None:
    """Where ``t[:j]`` ends once the token text ``shown`` is matched to its end, right to left, or ``None``.
    Non-ASCII characters of ``t`` the token does not show may be passed over (decoded lossily)."""
    for ch in reversed(shown):
        while j > 0 and t[j - 1] != ch and t[j - 1] >= "\x80":
            j -= 1
        if j == 0 or t[j - 1] != ch:
            return None
        j -= 1
    return j


def _ends(shown: str, t: str, j: int) -> Iterator[int]:
    """Every place ``t[:j]`` may end once ``shown`` is matched, nearest first: its last character may be
    any occurrence reached by passing over non-ASCII characters only (one, if that character is ASCII)."""
    for p in range(j, 0, -1):
        if t[p - 1] == shown[-1] and (k := _embed(shown[:-1], t, p - 1)) is not None:
            yield k
        if t[p - 1] < "\x80":
            return


def _shown(token: str) -> str:
    """What a decoded token shows of the text: whitespace (spelt or dropped differently by servers;
    SentencePiece reads "▁" as a space) and U+FFFD (part of a split character) left out."""
    return "".join(c for c in token if not c.isspace() and c not in "\u2581\ufffd")


_SEARCH_BUDGET = 50_000  # states; a valid reply is matched on its first path, a malformed one may branch widely


def _decoded_start(tokens: Sequence[str | None], text: str) -> tuple[int, int]:
    """A search from the end: the text's ASCII characters anchor the match; a shown non-ASCII character
    that occurs more than once may be matched at any occurrence (the nearest tried first)."""
    last = tokens[-1]
    if last is None:
        raise MalformedResponse("the echoed prompt is shorter than the scored text")
    if not _shown(last):  # a token showing nothing ends the text only where the text ends so ("▁": a space to SentencePiece)
        spaced = text[-1].isspace() or text[-1] == "\u2581"
        if (last.isspace() and not spaced) or (not last.isspace() and (text.rstrip() or "\x80")[-1] < "\x80"):
            raise MalformedResponse(f"the echoed prompt has a token after the scored text ({last!r:.20})")
    t = _shown(text)
    first_ascii = next((k for k, c in enumerate(t) if c < "\x80"), len(t))
    n, seen = len(tokens), set()
    # (i, hi, ends): tokens[hi:] are the text's, tokens[i:hi] show nothing (the text's or not), and t[:j]
    # for the next j of ``ends`` is what is not shown yet; ends=None: try the template starting at tokens[i - 1]
    stack: list[tuple[int, int, Iterator[int] | None, int]] = [(n, n, iter([len(t)]), 0)]
    while stack and len(seen) < _SEARCH_BUDGET:
        i, hi, ends, j = stack[-1]
        if ends is None:
            stack.pop()
            if (found := _left_edge(tokens, text, i, hi, j)) is not None:
                return found
            continue
        j = next(ends, None)
        if j is None:
            stack.pop()
            continue
        while (i, hi, j) not in seen:
            seen.add((i, hi, j))
            tok = tokens[i - 1] if i > 0 else None
            shown = _shown(tok) if tok is not None else ""
            if tok is not None and not shown:
                i -= 1
                if j > first_ascii or hi == n:
                    hi = i  # ASCII text is still to come, or the text's last token
                continue
            if j <= first_ascii:  # only non-ASCII characters left: the template may start here
                stack.append((i, hi, None, j))
            if shown and j:
                stack.append((i - 1, i - 1, _ends(shown, t, j), 0))  # or this token is the text's, nearest place first
            break
    raise MalformedResponse("the echoed prompt does not end with the scored text")


def _left_edge(tokens: Sequence[str | None], text: str, i: int, hi: int, j: int) -> tuple[int, int] | None:
    """``(lo, hi)`` once the text's last shown token is ``tokens[hi]``, or ``None``. Tokens showing nothing
    just before may hold the bytes of the text's first, non-ASCII characters (at most one token per byte
    of them), and whitespace between them; whitespace before them only if the text starts so. Then the
    caller asks the server where the text starts."""
    run = re.match(r"[^\x21-\x7e]*", text).group()
    lo = hi
    for k in range(hi - 1, max(i, hi - len(run.encode())) - 1, -1):
        if not tokens[k].isspace() or text[0].isspace() or text[0] == "\u2581":
            lo = k
    # the characters no token shows must fit in the tokens that show nothing before the first that does:
    # one holding only part of a character holds at most 3 of its bytes (per U+FFFD it shows)
    shown_at = next((k for k in range(hi, len(tokens)) if _shown(tokens[k])), len(tokens))
    room = sum(3 * max(1, tokens[k].count("\ufffd")) for k in range(lo, shown_at) if not tokens[k].isspace())
    if len(_shown(text)[:j].encode()) > room:
        return None
    return lo, hi
