"""What a validator checks in an answer to a request with tools or a response format (pure).

Every check here is hard but one kind: only a miner that ignored the constraint fails it. Calls written
freely (``auto``) are held to the declared functions and their schemas softly, since a backend that does not
constrain them can write them off (the miner engine keeps only valid ones as calls). An answer that passes
is then re-scored (:func:`veilnet.tasks.chat.verify_chat_answer`): a JSON response format's or a forced
call's under its grammar (:mod:`veilnet.tasks.constraint`), freely written calls as free text.

- ``tool_choice`` ``none`` and a call made: ``unexpected_tool_call``.
- a call naming a function the request did not declare, or not the one ``tool_choice`` names:
  ``undeclared_tool``; arguments that are not a JSON object: ``invalid_arguments``; arguments that break the
  function's ``parameters`` schema (JSON Schema, the draft the schema names, else 2020-12):
  ``schema_violation``.
- ``tool_choice`` ``required`` or a named function and no call, though the answer was not cut short
  (``finish_reason`` ``length``): ``missing_tool_call``.
- ``response_format`` ``json_object``: an answer that ended on its own must be a JSON object
  (``invalid_json``); ``json_schema``: and valid under the schema (``schema_violation``).
- a schema that is itself not a valid JSON schema is not the miner's fault: the answer is only parsed.

:func:`calls_text` is the text the usage of calls no grammar replays (a penalised sampler) is recounted from and
:func:`whitespace_allowance` the most tokens of whitespace a JSON grammar lets a model put between its
separators (llama.cpp's allows a newline or two and up to 20 spaces after each).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from veilnet.models.toolcalls import call_format, calls_json
from veilnet.protocol.jsonschemas import schema_errors
from veilnet.protocol.openai import ChatCompletionRequest, JsonObjectFormat, JsonSchemaFormat, NamedToolChoice
from veilnet.tasks.answer import AnsweredCall, ChatAnswer
from veilnet.tasks.verdict import Finding, Severity

__all__ = ["WHITESPACE_TOKENS", "calls_text", "forced_calls_text", "forces_calls", "is_structured", "shown_tools", "structured_findings",
           "whitespace_allowance"]

#: Tokens of whitespace a grammar may let a model write after one JSON separator.
WHITESPACE_TOKENS = 3


def is_structured(request: ChatCompletionRequest) -> bool:
    """The request constrains or shapes its answer: tools, or a JSON response format."""
    return bool(request.tools) or isinstance(request.response_format, JsonObjectFormat | JsonSchemaFormat)


def calls_text(calls: list[AnsweredCall]) -> str:
    """The calls as the compact JSON a model writes them in (one object, or an array of several)."""
    items = [f'{{"name": {json.dumps(c.function.name)}, "arguments": {c.function.arguments}}}' for c in calls]
    return items[0] if len(items) == 1 else "[" + ", ".join(items) + "]"


def shown_tools(request: ChatCompletionRequest) -> list[dict[str, Any]] | None:
    """The tools the prompt shows the model (none when ``tool_choice`` is ``none``)."""
    if not request.tools or request.tool_choice == "none":
        return None
    return [t.model_dump(exclude_none=True) for t in request.tools]


def forces_calls(request: ChatCompletionRequest) -> bool:
    """The request's ``tool_choice`` forces calls (a named function, or ``required``)."""
    return bool(request.tools) and (request.tool_choice == "required" or isinstance(request.tool_choice, NamedToolChoice))


def forced_calls_text(request: ChatCompletionRequest, calls: Sequence[tuple[str, str]]) -> tuple[str, dict[str, Any]] | None:
    """For an answer to a forced call (a named function or ``required``), the calls (name, arguments text)
    as the miner engine's compact grammar writes them, and the response format that grammar comes from;
    None when the request forces no call or the calls do not fit its constraint's shape."""
    tools = shown_tools(request)
    if tools is None or not calls:
        return None
    choice = request.tool_choice
    fmt = call_format(tools, choice.model_dump() if isinstance(choice, NamedToolChoice) else choice,
                      request.parallel_tool_calls)
    if fmt is None:
        return None
    array = fmt["json_schema"]["schema"].get("type") == "array"
    if not array and len(calls) != 1:
        return None
    return calls_json(calls, array=array), fmt


def whitespace_allowance(text: str) -> int:
    """The most tokens of grammar-allowed whitespace ``text`` (JSON) may have had between its separators."""
    return WHITESPACE_TOKENS * (2 + sum(text.count(c) for c in "{}[],:"))


def _call_findings(request: ChatCompletionRequest, calls: list[AnsweredCall]) -> list[Finding]:
    """A forced call's grammar guarantees its shape, so breaking it is hard; calls written freely (``auto``)
    are held to the same, softly: a backend that does not constrain them can write them off the schema."""
    choice = request.tool_choice
    if choice == "none":
        return [Finding("unexpected_tool_call", "hard", "tool_choice is 'none' but the answer calls a tool")]
    severity: Severity = "hard" if forces_calls(request) else "soft"
    declared = {t.function.name: t.function for t in request.tools or []}
    findings = []
    for call in calls:
        name = call.function.name
        if name not in declared or (isinstance(choice, NamedToolChoice) and name != choice.function.name):
            findings.append(Finding("undeclared_tool", severity, f"the answer calls {name!r}, which the request "
                                                                 "did not offer"))
            continue
        try:
            arguments = json.loads(call.function.arguments)
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            findings.append(Finding("invalid_arguments", severity, f"the arguments of {name!r} are not a JSON object"))
            continue
        broken = schema_errors(arguments, declared[name].parameters)
        if broken is not None:
            findings.append(Finding("schema_violation", severity,
                                    f"the arguments of {name!r} break its schema {broken}"))
    return findings


def structured_findings(request: ChatCompletionRequest, answer: ChatAnswer) -> list[Finding]:
    """The hard findings of an answer to a structured request (empty: it keeps every constraint)."""
    if answer.tool_calls:
        return _call_findings(request, answer.tool_calls)
    if forces_calls(request):
        if answer.finish_reason != "length":
            return [Finding("missing_tool_call", "hard", "the request requires a tool call and the answer makes none")]
        return []
    fmt = request.response_format
    if not isinstance(fmt, JsonObjectFormat | JsonSchemaFormat) or answer.finish_reason == "length":
        return []
    try:
        value = json.loads(answer.content)
    except ValueError:
        return [Finding("invalid_json", "hard", "response_format asks for JSON and the answer is not JSON")]
    if isinstance(fmt, JsonObjectFormat):
        if not isinstance(value, dict):
            return [Finding("invalid_json", "hard", "response_format json_object and the answer is not an object")]
        return []
    broken = schema_errors(value, fmt.json_schema.schema_)
    if broken is not None:
        return [Finding("schema_violation", "hard", f"the answer breaks the response_format schema {broken}")]
    return []
