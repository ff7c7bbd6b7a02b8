"""Real tokenizers and loopback fake model servers that echo prompts the way real servers do.

The tokenizers are trained here with Hugging Face ``tokenizers`` (no model files needed): a byte-level
BPE (GPT-2 / Llama-3 / SmolLM2's pre-tokenizer and decoder) and a SentencePiece-style BPE with byte
fallback (Llama-2 / Mistral's fast tokenizer: ``▁`` for spaces, ``<0xNN>`` pieces for bytes outside the
vocabulary). ``sentencepiece`` and its model files are not installed here; this is the pipeline
``transformers`` converts SentencePiece models to.

:class:`VLLMLike` answers chat completions with vLLM's ``prompt_logprobs`` (and generated text and label
logprobs); :class:`LlamaCppLike` answers as llama-cpp-python's server does: chat completions without
prompt log-probabilities, and ``/v1/completions`` with ``echo`` (only when started with
``--logits_all true``). Both tokenise the real prompt, so what a test expects is computed from the
same tokenizer, not written by hand.
"""

from __future__ import annotations

import json
import string
import threading
from collections.abc import Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CORPUS = [string.printable, "I swim out. Yes, for the greater good. The cafe is naive, no.", "hello world " * 3,
          "是的。我们游泳", "Say yes. The reply is kind and fair.", "<|im_start|>assistant\n"] * 20
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPELLINGS = ("raw", "decoded", "completing", "ignore")


@cache
def byte_level():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                        special_tokens=["<|im_start|>", "<|im_end|>"], show_progress=False))
    return tok


@cache
def sentencepiece():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=500, special_tokens=["<s>", "</s>", "[INST]", "[/INST]"],
                                                        show_progress=False))
    spec = json.loads(tok.to_str())  # then the 256 byte pieces in the model's vocabulary, as Llama's holds them
    vocab = spec["model"]["vocab"]
    vocab.update({f"<0x{b:02X}>": len(vocab) + b for b in range(256)})
    spec["model"]["byte_fallback"] = True
    return Tokenizer.from_str(json.dumps(spec))


def piece_bytes(tok, piece: str) -> bytes:
    """A vocabulary piece's bytes (both tokenizers' raw spellings are exact)."""
    if tok is byte_level():
        from agents.llm.server_logprobs import _byte_table

        table = _byte_table()
        return bytes(table[c] for c in piece) if all(c in table for c in piece) else piece.encode()
    if piece.startswith("<0x") and len(piece) == 6:
        return bytes([int(piece[3:5], 16)])
    return piece.replace("\u2581", " ").encode()


def spell(tok, ids: list[int], how: str) -> list[str]:
    """The tokens as a server spells them: ``raw`` vocabulary pieces (vLLM V1 at first), ``decoded`` one
    by one (U+FFFD for a split character; vLLM <= 0.10), ``completing`` (a split character's bytes on the
    token that completes it, ``""`` before; vLLM >= 0.11) or ``ignore`` (split bytes dropped;
    llama-cpp-python's echo)."""
    pieces = [tok.id_to_token(i) for i in ids]
    if how == "raw":
        return pieces
    if how == "decoded":
        return [tok.decode([i], skip_special_tokens=False) for i in ids]
    raw = [piece_bytes(tok, p) for p in pieces]
    if how == "ignore":
        return [b.decode("utf-8", errors="ignore") for b in raw]
    out, pending = [], b""
    for b in raw:  # completing
        pending += b
        for cut in range(len(pending), -1, -1):
            try:
                done = pending[:cut].decode()
            except UnicodeDecodeError:
                continue
            out.append(done)
            pending = pending[cut:]
            break
    return out


def stream(tok, prompt: str, text: str, how: str) -> tuple[list[str], int]:
    """``prompt + text`` tokenised and spelt; the index of the first token holding a byte of ``text``."""
    enc = tok.encode(prompt + text, add_special_tokens=False)
    start = next(k for k, (_, end) in enumerate(enc.offsets) if end > len(prompt))
    return spell(tok, enc.ids, how), start


def token_logprob(token_id: int) -> float:
    """The fake servers' log-probability of a prompt token: fixed per token id, so a test can sum it."""
    return -0.05 - 0.01 * (token_id % 97)


def render(messages: list[dict], *, add_generation_prompt: bool, continue_final: bool = False) -> str:
    """ChatML, as transformers' ``apply_chat_template`` renders it; a continued final message ends the
    prompt (its trailing whitespace stripped, as transformers does)."""
    if continue_final:
        *head, last = messages
        return render(head, add_generation_prompt=True) + last["content"].rstrip()
    out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return out + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def expected_logprob(prompt_without: str, text: str) -> float:
    """The sum the servers below give ``text`` scored after ``prompt_without`` (byte-level tokenizer)."""
    enc = byte_level().encode(prompt_without + text, add_special_tokens=False)
    start = next(k for k, (_, end) in enumerate(enc.offsets) if end > len(prompt_without))
    return sum(token_logprob(i) for i in enc.ids[start:])


