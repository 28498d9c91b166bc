"""Hostile and malformed requests, each with the answer the gateway owes it: the status and a piece of the
error that names what is wrong (its message, ``param`` or ``code``). Requests a caller may send that no
miner should ever see are here as much as plain garbage; none may reach a miner as a failure of the miner's."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["CASES", "MODEL", "Case", "chat_body"]

MODEL = "SmolLM2-135M-Instruct"
LIMIT = 4 * 1024 * 1024  # the gateway's max_body_bytes
CHAT = "/v1/chat/completions"


def chat_body(**changes: Any) -> dict[str, Any]:
    """A small valid chat request with ``changes`` (a value of ``...`` removes the field)."""
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def raw(body: Any) -> bytes:
    return json.dumps(body, allow_nan=True).encode()  # NaN and Infinity as JavaScript writes them


def sized(total: int) -> bytes:
    """A chat request of exactly ``total`` bytes: one long user message."""
    empty = raw(chat_body(messages=[{"role": "user", "content": ""}]))
    return raw(chat_body(messages=[{"role": "user", "content": "a " * ((total - len(empty)) // 2)}])).ljust(total)


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    status: int
    names: str  # found in the error's message, param or code
    path: str = CHAT
    headers: dict[str, str] | None = None  # sent instead of the test key's Authorization
    content_type: str = "application/json"


def _cases() -> list[Case]:
    text_part = {"type": "text", "text": "what is this?"}
    image_part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    audio_part = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    return [
        # sizes: near the limit a request is a prompt longer than the model's context; past it, too large
        Case("body just under the limit", sized(LIMIT - 64), 400, "context"),
        Case("body at the limit", sized(LIMIT), 400, "context"),
        Case("body one byte over the limit", sized(LIMIT + 1), 413, "limit"),
        Case("prompt longer than the context", raw(chat_body(messages=[{"role": "user", "content": "word " * 20_000}])),
             400, "context"),
        Case("streamed prompt longer than the context",
             raw(chat_body(stream=True, messages=[{"role": "user", "content": "word " * 20_000}])), 400, "context"),
        Case("completion prompt longer than the context", raw({"model": MODEL, "prompt": "word " * 20_000, "max_tokens": 4}),
             400, "context", path="/v1/completions"),
        Case("embeddings input longer than the context", raw({"model": MODEL, "input": "word " * 20_000}),
             400, "input", path="/v1/embeddings"),
        Case("many messages past the context", raw(chat_body(messages=[{"role": "user", "content": "hello there"}] * 5000)),
             400, "context"),
        Case("max_tokens past any model", raw(chat_body(max_tokens=10**9)), 400, "max_tokens"),
        # numbers JSON does not have
        Case("NaN logit_bias", raw(chat_body(logit_bias={"42": float("nan")})), 400, "logit_bias"),
        Case("infinite logit_bias", raw(chat_body(logit_bias={"42": float("inf")})), 400, "logit_bias"),
        Case("negative infinite logit_bias", raw(chat_body(logit_bias={"42": float("-inf")})), 400, "logit_bias"),
        Case("logit_bias out of range", raw(chat_body(logit_bias={"42": 1e9})), 400, "logit_bias"),
        Case("logit_bias on a word, not a token id", raw(chat_body(logit_bias={"hello": 5})), 400, "logit_bias"),
        Case("logit_bias on a token id past 32 bits", raw(chat_body(logit_bias={str(2**40): 5})), 400, "logit_bias"),
        Case("logit_bias on a negative token id", raw(chat_body(logit_bias={"-5": 5})), 400, "logit_bias"),
        Case("logit_bias of the wrong type", raw(chat_body(logit_bias=[1, 2])), 400, "logit_bias"),
        Case("NaN temperature", raw(chat_body(temperature=float("nan"))), 400, "temperature"),
        Case("infinite top_p", raw(chat_body(top_p=float("inf"))), 400, "top_p"),
        Case("NaN text part", raw(chat_body(messages=[{"role": "user", "content": [{"type": "text", "text": float("nan")}]}])),
             400, "text"),
        Case("NaN content", raw(chat_body(messages=[{"role": "user", "content": float("nan")}])), 400, "content"),
        Case("seed past 64 bits", raw(chat_body(seed=10**30)), 400, "seed"),
        # content parts the model does not take
        Case("image part to a chat-only model", raw(chat_body(messages=[{"role": "user", "content": [text_part, image_part]}])),
             404, "image input"),
        Case("audio part to a chat-only model", raw(chat_body(messages=[{"role": "user", "content": [text_part, audio_part]}])),
             404, "audio input"),
        Case("part of an unknown type", raw(chat_body(messages=[{"role": "user", "content": [{"type": "video", "url": "x"}]}])),
             400, "video"),
        # OpenRouter's models list
        Case("350k-name models list", raw(chat_body(models=[f"m{i}" for i in range(350_000)])), 400, "models"),
        Case("models list past its length", raw(chat_body(models=[MODEL] * 9)), 400, "models"),
        Case("models list of numbers", raw(chat_body(models=[1, 2, 3])), 400, "models"),
        Case("models list with an empty name", raw(chat_body(models=[""])), 400, "models"),
        Case("models as a string", raw(chat_body(models=MODEL)), 400, "models"),
        Case("provider preferences of the wrong shape", raw(chat_body(provider={"order": "fastest"})), 400, "order"),
        # wrong types and values
        Case("messages as a string", raw(chat_body(messages="hi")), 400, "messages"),
        Case("no messages", raw(chat_body(messages=[])), 400, "messages"),
        Case("messages missing", raw(chat_body(messages=...)), 400, "messages"),
        Case("model missing", raw(chat_body(model=...)), 400, "model"),
        Case("model as a number", raw(chat_body(model=7)), 400, "model"),
        Case("unknown model", raw(chat_body(model="no-such-model")), 404, "no-such-model"),
        Case("unknown role", raw(chat_body(messages=[{"role": "robot", "content": "hi"}])), 400, "role"),
        Case("max_tokens as words", raw(chat_body(max_tokens="ten")), 400, "max_tokens"),
        Case("negative max_tokens", raw(chat_body(max_tokens=-1)), 400, "max_tokens"),
        Case("temperature as words", raw(chat_body(temperature="hot")), 400, "temperature"),
        Case("stream as words", raw(chat_body(stream="yes please")), 400, "stream"),
        Case("n of 9", raw(chat_body(n=9)), 400, "n"),
        Case("five stop sequences", raw(chat_body(stop=["a", "b", "c", "d", "e"])), 400, "stop"),
        Case("stop of numbers", raw(chat_body(stop=[1, 2])), 400, "stop"),
        Case("unknown field", raw(chat_body(frobnicate=True)), 400, "frobnicate"),
        Case("unknown field in a message", raw(chat_body(messages=[{"role": "user", "content": "hi", "mood": "x"}])),
             400, "mood"),
        Case("completion prompt as token ids", raw({"model": MODEL, "prompt": [1, 2, 3], "max_tokens": 4}), 400,
             "prompt", path="/v1/completions"),
        Case("embeddings of nothing", raw({"model": MODEL, "input": []}), 400, "input", path="/v1/embeddings"),
        # not JSON, or not an object
        Case("invalid JSON", b'{"model": ', 400, "JSON"),
        Case("empty body", b"", 400, "JSON"),
        Case("JSON array", b"[]", 400, "object"),
        Case("JSON string", b'"hello"', 400, "object"),
        Case("not UTF-8", b'{"model": "\xff\xfe"}', 400, "JSON"),
        Case("deeply nested JSON", b"[" * 100_000 + b"]" * 100_000, 400, "JSON"),
        Case("lone surrogate in content", b'{"model": "' + MODEL.encode() + b'", "max_tokens": 4, '
             b'"messages": [{"role": "user", "content": "\\ud800"}]}', 400, "escape"),
        Case("form-encoded body", b"model=x&messages=hi", 400, "JSON", content_type="application/x-www-form-urlencoded"),
        # who is asking
        Case("no API key", raw(chat_body()), 401, "API key", headers={}),
        Case("unknown API key", raw(chat_body()), 401, "API key", headers={"Authorization": "Bearer vn-not-a-key"}),
        Case("basic auth", raw(chat_body()), 401, "API key", headers={"Authorization": "Basic dXNlcjpwYXNz"}),
        Case("empty bearer", raw(chat_body()), 401, "API key", headers={"Authorization": "Bearer "}),
        Case("bearer of 8 KB", raw(chat_body()), 401, "API key", headers={"Authorization": "Bearer " + "x" * 8192}),
    ]


CASES = _cases()
