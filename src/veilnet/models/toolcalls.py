"""Tool calls on llama.cpp for models without a tool-call format of their own (pure).

llama.cpp parses tool calls only for chat templates it recognises; for others (SmolLM2) it renders the tools
into the prompt (:mod:`veilnet.models.templates`) and nothing more. This module does the rest, the way
llama.cpp's own Hermes handling does, with the constraint expressed as a JSON schema (which llama.cpp turns
into a grammar):

- ``tool_choice`` ``none``: the tools are left out; a plain answer.
- a named function: the answer is constrained to one call of it, ``{"name": ..., "arguments": {...}}``, the
  arguments under the function's ``parameters`` schema.
- ``required``: the answer is constrained to calls of the declared functions: one call when
  ``parallel_tool_calls`` is false, else a JSON array of at most one call per declared function.
- ``auto`` (or no choice): the model writes freely; ``<tool_call>{...}</tool_call>`` blocks naming a declared
  function with a JSON object of arguments become calls, anything else stays text.

A constrained request's ``response_format`` is replaced by the call's schema (OpenAI answers a forced call
with the call, not with the format). Calls get ids ``call_<24 hex>``; arguments are re-serialised JSON.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

__all__ = ["ToolPlan", "call_schema", "parse_calls", "tool_message"]

_TOOL_FIELDS = ("tools", "tool_choice", "parallel_tool_calls")
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def _function_schema(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool["function"]
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    return {"type": "object", "properties": {"name": {"const": function["name"]}, "arguments": parameters},
            "required": ["name", "arguments"], "additionalProperties": False}


def call_schema(tools: list[dict[str, Any]], choice: Any, parallel: bool | None) -> dict[str, Any] | None:
    """The JSON schema a forced answer follows (None: the answer is not forced)."""
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        return _function_schema(next(t for t in tools if t["function"]["name"] == name))
    if choice != "required":
        return None
    one = _function_schema(tools[0]) if len(tools) == 1 else {"anyOf": [_function_schema(t) for t in tools]}
    if parallel is False:
        return one
    return {"type": "array", "items": one, "minItems": 1, "maxItems": len(tools)}


def _as_call(value: Any, names: set[str]) -> dict[str, Any] | None:
    if not isinstance(value, dict) or value.get("name") not in names or not isinstance(value.get("arguments"), dict):
        return None
    return {"id": "call_" + secrets.token_hex(12), "type": "function",
            "function": {"name": value["name"], "arguments": json.dumps(value["arguments"], ensure_ascii=False)}}


def parse_calls(text: str, tools: list[dict[str, Any]], *, forced: bool) -> list[dict[str, Any]] | None:
    """The tool calls ``text`` makes (OpenAI's ``tool_calls`` entries), None when it makes none. ``forced``:
    the text is the constrained JSON (a call or an array of calls); else ``<tool_call>`` blocks."""
    names = {t["function"]["name"] for t in tools}
    if forced:
        try:
            value = json.loads(text)
        except ValueError:
            return None  # cut short by max_tokens: the text stays as it is
        items = value if isinstance(value, list) else [value]
    else:
        items = []
        for block in _BLOCK.findall(text):
            try:
                items.append(json.loads(block))
            except ValueError:
                return None
    calls = [_as_call(item, names) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]


def tool_message(text: str, calls: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The assistant message for ``text``: its calls when it made some, else the text."""
    if calls is None:
        return {"role": "assistant", "content": text}
    return {"role": "assistant", "content": None, "tool_calls": calls}


@dataclass(frozen=True)
class ToolPlan:
    """How one chat request with tools runs: ``native`` is what llama.cpp gets; ``tools`` the declared ones
    (empty: no tool handling); ``forced``: the answer is constrained to calls."""

    native: dict[str, Any]
    tools: list[dict[str, Any]]
    forced: bool

    @classmethod
    def of(cls, request: dict[str, Any]) -> ToolPlan:
        tools = list(request.get("tools") or [])
        choice = request.get("tool_choice")
        native = {k: v for k, v in request.items() if k not in _TOOL_FIELDS}
        if not tools or choice == "none":
            return cls(native, [], False)
        native["tools"] = tools  # rendered into the prompt by the chat template
        schema = call_schema(tools, choice, request.get("parallel_tool_calls"))
        if schema is not None:
            native["response_format"] = {"type": "json_schema", "json_schema": {"name": "tool_calls", "schema": schema}}
        return cls(native, tools, schema is not None)

    def answer(self, text: str, finish: Any) -> tuple[dict[str, Any], Any]:
        """The message and finish reason for generated ``text`` that ended with ``finish``."""
        if not self.tools:
            return {"role": "assistant", "content": text}, finish
        calls = parse_calls(text, self.tools, forced=self.forced) if finish == "stop" else None
        return tool_message(text, calls), ("tool_calls" if calls else finish)
