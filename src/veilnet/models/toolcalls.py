"""Tool calls on llama.cpp, the same for every model (pure).

The chat template renders the tools (SmolLM2's own cannot: :mod:`veilnet.models.templates`). llama.cpp
parses calls itself only for call formats it recognises, and applies no grammar of ours beside ``tools``, so
this module decides how each request runs, the way llama.cpp's own Hermes handling does, with the constraint
expressed as a JSON schema:

- ``tool_choice`` ``none``: the tools are left out; a plain answer.
- a named function: the answer is constrained to one call of it, ``{"name": ..., "arguments": {...}}``, the
  arguments under the function's ``parameters`` schema.
- ``required``: the answer is constrained to calls of the declared functions: one call when
  ``parallel_tool_calls`` is false, else a JSON array of at most one call per declared function.
- ``auto`` (or no choice): the model writes freely; the calls llama.cpp parsed, else ``<tool_call>{...}</tool_call>``
  blocks naming a declared function with a JSON object of arguments, become calls; anything else stays text.

A forced answer's ``response_format`` is replaced by the call's schema (OpenAI answers a forced call with the
call, not with the format), and its tools reach the chat template as ``chat_template_kwargs`` rather than as
``tools`` (llama.cpp takes no grammar beside ``tools``), so the engine generates the calls under its compact
grammar: ``{"name":"f","arguments":{...}}`` (an array of them for ``required``), exactly what
:func:`calls_json` rebuilds from the calls. Their arguments are kept as the model wrote them, so a validator
can rebuild the generated text and re-score it. Calls get ids ``call_<24 hex>``; the arguments of calls
written freely (``auto``) are re-serialised JSON.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ToolPlan", "argument_spans", "call_format", "call_schema", "calls_json", "merge_call_deltas", "parse_calls",
           "tool_message"]

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


def call_format(tools: list[dict[str, Any]], choice: Any, parallel: bool | None) -> dict[str, Any] | None:
    """The ``json_schema`` response format a forced answer is generated under (None: not forced)."""
    schema = call_schema(tools, choice, parallel)
    return None if schema is None else {"type": "json_schema", "json_schema": {"name": "tool_calls", "schema": schema}}


def calls_json(calls: Sequence[tuple[str, str]], *, array: bool) -> str:
    """The compact JSON of ``calls`` (name, arguments text) as a forced answer writes them: one object, or an
    array when the constraint is one (``tool_choice`` ``required`` with parallel calls)."""
    items = [f'{{"name":{json.dumps(name, ensure_ascii=False)},"arguments":{arguments}}}' for name, arguments in calls]
    return "[" + ",".join(items) + "]" if array else items[0]


def argument_spans(text: str) -> list[tuple[int, int]] | None:
    """Where each call's arguments lie in ``text`` (character offsets), when ``text`` is laid out exactly as
    :func:`calls_json` writes it (the engine's compact grammar); None for any other layout."""
    decoder = json.JSONDecoder()
    array = text.startswith("[")
    position, found = (1 if array else 0), []
    try:
        while True:
            for part in ('{"name":', None, ',"arguments":', None, "}"):
                if part is None:
                    start = position
                    position = decoder.raw_decode(text, position)[1]
                elif text.startswith(part, position):
                    position += len(part)
                else:
                    return None
            found.append((start, position - 1))
            if not array or text[position:position + 1] != ",":
                break
            position += 1
    except ValueError:
        return None
    end = position + (1 if array and text[position:position + 1] == "]" else 0)
    return found if end == len(text) and (not array or end > position) else None


def _as_call(value: Any, names: set[str], written: str | None) -> dict[str, Any] | None:
    if not isinstance(value, dict) or value.get("name") not in names or not isinstance(value.get("arguments"), dict):
        return None
    arguments = written if written is not None else json.dumps(value["arguments"], ensure_ascii=False)
    return {"id": "call_" + secrets.token_hex(12), "type": "function",
            "function": {"name": value["name"], "arguments": arguments}}


def parse_calls(text: str, tools: list[dict[str, Any]], *, forced: bool) -> list[dict[str, Any]] | None:
    """The tool calls ``text`` makes (OpenAI's ``tool_calls`` entries), None when it makes none. ``forced``:
    the text is the constrained JSON (a call or an array of calls); else ``<tool_call>`` blocks."""
    names = {t["function"]["name"] for t in tools}
    written: Sequence[str | None] = []
    if forced:
        try:
            value = json.loads(text)
        except ValueError:
            return None  # cut short by max_tokens: the text stays as it is
        items = value if isinstance(value, list) else [value]
        written = [text[start:end] for start, end in argument_spans(text) or []]
    else:
        items = []
        for block in _BLOCK.findall(text):
            try:
                items.append(json.loads(block))
            except ValueError:
                return None
    if len(written) != len(items):
        written = [None] * len(items)
    calls = [_as_call(item, names, arguments) for item, arguments in zip(items, written, strict=True)]
    if not calls or any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]


