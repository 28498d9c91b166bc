"""A streamed chat completion put back together as the non-streamed answer it stands for (pure).

Verification reads one answer shape; a streamed answer (the chunks a miner sent, in order) becomes the
``chat.completion`` document a non-streamed request would have returned: content and logprobs entries
concatenated, tool calls put back together from their deltas (by their ``index``: the first delta of a call
brings its id, type and name, later ones append to its arguments), the last finish reason, the usage chunk's
usage. Chunks that are not objects, or choices of
another index, are skipped: whatever they held was never part of choice 0's answer, and a verifier then
judges what is left.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from veilnet.protocol import sse

__all__ = ["assemble_chat_stream", "assemble_sse_body", "streamed_content_bytes"]


def assemble_chat_stream(chunks: Iterable[Any]) -> dict[str, Any]:
    """The ``chat.completion`` document the streamed ``chunks`` (parsed SSE ``data`` objects) add up to."""
    content: list[str] = []
    entries: list[Any] = []
    saw_logprobs = False
    finish: Any = None
    usage: Any = None
    head: dict[str, Any] = {}
    calls: dict[int, dict[str, Any]] = {}
    role = "assistant"
    for chunk in chunks:
        if not isinstance(chunk, dict):
            continue
        for key in ("id", "created", "model", "system_fingerprint"):
            if key in chunk and key not in head:
                head[key] = chunk[key]
        if chunk.get("usage") is not None:
            usage = chunk["usage"]
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if isinstance(delta.get("content"), str):
                    content.append(delta["content"])
                if isinstance(delta.get("role"), str):
                    role = delta["role"]
                if isinstance(delta.get("tool_calls"), list):
                    _add_call_deltas(calls, delta["tool_calls"])
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
                saw_logprobs = True
                entries.extend(logprobs["content"])
            if choice.get("finish_reason") is not None:
                finish = choice["finish_reason"]
    message: dict[str, Any] = {"role": role, "content": "".join(content)}
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
        message["content"] = message["content"] or None
    answer: dict[str, Any] = {**head, "object": "chat.completion", "choices": [{
        "index": 0, "finish_reason": finish, "message": message,
        **({"logprobs": {"content": entries}} if saw_logprobs else {}),
    }]}
    if usage is not None:
        answer["usage"] = usage
    return answer


def assemble_sse_body(body: bytes) -> dict[str, Any]:
    """:func:`assemble_chat_stream` over an SSE body's data lines (lines that are not JSON are never part of
    the answer: they are skipped)."""
    chunks: list[Any] = []
    for line in body.split(b"\n"):
        payload = sse.payload_of(line)
        if payload is None or payload == b"[DONE]":
            continue
        try:
            chunks.append(json.loads(payload))
        except ValueError:
            continue
    return assemble_chat_stream(chunks)


def streamed_content_bytes(body: bytes) -> int:
    """The UTF-8 bytes of choice 0's content in the whole data lines of ``body``, an SSE body or any prefix of
    one (a line cut short is not counted): how much of an answer had arrived when that prefix had."""
    whole = body[: body.rfind(b"\n") + 1]
    content = assemble_sse_body(whole)["choices"][0]["message"]["content"]
    return len(content.encode()) if isinstance(content, str) else 0


def _add_call_deltas(calls: dict[int, dict[str, Any]], deltas: list[Any]) -> None:
    """Fold one chunk's ``tool_calls`` deltas into ``calls`` (index -> the call so far)."""
    for delta in deltas:
        if not isinstance(delta, dict) or not isinstance(delta.get("index", 0), int):
            continue
        call = calls.setdefault(delta.get("index", 0), {"id": "", "type": "function",
                                                        "function": {"name": "", "arguments": ""}})
        if isinstance(delta.get("id"), str):
            call["id"] = delta["id"]
        function = delta.get("function")
        if isinstance(function, dict):
            if isinstance(function.get("name"), str):
                call["function"]["name"] += function["name"]
            if isinstance(function.get("arguments"), str):
                call["function"]["arguments"] += function["arguments"]
