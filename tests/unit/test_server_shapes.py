"""Every response shape a real or broken OpenAI-compatible server sends, on the generate and score
paths: each ends in a correct label, a counted fallback, or one clear line; never a silent 0.5 or NaN.
"""

import asyncio
import json
import math

import pytest

from agents.llm.base import BackendError, ChatMessage, GenerateRequest, ScoreRequest
from agents.llm.openai_compat import OpenAICompatibleBackend, label_key
from agents.prompts import continuation
from agents.scoring import p_first
from tests.servers import SPELLINGS, LlamaCppLike, VLLMLike, chatml_tokenizer_folder, expected_logprob, render
from tests.servers import serve as serve_tokenising
from tests.unit.test_openai_compat import Handler, serve

MSGS = (ChatMessage(role="user", content="A or B?"),)
AB = ScoreRequest(messages=MSGS, choices=("A", "B"))


def completion(choice: dict | None = None, **top) -> dict:
    body = {"id": "x", "object": "chat.completion", "created": 0, "model": "tiny",
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}}
    body["choices"] = [choice] if choice is not None else []
    return body | top


def logprob_choice(first: tuple, *top: tuple) -> dict:
    entry = lambda t, lp: {"token": t, "logprob": lp, "bytes": None, "top_logprobs": []}  # noqa: E731
    first_entry = entry(*first) | {"top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in top]}
    return {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": first[0]},
            "logprobs": {"content": [first_entry]}}


class Shaped(Handler):
    """Answers every request with ``Shaped.body`` (bytes, or a dict dumped as JSON) and ``Shaped.ctype``."""

    body: object = b""
    ctype = "application/json"
    requests: list[dict] = []

    def do_POST(self):
        Shaped.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        data = Shaped.body if isinstance(Shaped.body, bytes) else json.dumps(Shaped.body).encode()
        self.send_response(200)
        self.send_header("Content-Type", Shaped.ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def shaped():
    Shaped.ctype, Shaped.requests = "application/json", []
    yield from serve(Shaped)


def backend(url: str, retries: int = 0) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(base_url=url, model="tiny", max_retries=retries, backoff_s=0.001)


def score(url: str, req: ScoreRequest = AB, retries: int = 0) -> tuple[list[float], OpenAICompatibleBackend]:
    b = backend(url, retries)
    if req.continuation:
        b.form = "prompt_logprobs"  # these fixed bodies are vLLM's; the probe is tested below on servers that tokenise
    (s,) = asyncio.run(b.score_choices([req]))
    return s, b


@pytest.mark.parametrize("first,top,expected", [
    (("A", -0.1), [("B", -2.4)], 1 / (1 + math.exp(-2.3))),  # the plain shape
    ((" B", -0.2), [(" A", -1.8)], 1 / (1 + math.exp(1.6))),  # a leading space (llama.cpp, OpenAI)
    (("ĠA", -0.3), [("ĠB", -1.5)], 1 / (1 + math.exp(-1.2))),  # byte-level BPE as the raw vocabulary shows it
    (("▁B", -0.6), [("▁A", -1.0)], 1 / (1 + math.exp(0.4))),  # SentencePiece
    ((" a", -0.7), [(" b", -1.2)], 1 / (1 + math.exp(-0.5))),  # lower case
])
def test_label_tokens_in_every_spelling_servers_send(shaped, first, top, expected):
    Shaped.body = completion(logprob_choice(first, first, *top))
    s, b = score(shaped)
    assert p_first(s) == pytest.approx(expected)
    assert b.stats.fallbacks == 0


def test_spellings_of_one_label_are_pooled(shaped):
    Shaped.body = completion(logprob_choice(("A", math.log(0.3)), (" A", math.log(0.3)), ("B", math.log(0.2))))
    s, _ = score(shaped)
    assert p_first(s) == pytest.approx(0.6 / 0.8)


@pytest.mark.parametrize("listed,bound", [
    ([("A", -0.3), ("The", -2.0), ("I", -3.0)], -3.0),  # below the least listed token
    ([("A", -0.1)], math.log(1 - math.exp(-0.1))),  # only the answer listed: B has at most what A leaves
])
def test_one_option_outside_the_top_logprobs_is_bounded_and_counted(shaped, listed, bound):
    Shaped.body = completion(logprob_choice(listed[0], *listed))
    s, b = score(shaped)
    assert p_first(s) == pytest.approx(1 / (1 + math.exp(bound - listed[0][1])))
    assert 0.5 < p_first(s) < 1
    assert b.stats.fallbacks == 1 and b.stats.extra == {"fallback:option_outside_top_logprobs": 1}


def test_no_option_among_the_top_logprobs_is_one_line_not_a_half(shaped):
    Shaped.body = completion(logprob_choice(("The", -0.7), ("I", -1.5), ("Option", -2.5)))
    with pytest.raises(BackendError) as err:
        score(shaped, retries=3)
    msg = str(err.value)
    assert "\n" not in msg and "none of the options ['A', 'B']" in msg and "'The'" in msg and shaped in msg
    assert len(Shaped.requests) == 1  # the same prompt would give the same reply: not retried


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1000.0, "low", "-0.5", False, None, [0.1]])
def test_a_logprob_that_is_not_one_is_retried_then_one_line(shaped, bad):
    Shaped.body = completion(logprob_choice(("A", bad), ("B", -1.0)))
    with pytest.raises(BackendError) as err:
        score(shaped, retries=2)
    msg = str(err.value)
    assert "\n" not in msg and "after 3 attempts" in msg and "not a log-probability" in msg
    assert len(Shaped.requests) == 3


