"""Tool calls on llama.cpp, the same for every model (pure).

The tools reach the chat template as ``chat_template_kwargs`` (SmolLM2's own template cannot show them:
:mod:`veilnet.models.templates`), rendered as llama.cpp renders ``tools``, so the prompt is the one ``tools``
gives; but llama.cpp then applies no call format of its own (it parses calls only for formats it recognises,
and takes no grammar beside ``tools``). This module runs the calls, the way llama.cpp's Hermes handling does,
with the constraint expressed as a JSON schema:

- ``tool_choice`` ``none``: the tools are left out; a plain answer.
- a named function: the answer is constrained to one call of it, ``{"name":...,"arguments":{...}}``, the
  arguments under the function's ``parameters`` schema (no keys beyond those it declares, unless the schema
  says otherwise).
- ``required``: the answer is constrained to calls of the declared functions: one call when
  ``parallel_tool_calls`` is false, else a JSON array of at most one call per declared function.
- ``auto`` (or no choice): the model writes freely; ``<tool_call>{...}</tool_call>`` blocks naming a declared
  function with arguments valid under its schema become calls and the text before them the content; an
  answer with any other block stays text.

A forced answer's ``response_format`` is replaced by the call's schema (OpenAI answers a forced call with the
call, not with the format), so the engine generates it under its compact grammar, exactly the text
:func:`calls_json` rebuilds from the calls. Every call's arguments are kept as the model wrote them, so a
validator can rebuild what was generated and re-score it: forced calls exactly, freely written ones
(:func:`block_calls_text`) in their content and arguments. Calls get ids ``call_<24 hex>``.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from veilnet.protocol.jsonschemas import schema_errors

__all__ = ["ToolPlan", "argument_spans", "block_calls_text", "call_format", "call_schema", "calls_json", "parse_calls",
           "tool_message", "written_calls"]

_TOOL_FIELDS = ("tools", "tool_choice", "parallel_tool_calls")
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def _function_schema(tool: dict[str, Any]) -> dict[str, Any]:
    """One call of ``tool``: its name, and arguments under its parameters, held to the declared parameters
    when the schema leaves others open (a function takes the arguments it declares; a small model left free
    to add keys can spend its whole budget on them)."""
    function = tool["function"]
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    if parameters.get("properties") and "additionalProperties" not in parameters:
        parameters = {**parameters, "additionalProperties": False}
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


def _member_span(text: str, key: str) -> tuple[int, int] | None:
    """Where member ``key``'s value lies in ``text``, a JSON object (character offsets); None when ``text``
    is not one object or has no such member."""
    decoder, blank = json.JSONDecoder(), " \t\n\r"

    def skip(position: int) -> int:
        while position < len(text) and text[position] in blank:
            position += 1
        return position

    position = skip(0)
    if text[position:position + 1] != "{":
        return None
    position = skip(position + 1)
    try:
        while text[position:position + 1] == '"':
            name, position = decoder.raw_decode(text, position)
            position = skip(position)
            if text[position:position + 1] != ":":
                return None
            start = skip(position + 1)
            position = decoder.raw_decode(text, start)[1]
            if name == key:
                return start, position
            position = skip(position)
            if text[position:position + 1] != ",":
                return None
            position = skip(position + 1)
    except ValueError:
        return None
    return None


def block_calls_text(content: str, calls: Sequence[tuple[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """Freely written calls (``auto``) as the chat template asks for them: ``content`` then one
    ``<tool_call>`` block per call (name, arguments text), and where ``content`` and each call's arguments lie
    in that text (character offsets): the parts the answer holds as the model wrote them."""
    text, spans = content, [(0, len(content))]
    for index, (name, arguments) in enumerate(calls):
        text += ("\n" if index else "") + f'<tool_call>\n{{"name": {json.dumps(name, ensure_ascii=False)}, "arguments": '
        spans.append((len(text), len(text) + len(arguments)))
        text += arguments + "}\n</tool_call>"
    return text, spans


def _as_call(value: Any, names: set[str], written: str | None) -> dict[str, Any] | None:
    if not isinstance(value, dict) or value.get("name") not in names or not isinstance(value.get("arguments"), dict):
        return None
    arguments = written if written is not None else json.dumps(value["arguments"], ensure_ascii=False)
    return {"id": "call_" + secrets.token_hex(12), "type": "function",
            "function": {"name": value["name"], "arguments": arguments}}


def parse_calls(text: str, tools: list[dict[str, Any]], *, forced: bool) -> list[dict[str, Any]] | None:
    """The tool calls ``text`` makes (OpenAI's ``tool_calls`` entries), None when it makes none. ``forced``:
    the text is the constrained JSON (a call or an array of calls); else ``<tool_call>`` blocks
    (:func:`written_calls`)."""
    names = {t["function"]["name"] for t in tools}
    if not forced:
        found = written_calls(text, tools)
        return None if found is None else found[1]
    try:
        value = json.loads(text)
    except ValueError:
        return None  # cut short by max_tokens: the text stays as it is
    items = value if isinstance(value, list) else [value]
    spans = argument_spans(text) or []
    written: list[str | None] = [text[a:b] for a, b in spans] if len(spans) == len(items) else [None] * len(items)
    calls = [_as_call(item, names, arguments) for item, arguments in zip(items, written, strict=True)]
    if not calls or any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]


def written_calls(text: str, tools: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]] | None:
    """Freely written text's ``<tool_call>`` blocks as calls (their arguments as written) and the text before
    the first block; None when it has no block, or one that is not a call of a declared function with
    arguments valid under its schema."""
    names = {t["function"]["name"] for t in tools}
    schemas = {t["function"]["name"]: t["function"].get("parameters") for t in tools}
    blocks = list(_BLOCK.finditer(text))
    calls = []
    for block in blocks:
        body = block.group(1)
        try:
            value = json.loads(body)
        except ValueError:
            return None
        span = _member_span(body, "arguments")
        call = _as_call(value, names, None if span is None else body[span[0]:span[1]])
        if call is None or schema_errors(value["arguments"], schemas[value["name"]]) is not None:
            return None  # no grammar kept the model to the schema: a call off it stays text
        calls.append(call)
    return (text[:blocks[0].start()], calls) if calls else None


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
        # the template renders the same prompt from the kwargs as from ``tools``, and llama.cpp then neither
        # parses nor constrains the answer by a call format of its own: this module does, the same for every model
        native["chat_template_kwargs"] = {**(native.get("chat_template_kwargs") or {}),
                                          "tools": [_as_rendered(tool) for tool in tools]}
        forced = call_format(tools, choice, request.get("parallel_tool_calls"))
        if forced is not None:
            native["response_format"] = forced
        return cls(native, tools, forced is not None)

    def answer(self, text: str, finish: Any) -> tuple[dict[str, Any], Any]:
        """The message and finish reason for generated ``text`` that ended with ``finish``: forced calls, or
        freely written ones with the text before them as the content."""
        if not self.tools:
            return {"role": "assistant", "content": text}, finish
        if finish != "stop":
            return {"role": "assistant", "content": text}, finish
        if self.forced:
            calls = parse_calls(text, self.tools, forced=True)
            return tool_message(text, calls), ("tool_calls" if calls else finish)
        found = written_calls(text, self.tools)
        if found is None:
            return {"role": "assistant", "content": text}, finish
        content, calls = found
        return {"role": "assistant", "content": content or None, "tool_calls": calls}, "tool_calls"
