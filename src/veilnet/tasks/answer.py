"""A miner's chat answer as a typed document (pydantic), parsed once; anything malformed is a reason, never
an exception (the answer comes from a party that may be hostile).

Only what verification reads is typed; other fields are ignored. ``choices[0]`` is the answer (with ``n`` > 1
the first choice is the one verified). An answer of tool calls has ``finish_reason`` ``tool_calls`` and its
calls (name and arguments as the miner wrote them).
"""

from __future__ import annotations

import builtins
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["AnsweredCall", "ChatAnswer", "ClaimedToken", "parse_chat_answer"]


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ClaimedToken(_Loose):
    """One logprobs entry as the miner gave it: llama.cpp merges a multi-byte character's byte tokens into one
    entry (its ``id`` and ``logprob`` are the last byte token's)."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    id: int | None = None

    @field_validator("logprob")
    @classmethod
    def _finite(cls, value: float) -> float:
        if math.isnan(value) or value > 1e-6:
            raise ValueError("a log probability is a number <= 0")
        return value

    @field_validator("bytes")
    @classmethod
    def _byte_values(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and not all(0 <= b < 256 for b in value):
            raise ValueError("bytes are values 0-255")
        return value

    @property
    def raw(self) -> builtins.bytes:
        return bytes(self.bytes) if self.bytes is not None else self.token.encode()


class _Logprobs(_Loose):
    content: list[ClaimedToken] | None = None


class _Function(_Loose):
    name: str
    arguments: str


class AnsweredCall(_Loose):
    """One tool call in an answer."""

    id: str = ""
    type: Literal["function"] = "function"
    function: _Function


class _Message(_Loose):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[AnsweredCall] | None = None


class _Choice(_Loose):
    index: int = 0
    finish_reason: Literal["stop", "length", "tool_calls"]
    message: _Message
    logprobs: _Logprobs | None = None


class _Usage(_Loose):
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)


class _Document(_Loose):
    model: str
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage


class ChatAnswer(_Loose):
    """What verification reads from a chat answer."""

    model: str
    content: str
    finish_reason: Literal["stop", "length", "tool_calls"]
    claimed: list[ClaimedToken] | None  # None: no logprobs in the answer
    tool_calls: list[AnsweredCall] | None = None
    prompt_tokens: int
    completion_tokens: int


def parse_chat_answer(document: Any) -> ChatAnswer | str:
    """The answer in ``document`` (a parsed ``chat.completion`` object), or why it cannot be verified."""
    try:
        parsed = _Document.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "answer"
        return f"malformed answer: {where}: {first['msg']}"
    choice = parsed.choices[0]
    if choice.index != 0:
        return "malformed answer: the first choice is not index 0"
    if (choice.finish_reason == "tool_calls") != bool(choice.message.tool_calls):
        return "malformed answer: finish_reason 'tool_calls' goes with tool calls, and only with them"
    return ChatAnswer(
        model=parsed.model,
        content=choice.message.content or "",
        finish_reason=choice.finish_reason,
        claimed=choice.logprobs.content if choice.logprobs is not None else None,
        tool_calls=choice.message.tool_calls or None,
        prompt_tokens=parsed.usage.prompt_tokens,
        completion_tokens=parsed.usage.completion_tokens,
    )