def test_minus_infinity_is_probability_zero(shaped):
    Shaped.body = completion(logprob_choice(("A", 0.0), ("B", float("-inf"))))
    s, _ = score(shaped)
    assert p_first(s) == 1.0


@pytest.mark.parametrize("body,ctype,problem", [
    (b"<html><body>502 Bad Gateway</body></html>", "text/html", "not a chat completion"),
    (completion() | {"choices": None}, "application/json", "no 'choices'"),
    ({"id": "x", "object": "chat.completion"}, "application/json", "no 'choices'"),
    (completion(), "application/json", "empty or malformed choice"),
    (completion({"index": 0}), "application/json", "empty or malformed choice"),
    (completion({"index": 0, "message": "A"}), "application/json", "empty or malformed choice"),
    ([], "application/json", "not a chat completion"),
])
@pytest.mark.parametrize("path", ["score", "generate"])
def test_malformed_200_bodies_are_retried_then_one_line(shaped, body, ctype, problem, path):
    Shaped.body, Shaped.ctype = body, ctype
    b = backend(shaped, retries=1)
    call = (b.score_choices([AB]) if path == "score" else b.generate([GenerateRequest(messages=MSGS)]))
    with pytest.raises(BackendError) as err:
        asyncio.run(call)
    msg = str(err.value)
    assert "\n" not in msg and shaped in msg and "after 2 attempts" in msg
    assert "malformed response" in msg or "JSON" in msg, msg
    assert "NoneType" not in msg and "subscriptable" not in msg
    assert b.stats.retries == 1 and len(Shaped.requests) == 2


def test_no_logprobs_reads_the_leading_label_and_counts_it(shaped):
    Shaped.body = completion({"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "(b) since"}})
    s, b = score(shaped)
    assert p_first(s) < 1e-9 and b.stats.extra == {"fallback:no_logprobs": 1}
    Shaped.body = completion({"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hmm"}})
    with pytest.raises(BackendError, match="names none of the options"):
        score(shaped)


def prompt_logprobs(pieces: list[tuple[str, float]]) -> list:
    return [None] + [{str(100 + i): {"logprob": lp, "rank": 1, "decoded_token": t}} for i, (t, lp) in enumerate(pieces)]


def test_continuations_are_scored_from_prompt_logprobs(shaped):
    head = [("<|im_start|>", -1.0), ("assistant", -0.5), ("\n", -0.1)]
    Shaped.body = completion(logprob_choice(("x", -0.1)), prompt_logprobs=prompt_logprobs(
        head + [("I", -0.25), (" swim", -1.5), (" out", -0.75), (".", -0.5)]))
    req = ScoreRequest(messages=MSGS, choices=("I swim out.",), continuation=True)
    s, b = score(shaped, req)
    assert s == [pytest.approx(-3.0)]
    sent = Shaped.requests[0]
    assert sent["messages"][-1] == {"role": "assistant", "content": "I swim out."}
    assert sent["continue_final_message"] is True and sent["prompt_logprobs"] == 0


def test_a_server_without_prompt_logprobs_is_refused_at_start_up_in_one_line(shaped):
    Shaped.body = completion(logprob_choice(("x", -0.1)))
    b = backend(shaped, retries=2)
    with pytest.raises(BackendError) as err:
        asyncio.run(b.check_continuation_support())
    msg = str(err.value)
    assert "\n" not in msg and "sim.choice_reader=label" in msg and shaped in msg
    assert "chat prompt_logprobs" in msg and "completions echo" in msg  # both forms were tried
    assert [r.get("echo") for r in Shaped.requests] == [None] * 3 + [True] * 3  # one probe each, retried


@pytest.mark.parametrize("token", ["A", " A", "ĠA", "▁A", "a", "\tA\n"])
def test_label_key(token):
    assert label_key(token) == "a"


@pytest.mark.parametrize("logprobs", ["yes", {"content": {"token": "A"}}, {"content": ["A"]},
                                      {"content": [{"token": "A", "logprob": -0.1, "top_logprobs": {"B": -1}}]}])
def test_malformed_logprobs_are_retried_then_one_line(shaped, logprobs):
    Shaped.body = completion({"index": 0, "message": {"role": "assistant", "content": "A"}, "logprobs": logprobs})
    with pytest.raises(BackendError) as err:
        score(shaped, retries=1)
    assert "\n" not in str(err.value) and "malformed response" in str(err.value) and len(Shaped.requests) == 2


def test_both_options_at_minus_infinity_name_the_server(shaped):
    Shaped.body = completion(logprob_choice(("A", float("-inf")), ("B", float("-inf"))))
    with pytest.raises(BackendError) as err:
        score(shaped)
    assert shaped in str(err.value) and "-inf" in str(err.value)


def test_an_empty_reply_is_counted(shaped):
    Shaped.body = completion({"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": None}})
    b = backend(shaped)
    assert asyncio.run(b.generate([GenerateRequest(messages=MSGS)])) == [""]
    assert b.stats.extra == {"empty_reply": 1}