def tool_message(text: str, calls: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The assistant message for ``text``: its calls when it made some, else the text."""
    if calls is None:
        return {"role": "assistant", "content": text}
    return {"role": "assistant", "content": None, "tool_calls": calls}


def _as_rendered(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool as llama.cpp hands ``tools`` to the chat template (it parses and re-serialises them: every
    function gets a description and parameters, other fields go), so the prompt is the same either way."""
    function = tool["function"]
    return {"type": "function", "function": {"name": function["name"], "description": function.get("description", ""),
                                             "parameters": function.get("parameters", {})}}


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
        forced = call_format(tools, choice, request.get("parallel_tool_calls"))
        if forced is None:
            native["tools"] = tools  # rendered into the prompt by the chat template
            return cls(native, tools, False)
        # the template renders the same prompt from the kwargs, and llama.cpp then takes the compact grammar
        native["chat_template_kwargs"] = {**(native.get("chat_template_kwargs") or {}),
                                          "tools": [_as_rendered(tool) for tool in tools]}
        native["response_format"] = forced
        return cls(native, tools, True)

    def answer(self, text: str, finish: Any, parsed: list[dict[str, Any]] | None = None) -> tuple[dict[str, Any], Any]:
        """The message and finish reason for generated ``text`` that ended with ``finish``. ``parsed``: the
        calls llama.cpp itself parsed out of the text (it does for the call formats it knows, ``auto``)."""
        if not self.tools:
            return {"role": "assistant", "content": text}, finish
        names = {t["function"]["name"] for t in self.tools}
        native = [_as_call(value, names, written) for value, written in _parsed_calls(parsed or [])]
        if native and all(call is not None for call in native):
            return {"role": "assistant", "content": text or None, "tool_calls": native}, "tool_calls"
        calls = parse_calls(text, self.tools, forced=self.forced) if finish in ("stop", "tool_calls") else None
        if calls:
            return tool_message(text, calls), "tool_calls"
        return tool_message(text, None), ("stop" if finish == "tool_calls" else finish)


def _parsed_calls(calls: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """llama.cpp's parsed calls as ``{"name", "arguments"}`` (arguments decoded) and the arguments' text;
    none when one of them is not a call with JSON arguments."""
    found = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            return []
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except (TypeError, ValueError):
            return []
        found.append(({"name": function.get("name"), "arguments": arguments}, str(function.get("arguments") or "{}")))
    return found


def merge_call_deltas(deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Streamed ``tool_calls`` deltas put back together by index (name and id from the first, arguments
    concatenated), as llama.cpp's non-streamed answer would give them."""
    merged: dict[int, dict[str, Any]] = {}
    for delta in deltas:
        index = delta.get("index", 0) if isinstance(delta, dict) else None
        if not isinstance(index, int):
            continue
        call = merged.setdefault(index, {"type": "function", "function": {"name": None, "arguments": ""}})
        function = delta.get("function") or {}
        call["function"]["name"] = call["function"]["name"] or function.get("name")
        call["function"]["arguments"] += function.get("arguments") or ""
    return [merged[i] for i in sorted(merged)]
