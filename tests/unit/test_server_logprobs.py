"""Finding a scored reply's tokens in an echoed prompt (``agents/llm/server_logprobs.py``), on token
streams made by real tokenizers (``tests/servers.py``: a byte-level BPE and a SentencePiece-style BPE
with byte fallback, trained here) and spelt in each of the four ways servers spell them.
``tests/embedded`` repeats the byte-level cases with the embedded model's own tokenizer.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.llm.server_logprobs import MalformedResponse, echo_entries, locate, prompt_logprobs_entries
from tests.servers import SPELLINGS, byte_level, sentencepiece, stream

PROMPT = "<|im_start|>user\nSay something kind.<|im_end|>\n<|im_start|>assistant\n"
SP_PROMPT = "<s>[INST] Say something kind. [/INST] "

TEXTS = [
    "I swim out.",
    "Yes, for the greater good 🙂",  # space + emoji at the end, one byte-level token " 🙂" on real vocabularies
    "是的。",  # no ASCII at all
    "🙂 yes",  # opens with a character split over tokens
    "Cafe\u0301 — nai\u0308ve",  # combining marks, an em dash
    "— yes",
    "ok " + "x" * 1200 + " …",  # agora's truncation mark ends a capped reply
    "Ünïcödé ÿ ł ĉ",  # Latin letters that byte-level BPE uses as byte spellings
    "a\u200db \u202eevil",  # zero-width joiner, a bidi override
    "it ends mid-way through a character's tokens 🎉",  # the last token holds the emoji's last byte only
]


def test_the_cases_are_what_they_claim():
    """The trained vocabularies split the emoji and the combining mark over tokens, as small real ones do."""
    tokens, _ = stream(byte_level(), PROMPT, TEXTS[-1], "decoded")
    assert tokens[-1] == "\ufffd" and tokens[-2] == "\ufffd"
    tokens, _ = stream(byte_level(), PROMPT, TEXTS[-1], "ignore")
    assert tokens[-1] == ""
    tokens, _ = stream(sentencepiece(), SP_PROMPT, TEXTS[4], "raw")
    assert "<0xCC>" in tokens and "<0x81>" in tokens


TOKENIZERS = {"byte_level": (byte_level, PROMPT), "sentencepiece": (sentencepiece, SP_PROMPT)}


@pytest.mark.parametrize("how", SPELLINGS)
@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_every_valid_reply_is_located(name, how, text):
    make, prompt = TOKENIZERS[name]
    tokens, start = stream(make(), prompt, text, how)
    lo, hi = locate(tokens, text)
    assert lo <= start <= hi < len(tokens)
    if how == "raw" or text[0] < "\x80":  # exact bytes, or a reply opening in ASCII: no doubt at all
        assert lo == hi == start


@settings(max_examples=150, deadline=None)
@given(text=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x1FAFF, blacklist_categories=("Cs", "Cc")),
                    min_size=1, max_size=24).filter(lambda s: s.strip() == s and s), name=st.sampled_from(list(TOKENIZERS)),
       how=st.sampled_from(SPELLINGS))
def test_any_reply_in_any_spelling_is_located(text, name, how):
    make, prompt = TOKENIZERS[name]
    tokens, start = stream(make(), prompt, text, how)
    lo, hi = locate(tokens, text)
    assert lo <= start <= hi


def test_the_issues_replies_on_byte_level_vocabularies():
    """The adversarial probe's replies: `` 🙂`` echoed as one token, and a capped reply's truncation mark."""
    head = ["<|im_start|>", "assistant", "Ċ"]
    assert locate(head + ["...", "Ġgreater", "Ġgood", "ĠðŁĻĤ"], "... greater good 🙂") == (3, 3)
    assert locate(["<|im_start|>", "assistant", "\n", "...", " greater", " good", " 🙂"], "... greater good 🙂") == (3, 3)
    assert locate(["assistant", "\n", "ok", " x", " …"], "ok x …") == (2, 2)
    assert locate(["assistant", "Ċ", "ok", "Ġx", "ĠâĢ¦"], "ok x …") == (2, 2)


@pytest.mark.parametrize("tail", ["\n", "Ċ", "<|im_end|>", "", "</s>", "\ufffd"])
@pytest.mark.parametrize("how", ["raw", "decoded"])
def test_a_token_after_the_reply_is_refused(tail, how):
    tokens, _ = stream(byte_level(), PROMPT, "Yes, for the greater good.", how)
    with pytest.raises(MalformedResponse, match="token after the scored text|does not end with"):
        locate(tokens + [tail], "Yes, for the greater good.")


@pytest.mark.parametrize("text", ["Yes, for the greater bad.", "Yes, for the greater good", "yes, for the greater good.",
                                  "Yes, for the greater good. More.", "Yes,  for the great good."])
@pytest.mark.parametrize("how", ["raw", "decoded", "ignore"])
def test_text_that_does_not_match_is_refused(text, how):
    tokens, _ = stream(byte_level(), PROMPT, "Yes, for the greater good.", how)
    with pytest.raises(MalformedResponse):
        locate(tokens, text)


def test_a_prompt_shorter_than_the_reply_is_refused():
    with pytest.raises(MalformedResponse, match="shorter|does not end"):
        locate([None, "Yes", "."], "Oh. Yes.")
    with pytest.raises(MalformedResponse):
        locate(["Ġyes", "."], "Oh yes.")


def test_lossy_tokens_before_a_reply_that_opens_with_a_split_character_are_left_to_the_server():
    """vLLM >= 0.11 spells the bytes of a split character on the token that completes it; the tokens
    before it show nothing, as a control token decoded without its text would: ``locate`` gives the
    range and the caller asks the server how long the prompt alone is."""
    tokens, start = stream(byte_level(), PROMPT, "🙂 yes", "completing")
    lo, hi = locate(tokens, "🙂 yes")
    assert lo <= start < hi and all(t == "" for t in tokens[start:hi])


def test_prompt_logprobs_entries_and_echo_entries_read_their_shapes():
    body = {"prompt_logprobs": [None, {"7": {"logprob": -0.5, "decoded_token": "Yes"}},
                                {"9": {"logprob": -1.0, "rank": 3, "decoded_token": "."}}]}
    assert prompt_logprobs_entries(body, "x") == [(None, None), ("Yes", -0.5), (".", -1.0)]
    echo = {"choices": [{"text": "Yes. I", "logprobs": {"tokens": ["Yes", ".", " I"], "token_logprobs": [None, -1.0, -2.0],
                                                        "text_offset": [0, 3, 4]}}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1}}
    assert echo_entries(echo, "x") == [("Yes", None), (".", -1.0)]


@pytest.mark.parametrize("body", [
    {"choices": []},
    {"choices": [{"logprobs": None}], "usage": {"completion_tokens": 1}},
    {"choices": [{"logprobs": {"tokens": ["a"], "token_logprobs": []}}], "usage": {"completion_tokens": 0}},
    {"choices": [{"logprobs": {"tokens": ["a", 3], "token_logprobs": [None, -1]}}], "usage": {"completion_tokens": 0}},
    {"choices": [{"logprobs": {"tokens": ["a", "b"], "token_logprobs": [None, -1]}}]},  # no usage: where does the prompt end?
    {"choices": [{"logprobs": {"tokens": ["a", "b"], "token_logprobs": [None, -1]}}], "usage": {"completion_tokens": 2}},
])
def test_malformed_echo_bodies_are_refused(body):
    with pytest.raises(MalformedResponse):
        echo_entries(body, "scored continuation")