@pytest.mark.parametrize("pieces", [
    [("Ċ", -0.1), ("I", -0.25), ("Ġswim", -1.5), ("Ġout", -0.75), (".", -0.5)],  # byte-level markers (vLLM V1)
    [("\n", -0.1), ("I", -0.25), (" swim", -1.5), (" out", -0.75), (".", -0.5)],
])
def test_continuation_tokens_in_the_spellings_vllm_decodes(shaped, pieces):
    Shaped.body = completion(logprob_choice(("x", -0.1)), prompt_logprobs=prompt_logprobs([("assistant", -0.5)] + pieces))
    s, _ = score(shaped, ScoreRequest(messages=MSGS, choices=("I swim out.",), continuation=True))
    assert s == [pytest.approx(-3.0)]


def test_a_multibyte_character_decoded_as_replacement_still_matches(shaped):
    pieces = [("I", -0.5), (" say", -0.5), (" \ufffd", -0.5), ("\ufffd", -0.5), ("no", -0.5)]
    Shaped.body = completion(logprob_choice(("x", -0.1)), prompt_logprobs=prompt_logprobs([("\n", -0.1)] + pieces))
    s, _ = score(shaped, ScoreRequest(messages=MSGS, choices=("I say \u2014no",), continuation=True))
    assert s == [pytest.approx(-2.5)]


def test_an_unreachable_server_at_start_up_says_so_not_that_it_lacks_prompt_logprobs():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    b = OpenAICompatibleBackend(base_url=f"http://127.0.0.1:{port}/v1", model="tiny", max_retries=0, timeout_s=5)
    with pytest.raises(BackendError) as err:
        asyncio.run(b.check_continuation_support())
    assert "cannot score whole replies" not in str(err.value) and "Connection" in str(err.value)


def test_a_reply_with_no_ascii_and_one_that_opens_with_a_dash_are_scored_whole(shaped):
    cases = [("是的。", [("\n", -0.1), ("是", -1.0), ("\ufffd", -1.0), ("的。", -1.0)], -3.0),
             ("— yes", [("\n", -0.1), ("\u2014", -1.0), (" yes", -1.0)], -2.0)]
    for text, pieces, want in cases:
        Shaped.body = completion(logprob_choice(("x", -0.1)), prompt_logprobs=prompt_logprobs([("assistant", -0.5)] + pieces))
        s, _ = score(shaped, ScoreRequest(messages=MSGS, choices=(text,), continuation=True))
        assert s == [pytest.approx(want)], text


@pytest.mark.parametrize("tail", [("", -20.0), ("\n", -20.0), ("<|im_end|>", -20.0)])
def test_a_token_after_the_scored_text_is_not_summed_silently(shaped, tail):
    pieces = [("\n", -0.1), ("Yes", -1.0), (".", -1.0), tail]
    Shaped.body = completion(logprob_choice(("x", -0.1)), prompt_logprobs=prompt_logprobs(pieces))
    with pytest.raises(BackendError, match="malformed response"):
        score(shaped, ScoreRequest(messages=MSGS, choices=("Yes.",), continuation=True))


