"""The selective cheat, as a modified miner would run it: honest on requests that look like challenges, canned
text and 10x usage on the rest (organic traffic), told apart by the best tell there is (it knows what the apps
ask). The miner app signs what the engine answers, as a real miner's would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from veilnet.models.engine import ModelInfo
from veilnet.models.llamacpp import LlamaCppEngine

CANNED = "Thank you for your question. Here is a helpful answer."
INFLATION = 10
APP_PROMPT = "Tell me one fact about the number"  # what the test's app asks


def _looks_organic(request: dict[str, Any]) -> bool:
    """The strongest tell a cheater could have: it knows the apps' prompts. (Headers, parameters and timing
    tell nothing: tests/validator/test_challenges_unmarked.py.) A challenge replaying an app's prompt is
    cheated on too."""
    return any(isinstance(m, dict) and APP_PROMPT in str(m.get("content")) for m in request.get("messages") or [])


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
