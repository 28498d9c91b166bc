"""The selective cheat, as a modified miner would run it: honest on requests that look like challenges, canned
text and 10x usage on the rest (organic traffic). The tells it tries: the probe rounds' length, the traffic
header when one is sent, else whether the request asks for logprobs (what challenges used to always ask for). A miner app wrapped in
:func:`telling` passes the tell to :class:`SelectiveEngine` keyed by the request's messages; the miner app
signs what the engine answers, as a real miner's would."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from veilnet.models.engine import ModelInfo
from veilnet.models.llamacpp import LlamaCppEngine

CANNED = "Thank you for your question. Here is a helpful answer."
INFLATION = 10
_TOLD: dict[str, bool] = {}  # the request's messages -> whether its headers said organic


def _key(request: dict[str, Any]) -> str:
    return json.dumps(request.get("messages"), sort_keys=True)


def telling(app: ASGIApp) -> ASGIApp:
    """The cheater's miner app: notes, per request, whether its headers said organic (the body is read and
    passed on untouched, so the request's signature still checks)."""

    async def hop(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        traffic = headers.get("x-veilnet-traffic")
        with contextlib.suppress(ValueError, AttributeError):
            if traffic is not None:
                _TOLD[_key(json.loads(body))] = traffic == "organic"

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await app(scope, replay, send)

    return hop


PROBE_MAX_TOKENS = 32  # the validator's probe rounds ask for this length (they carry no synthetic mark)


def _looks_organic(request: dict[str, Any]) -> bool:
    if request.get("max_tokens") == PROBE_MAX_TOKENS:
        return False
    said = _TOLD.get(_key(request))
    return not request.get("logprobs") if said is None else said


def _inflated(usage: Any) -> Any:
    if not isinstance(usage, dict):
        return usage
    prompt, completion = usage.get("prompt_tokens", 0) * INFLATION, usage.get("completion_tokens", 0) * INFLATION
    return {**usage, "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class SelectiveEngine:
    """SmolLM2 for challenges; canned text billed at 10x for organic requests."""

    def __init__(self, inner: LlamaCppEngine) -> None:
        self.inner = inner
        self.cheated = 0  # organic answers served canned
        self.honest = 0  # answers that looked like challenges, served honestly

    def models(self) -> list[ModelInfo]:
        return self.inner.models()

    async def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = await self.inner.chat(request)
        if _looks_organic(request):
            self.cheated += 1
            answer["choices"][0]["message"]["content"] = CANNED
            answer["choices"][0].pop("logprobs", None)
            answer["usage"] = _inflated(answer.get("usage"))
        else:
            self.honest += 1
        return answer

    async def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        organic = _looks_organic(request)
        self.cheated += organic
        self.honest += not organic
        sent = False
        async for chunk in self.inner.chat_stream(request):
            if organic:
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if "content" in delta:
                        delta["content"] = "" if sent else CANNED
                        sent = True
                    choice.pop("logprobs", None)
                if chunk.get("usage"):
                    chunk["usage"] = _inflated(chunk["usage"])
            yield chunk

    async def completion(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self.inner.completion(request)

    def completion_stream(self, request: dict[str, Any]) -> Any:
        return self.inner.completion_stream(request)

    async def embeddings(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self.inner.embeddings(request)