@pytest.mark.parametrize("top", [[(" A", -3.0), (" B", -1.0)],  # the reply's token listed again, another value
                                 [("a", -0.01), (" B", -5.0)]])  # listed mass over 1
def test_inconsistent_top_logprobs_are_malformed(shaped, top):
    Shaped.body = completion(logprob_choice((" A", -0.01), *top))
    with pytest.raises(BackendError, match="malformed response"):
        score(shaped)


# -- whole replies on servers that tokenise (tests/servers.py): the form is probed, the reply located ---------


def _replies() -> list[str]:
    """The adversarial probe's replies and their kin."""
    return ["I choose to stay, for the greater good 🙂",  # " 🙂" is one token on real byte-level vocabularies
            "是的。", "🙂 yes", "Cafe\u0301 — nai\u0308ve", "— yes",
            continuation("x " * 500_000)]  # a 1 MB reply, capped with agora's truncation mark


@pytest.fixture()
def vllm():
    VLLMLike.how, VLLMLike.tail, VLLMLike.last_logprob = "decoded", [], None
    yield from serve_tokenising(VLLMLike)


@pytest.fixture()
def llamacpp():
    LlamaCppLike.logits_all, LlamaCppLike.generated = True, [(" I", -1.0)]
    yield from serve_tokenising(LlamaCppLike)


def whole(url: str, *replies: str, **kw) -> tuple[list[float], OpenAICompatibleBackend]:
    b = OpenAICompatibleBackend(base_url=url, model="tiny", max_retries=kw.pop("retries", 0), backoff_s=0.001, **kw)
    (s,) = asyncio.run(b.score_choices([ScoreRequest(messages=MSGS, choices=replies, continuation=True)]))
    return s, b


@pytest.mark.parametrize("how", SPELLINGS[:3])  # how vLLM versions spell prompt tokens
def test_vllm_prompt_logprobs_score_every_valid_reply(vllm, how):
    VLLMLike.how = how
    replies = _replies()
    s, b = whole(vllm, *replies)
    base = render([{"role": "user", "content": MSGS[0].content}], add_generation_prompt=True)
    assert s == [pytest.approx(expected_logprob(base, r)) for r in replies]
    assert b.stats.extra["continuation_form:prompt_logprobs"] == 1
    assert not any(path.endswith("/v1/completions") for path, _ in VLLMLike.requests)  # the first form was offered
    # raw pieces are exact; decoded ones leave the start of a reply opening with a split character (是, 🙂,
    # — on this small vocabulary) to the server's count of the prompt alone
    asked = b.stats.extra.get("continuation_start_counted", 0)
    assert asked == (0 if how == "raw" else 3)


def test_llama_cpp_echo_form_with_the_models_template(llamacpp, tmp_path):
    replies = _replies()
    s, b = whole(llamacpp, *replies, tokenizer=chatml_tokenizer_folder(tmp_path / "tok"))
    base = render([{"role": "user", "content": MSGS[0].content}], add_generation_prompt=True)
    assert s == [pytest.approx(expected_logprob(base, r)) for r in replies]
    assert b.stats.extra["continuation_form:echo"] == 1
    echoed = [body for path, body in LlamaCppLike.requests if path.endswith("/v1/completions")]
    assert all(e["echo"] is True and e["logprobs"] == 1 and e["max_tokens"] == 1 for e in echoed)
    assert {e["prompt"] for e in echoed} >= {base + r for r in replies}  # rendered here, as the embedded backend renders


def test_llama_cpp_generating_several_tokens_after_the_echo_is_read_right(llamacpp, tmp_path):
    LlamaCppLike.generated = [("", -0.5), ("", -0.4), ("", -0.3)]  # a split emoji finished for max_tokens=1
    s, _ = whole(llamacpp, "Yes.", tokenizer=chatml_tokenizer_folder(tmp_path / "tok"))
    base = render([{"role": "user", "content": MSGS[0].content}], add_generation_prompt=True)
    assert s == [pytest.approx(expected_logprob(base, "Yes."))]


def test_an_echo_server_without_a_tokenizer_asks_for_one_in_one_line(llamacpp):
    with pytest.raises(BackendError) as err:
        whole(llamacpp, "Yes.")
    msg = str(err.value)
    assert "\n" not in msg and "llm.tokenizer" in msg and "echo" in msg


