"""Answers to requests with tools or a response format: the stream assembler puts tool calls back together,
honest SmolLM2 answers pass the verifier, answers that ignore the constraint or inflate usage fail hard."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from veilnet.errors import InvalidRequest
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.models.toolcalls import call_schema, parse_calls
from veilnet.protocol.openai import ChatCompletionRequest
from veilnet.tasks.answer import parse_chat_answer
from veilnet.tasks.chat import verify_chat_answer
from veilnet.tasks.stream import assemble_chat_stream
from veilnet.tasks.structured import structured_findings

SMOL = "SmolLM2-135M-Instruct"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                                          "required": ["city"], "additionalProperties": False}}}
CITY = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}, "required": ["name"],
        "additionalProperties": False}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def _answer(message: dict[str, Any], finish: str = "tool_calls") -> dict[str, Any]:
    return {"model": SMOL, "choices": [{"index": 0, "finish_reason": finish, "message": message}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10}}


def _call(name: str, arguments: str) -> dict[str, Any]:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}]}


def _codes(request: dict[str, Any], answer: dict[str, Any]) -> list[str]:
    parsed = parse_chat_answer(answer)
    assert not isinstance(parsed, str), parsed
    return [f.code for f in structured_findings(ChatCompletionRequest.model_validate(request), parsed)]


def test_answers_that_ignore_the_constraint_are_hard_findings() -> None:
    tools = {"model": SMOL, "messages": ASK, "tools": [WEATHER], "tool_choice": "required"}
    assert _codes(tools, _answer(_call("get_weather", '{"city": "Paris"}'))) == []
    assert _codes(tools, _answer(_call("launch_rockets", "{}"))) == ["undeclared_tool"]
    assert _codes(tools, _answer(_call("get_weather", "not json"))) == ["invalid_arguments"]
    assert _codes(tools, _answer(_call("get_weather", '{"town": "Paris"}'))) == ["schema_violation"]
    assert _codes(tools, _answer({"role": "assistant", "content": "It is sunny."}, "stop")) == ["missing_tool_call"]
    assert _codes(tools, _answer({"role": "assistant", "content": '{"na'}, "length")) == []  # cut short: no claim
    assert isinstance(parse_chat_answer(_answer({"role": "assistant", "content": "hi"})), str)  # no calls
    assert isinstance(parse_chat_answer(_answer(_call("get_weather", "{}"), "stop")), str)
    assert _codes({**tools, "tool_choice": "none"}, _answer(_call("get_weather", '{"city": "P"}'))) == [
        "unexpected_tool_call"]
    named = {**tools, "tools": [WEATHER, {"type": "function", "function": {"name": "other"}}],
             "tool_choice": {"type": "function", "function": {"name": "other"}}}
    assert _codes(named, _answer(_call("get_weather", '{"city": "Paris"}'))) == ["undeclared_tool"]
    schema = {"model": SMOL, "messages": ASK,
              "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}}}
    assert _codes(schema, _answer({"role": "assistant", "content": '{"name": "Paris"}'}, "stop")) == []
    assert _codes(schema, _answer({"role": "assistant", "content": '{"name": 7}'}, "stop")) == ["schema_violation"]
    assert _codes(schema, _answer({"role": "assistant", "content": "Paris"}, "stop")) == ["invalid_json"]
    as_object = {"model": SMOL, "messages": ASK, "response_format": {"type": "json_object"}}
    assert _codes(as_object, _answer({"role": "assistant", "content": "[1]"}, "stop")) == ["invalid_json"]
    broken_schema = copy.deepcopy(schema)
    broken_schema["response_format"]["json_schema"]["schema"] = {"type": "no-such-type"}
    assert _codes(broken_schema, _answer({"role": "assistant", "content": "{}"}, "stop")) == []  # the app's fault


def test_tool_calls_are_reassembled_from_stream_deltas() -> None:
    chunks: list[Any] = [
        {"id": "x", "model": SMOL, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                                             "function": {"name": "get_weather", "arguments": ""}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "call_b",
                                                             "function": {"name": "get_weather", "arguments": "{}"}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": "garbage"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 9}},
    ]
    message = assemble_chat_stream(chunks)["choices"][0]["message"]
    assert message["content"] is None
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]] == [
        ("call_a", "get_weather", '{"city": "Paris"}'), ("call_b", "get_weather", "{}")]
    assert assemble_chat_stream(chunks)["choices"][0]["finish_reason"] == "tool_calls"


def test_engine_tool_call_schema_and_parsing() -> None:
    other = {"type": "function", "function": {"name": "other"}}
    assert call_schema([WEATHER], "auto", None) is None
    one = call_schema([WEATHER, other], {"type": "function", "function": {"name": "other"}}, None)
    assert one is not None and one["properties"]["name"] == {"const": "other"}
    many = call_schema([WEATHER, other], "required", None)
    assert many is not None and many["type"] == "array" and many["maxItems"] == 2
    assert call_schema([WEATHER], "required", False)["properties"]["name"] == {"const": "get_weather"}  # type: ignore[index]
    calls = parse_calls('[{"name": "get_weather", "arguments": {"city": "Oslo"}}]', [WEATHER], forced=True)
    assert calls is not None and json.loads(calls[0]["function"]["arguments"]) == {"city": "Oslo"}
    assert parse_calls('{"name": "nope", "arguments": {}}', [WEATHER], forced=True) is None
    assert parse_calls('{"name": "get_weather", "argu', [WEATHER], forced=True) is None
    free = 'Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'
    assert parse_calls(free, [WEATHER], forced=False) is not None
    assert parse_calls("It is sunny.", [WEATHER], forced=False) is None


@pytest.fixture
async def reference(tmp_path: Path) -> AsyncIterator[LlamaCppEngine]:
    async with LlamaCppEngine([SMOL], cache_dir=tmp_path, concurrency=1, tokenizer=True) as engine:
        yield engine


@pytest.mark.model
async def test_honest_structured_answers_pass_and_forged_ones_fail(reference: LlamaCppEngine) -> None:
    """SmolLM2's own answers (the miner's engine) to a forced tool call, streamed and not, and to a JSON schema
    pass; the same answers with arguments off the schema or usage inflated fail hard."""
    request = {"model": SMOL, "messages": ASK, "tools": [WEATHER], "tool_choice": "required", "max_tokens": 80}
    honest = await reference.chat(request)
    assert honest["choices"][0]["finish_reason"] == "tool_calls"
    verdict = await verify_chat_answer(reference, request, honest)
    assert verdict.ok, verdict.reason
    assert verdict.usage is not None and verdict.usage.prompt_tokens == honest["usage"]["prompt_tokens"]
    streamed = assemble_chat_stream([c async for c in reference.chat_stream({**request, "stream": True})])
    assert (await verify_chat_answer(reference, request, streamed)).ok
    forged = copy.deepcopy(honest)
    forged["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = '{"city": 3}'
    verdict = await verify_chat_answer(reference, request, forged)
    assert not verdict.ok and "schema_violation" in (verdict.reason or "")
    inflated = copy.deepcopy(honest)
    inflated["usage"]["completion_tokens"] *= 4
    verdict = await verify_chat_answer(reference, request, inflated)
    assert not verdict.ok and "usage_inflated" in (verdict.reason or "")
    shaped = {"model": SMOL, "messages": [{"role": "user", "content": "Name a city."}], "max_tokens": 60,
              "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}}}
    answer = await reference.chat(shaped)
    verdict = await verify_chat_answer(reference, shaped, answer)
    assert verdict.ok, verdict.reason
    json.loads(answer["choices"][0]["message"]["content"])


@pytest.mark.model
async def test_sampled_structured_answers_are_compact_json_and_bad_schemas_are_refused(
        reference: LlamaCppEngine) -> None:
    """At temperature 1 SmolLM2 under a flexible-whitespace grammar can spend its budget on newlines between two
    keys; the engine's grammar allows no whitespace, so every sampled answer is finished, compact JSON. A schema
    llguidance cannot compile is the caller's 400, never an unconstrained answer."""
    city = {**CITY, "properties": {"name": {"type": "string"}, "country": {"type": "string"}},
            "required": ["name", "country"]}
    for seed in range(4):
        answer = await reference.chat({
            "model": SMOL, "messages": [{"role": "user", "content": "Name a city and its country."}],
            "max_tokens": 60, "temperature": 1.0, "seed": seed,
            "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": city}}})
        text = answer["choices"][0]["message"]["content"]
        value = json.loads(text)
        assert set(value) == {"name", "country"}
        assert text == json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for bad, named in (({"type": "strin"}, "strin"), ({"$ref": "#/nope"}, "/nope"),
                       ({"type": "string", "pattern": "[a-z"}, "regex")):
        with pytest.raises(InvalidRequest) as refused:
            await reference.chat({"model": SMOL, "messages": ASK, "max_tokens": 5, "response_format": {
                "type": "json_schema", "json_schema": {"name": "bad", "schema": bad}}})
        assert named in refused.value.message and "json_schema.schema" in refused.value.message