class _Server(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests: list[tuple[str, dict]] = []
    reply_text = "A because it is kind."

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.send({"object": "list", "data": [{"id": "tiny", "object": "model"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, body))
        status, out = self.answer(self.path, body)
        self.send(out, status)

    def answer(self, path: str, body: dict) -> tuple[int, dict]:
        raise NotImplementedError

    def send(self, out: dict, status: int = 200) -> None:
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a test of its timeout): nothing to tell
            self.close_connection = True

    def chat_reply(self, body: dict) -> dict:
        """Generated text, or (``logprobs``) the label ``A`` with top logprobs."""
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": type(self).reply_text}}
        if body.get("logprobs"):
            top = [{"token": "A", "logprob": -0.3, "bytes": None}, {"token": "B", "logprob": -1.5, "bytes": None}]
            choice["message"]["content"] = "A"
            choice["logprobs"] = {"content": [{"token": "A", "logprob": -0.3, "bytes": None, "top_logprobs": top}]}
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model"), "choices": [choice],
                "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}}


class VLLMLike(_Server):
    """vLLM: chat ``prompt_logprobs`` of a continued assistant message, tokens spelt ``how``; ``tail``
    (a malformed server) is appended to every echoed prompt."""

    how = "decoded"
    tail: list[tuple[str, float]] = []
    last_logprob: object = None  # set: the last prompt token's log-probability is this instead

    def answer(self, path, body):
        if not path.endswith("/chat/completions"):
            return 404, {"error": {"message": "not found"}}
        out = self.chat_reply(body)
        if body.get("prompt_logprobs") is not None:
            cont = bool(body.get("continue_final_message"))
            prompt = render(body["messages"], add_generation_prompt=not cont, continue_final=cont)
            ids = byte_level().encode(prompt, add_special_tokens=False).ids
            tokens = spell(byte_level(), ids, VLLMLike.how)
            out["prompt_logprobs"] = [None] + [{str(i): {"logprob": token_logprob(i), "rank": 1, "decoded_token": t}}
                                               for i, t in list(zip(ids, tokens, strict=True))[1:]]
            out["prompt_logprobs"] += [{"0": {"logprob": lp, "rank": 1, "decoded_token": t}} for t, lp in VLLMLike.tail]
            if VLLMLike.last_logprob is not None:
                bad = None if VLLMLike.last_logprob == "null" else VLLMLike.last_logprob
                next(iter(out["prompt_logprobs"][-1].values()))["logprob"] = bad
        return 200, out


class LlamaCppLike(_Server):
    """llama-cpp-python's server: no ``prompt_logprobs``; ``/v1/completions`` echoes the prompt's tokens
    (decoded, split bytes dropped) and the generated ones, and refuses ``logprobs`` unless
    ``logits_all``."""

    logits_all = True
    generated = [(" I", -1.0)]

    def answer(self, path, body):
        if path.endswith("/chat/completions"):
            return 200, self.chat_reply(body)
        if not path.endswith("/completions"):
            return 404, {"error": {"message": "not found"}}
        if body.get("logprobs") is not None and not LlamaCppLike.logits_all:
            return 500, {"error": {"message": "logprobs is not supported for models created with logits_all=False",
                                   "type": "internal_server_error"}}
        prompt = body["prompt"]
        ids = byte_level().encode(prompt, add_special_tokens=False).ids
        tokens = spell(byte_level(), ids, "ignore") + [t for t, _ in LlamaCppLike.generated]
        values = [None] + [token_logprob(i) for i in ids[1:]] + [lp for _, lp in LlamaCppLike.generated]
        logprobs = {"tokens": tokens, "token_logprobs": values, "top_logprobs": [None] * len(tokens),
                    "text_offset": [0] * len(tokens)}
        text = prompt + "".join(t for t, _ in LlamaCppLike.generated)
        return 200, {"id": "c", "object": "text_completion", "created": 0, "model": body.get("model"),
                     "choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": "length"}],
                     "usage": {"prompt_tokens": len(ids), "completion_tokens": len(LlamaCppLike.generated),
                               "total_tokens": len(ids) + len(LlamaCppLike.generated)}}


def serve(handler) -> Iterator[str]:
    """Run ``handler`` on a loopback port; yield its base URL (``.../v1``)."""
    handler.requests = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    finally:
        srv.shutdown()
        srv.server_close()


def chatml_tokenizer_folder(path) -> str:
    """A Hugging Face tokenizer folder (the byte-level tokenizer, ChatML template) for ``llm.tokenizer``."""
    from transformers import PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_object=byte_level(), chat_template=CHATML).save_pretrained(str(path))
    return str(path)