def test_a_server_offering_neither_form_is_refused_naming_both(llamacpp, tmp_path):
    LlamaCppLike.logits_all = False  # llama-cpp-python's server started without --logits_all true
    b = OpenAICompatibleBackend(base_url=llamacpp, model="tiny", max_retries=1, backoff_s=0.001,
                                tokenizer=chatml_tokenizer_folder(tmp_path / "tok"))
    with pytest.raises(BackendError) as err:
        asyncio.run(b.check_continuation_support())
    msg = str(err.value)
    assert "\n" not in msg and "cannot score whole replies" in msg and "sim.choice_reader=label" in msg
    assert "no prompt_logprobs" in msg and "logits_all=False" in msg and "--logits_all true" in msg


def test_a_bad_tokenizer_is_one_line(llamacpp, tmp_path):
    with pytest.raises(BackendError) as err:
        whole(llamacpp, "Yes.", tokenizer=str(tmp_path / "missing"))
    assert "\n" not in str(err.value) and "llm.tokenizer=" in str(err.value)


@pytest.mark.parametrize("tail", [[("<|im_end|>", -0.1)], [("\n", -0.1)], [("", -0.1)]])
def test_an_end_of_turn_appended_to_the_echo_is_refused(vllm, tail):
    VLLMLike.tail = tail
    b = OpenAICompatibleBackend(base_url=vllm, model="tiny", max_retries=1, backoff_s=0.001)
    b.form = "prompt_logprobs"
    with pytest.raises(BackendError) as err:
        asyncio.run(b.score_choices([ScoreRequest(messages=MSGS, choices=("Yes, I agree.",), continuation=True)]))
    assert "malformed response" in str(err.value) and "after 2 attempts" in str(err.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.5, "null", "-0.5"])
def test_a_bad_logprob_in_the_scored_reply_is_refused(vllm, bad):
    VLLMLike.last_logprob = bad  # the reply's own last token
    b = OpenAICompatibleBackend(base_url=vllm, model="tiny", max_retries=0)
    b.form = "prompt_logprobs"
    with pytest.raises(BackendError, match="not a log-probability"):
        asyncio.run(b.score_choices([ScoreRequest(messages=MSGS, choices=("Yes, I agree.",), continuation=True)]))


def test_a_server_whose_prompt_alone_disagrees_with_its_echo_is_refused(vllm):
    """The lossy tokens before "🙂 yes" make the backend ask the prompt's length; a server whose answer
    cannot be where the reply starts is malformed, not summed from a guess."""
    VLLMLike.how = "completing"

    class Liar(VLLMLike):
        def answer(self, path, body):
            status, out = super().answer(path, body)
            if not body.get("continue_final_message") and "prompt_logprobs" in out:
                out["prompt_logprobs"] = out["prompt_logprobs"][:3]
            return status, out

    running = serve_tokenising(Liar)
    url = next(running)
    b = OpenAICompatibleBackend(base_url=url, model="tiny", max_retries=0)
    b.form = "prompt_logprobs"
    with pytest.raises(BackendError, match="the prompt without the scored text has 3 tokens"):
        asyncio.run(b.score_choices([ScoreRequest(messages=MSGS, choices=("🙂 yes",), continuation=True)]))
    running.close()


def test_a_society_whose_replies_end_in_an_emoji_or_are_capped_finishes_on_the_likelihood_readers(tmp_path):
    """The probe's run, end to end through the CLI: every agent's reply ends in `` 🙂`` or is 100 kB (scored
    capped, ending in agora's truncation mark); both used to stop the run after 4 attempts."""
    from tests.helpers import agora

    class Replies(VLLMLike):
        count = 0

        def chat_reply(self, body):
            Replies.count += 1
            Replies.reply_text = ("A, for the greater good 🙂" if Replies.count % 2 else "B " + "x " * 50_000)
            return super().chat_reply(body)

    VLLMLike.how, VLLMLike.tail, VLLMLike.last_logprob = "raw", [], None  # vLLM V1's byte-level pieces: exact bytes
    running = serve_tokenising(Replies)
    url = next(running)
    try:
        res = agora("llm=openai_compatible", f"llm.base_url={url}", "llm.model=tiny", "llm.max_retries=0",
                    "population.size=4", "sim.steps=1", "sim.progress=false", "calibration.enabled=false",
                    f"hydra.run.dir={tmp_path / 'run'}", timeout=300)
    finally:
        running.close()
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stdout + res.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["backend"]["extra"]["continuation_form:prompt_logprobs"] == 1
    assert summary["backend"]["retries"] == 0 and summary["counts"]["preferences"] > 0
    scored = [body["messages"][-1]["content"] for _, body in Replies.requests if body.get("continue_final_message")]
    assert any(s.endswith("🙂") for s in scored) and any(s.endswith(" …") for s in scored)
