"""Forced tool calls re-scored under the grammar they were generated with: the embedded engine writes them in
its compact grammar and keeps their arguments as written, so the validator rebuilds the exact text and
replays the call schema's grammar over it. SmolLM2's own calls (named, required, parallel or not, streamed or
not, greedy or sampled) pass and are re-scored; calls whose arguments another backend re-serialised with
spaces pass too; hand-written arguments, sampled calls claimed as greedy and calls canned from another prompt
fail or lose quality. Calls written freely (``auto``) are re-scored in their arguments, softly."""

from __future__ import annotations

import copy
import json
import random
import statistics
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.models.toolcalls import ToolPlan, argument_spans, block_calls_text, calls_json
from veilnet.tasks.chat import verify_chat_answer
from veilnet.tasks.stream import assemble_chat_stream
from veilnet.tasks.verdict import Verdict

SMOL = "SmolLM2-135M-Instruct"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                    "unit": {"type": "string", "enum": ["c", "f"]}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string", "maxLength": 30}},
                                       "required": ["tz"]}}}
NAMED = {"type": "function", "function": {"name": "get_weather"}}
PROMPTS = ["What is the weather in Paris?", "How warm is it in Oslo right now, in fahrenheit?"]


@pytest.fixture
async def reference(tmp_path: Path) -> AsyncIterator[LlamaCppEngine]:
    async with LlamaCppEngine([SMOL], cache_dir=tmp_path, concurrency=1, threads=1, tokenizer=True) as engine:
        yield engine


def _request(prompt: str, choice: Any, temperature: float, seed: int, **fields: Any) -> dict[str, Any]:
    return {"model": SMOL, "messages": [{"role": "user", "content": prompt}], "tools": [WEATHER, TIME],
            "tool_choice": choice, "max_tokens": 80, "temperature": temperature, "seed": seed, **fields}


def _scored(verdict: Verdict) -> bool:
    return verdict.text_positions > 0 and not {f.code for f in verdict.findings} & {"unscored", "off_grammar"}


def _arguments(answer: dict[str, Any]) -> list[str]:
    return [c["function"]["arguments"] for c in answer["choices"][0]["message"].get("tool_calls") or []]


def test_compact_calls_layout_and_native_deltas() -> None:
    """The layout the verifier rebuilds is the one the engine's grammar writes; anything else has no spans."""
    text = calls_json([("get_weather", '{"city":"Rome"}'), ("get_time", '{"tz":"UTC"}')], array=True)
    assert text == '[{"name":"get_weather","arguments":{"city":"Rome"}},{"name":"get_time","arguments":{"tz":"UTC"}}]'
    assert [text[a:b] for a, b in argument_spans(text) or []] == ['{"city":"Rome"}', '{"tz":"UTC"}']
    for other in ('{"name": "get_weather", "arguments": {}}', '[{"name":"f","arguments":{}}', '[]', '{"name":"f"}'):
        assert argument_spans(other) is None
    plan = ToolPlan.of(_request("hi", NAMED, 0.0, 0))
    assert "tools" not in plan.native and plan.native["chat_template_kwargs"]["tools"][1]["function"] == {
        "name": "get_time", "description": "", "parameters": TIME["function"]["parameters"]}
    auto = ToolPlan.of(_request("hi", "auto", 0.0, 0))
    assert "tools" not in auto.native and not auto.forced and "response_format" not in auto.native
    written = 'Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome" }}\n</tool_call>'
    message, finish = auto.answer(written, "stop")
    assert finish == "tool_calls" and message["content"] == "Let me look.\n"
    assert message["tool_calls"][0]["function"]["arguments"] == '{"city": "Rome" }'  # as written
    assert block_calls_text("Let me look.\n", [("get_weather", '{"city": "Rome" }')])[0] == written
    message, finish = auto.answer(written.replace("get_weather", "launch"), "stop")
    assert finish == "stop" and "tool_calls" not in message  # an undeclared function is no call
    message, finish = auto.answer(written, "length")
    assert finish == "length" and message["content"] == written


@pytest.mark.model
@pytest.mark.timeout(900)
async def test_honest_calls_are_rescored_and_pass(reference: LlamaCppEngine) -> None:
    scored = 0
    for index in range(12):
        choice, parallel = [(NAMED, None), ("required", None), ("required", False)][index % 3]
        extra = {} if parallel is None else {"parallel_tool_calls": parallel}
        request = _request(PROMPTS[index % 2], choice, [0.0, 0.7, 1.0][index // 4], index, **extra)
        if index % 2:
            answer = assemble_chat_stream([c async for c in reference.chat_stream({**request, "stream": True})])
        else:
            answer = await reference.chat(request)
        verdict = await verify_chat_answer(reference, request, answer, rng=random.Random(index))
        print(index, verdict.ok, verdict.text_positions, _arguments(answer), verdict.reason)
        assert verdict.ok, verdict.reason
        if answer["choices"][0]["finish_reason"] == "tool_calls":
            assert _scored(verdict), verdict.findings
            assert all(a == json.dumps(json.loads(a), separators=(",", ":"), ensure_ascii=False)
                       for a in _arguments(answer))  # as written, compact
            spaced = copy.deepcopy(answer)  # another backend's layout: re-serialised arguments
            for call in spaced["choices"][0]["message"]["tool_calls"]:
                call["function"]["arguments"] = json.dumps(json.loads(call["function"]["arguments"]))
            other = await verify_chat_answer(reference, request, spaced, rng=random.Random(index))
            assert other.ok, other.reason
            scored += 1
    assert scored >= 8
    free = _request(PROMPTS[0], "auto", 0.7, 3)
    answer = await reference.chat(free)
    verdict = await verify_chat_answer(reference, free, answer, rng=random.Random(3))
    assert verdict.ok and (_scored(verdict) or answer["choices"][0]["finish_reason"] == "tool_calls"), verdict


def _call_answer(arguments: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
    return {"model": SMOL, "choices": [{"index": 0, "finish_reason": "tool_calls",
                                        "message": {"role": "assistant", "content": None, "tool_calls": [call]}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}}


HAND = ['{"city":"Paris","unit":"f"}', '{"city":"Zyxq Vortland","unit":"c"}', '{"city":"paris, france!!"}']


@pytest.mark.model
@pytest.mark.timeout(900)
async def test_call_cheats_fail_at_temperature_zero(reference: LlamaCppEngine) -> None:
    """Greedy forced calls answered with arguments SmolLM2 did not write for them: hand-written, sampled
    instead of greedy, canned from another prompt. Each misses the argmax where the grammar left the model a
    choice. Under the engine's own grammar one position far below the argmax is hard (no honest greedy call
    has one: 80 measured, the worst 3.8 nats), which catches canned calls and invented cities; a plausible
    alternative (another unit) loses quality. A sample that is the greedy call itself is no cheat."""
    verdicts: dict[str, list[Verdict]] = {}

    async def judge(kind: str, request: dict[str, Any], arguments: str, seed: int) -> None:
        honest = await reference.chat(request)  # for the usage a careful cheat would claim
        usage = honest["usage"]
        counted = await verify_chat_answer(reference, request, _call_answer(arguments, 1, 1))
        assert counted.usage is not None
        answer = _call_answer(arguments, usage["prompt_tokens"], counted.usage.completion_tokens)
        verdict = await verify_chat_answer(reference, request, answer, rng=random.Random(seed))
        print(kind, verdict.ok, round(verdict.quality, 2), arguments, _arguments(honest), verdict.reason)
        if [arguments] != _arguments(honest):  # a sample may be the greedy answer itself
            verdicts.setdefault(kind, []).append(verdict)

    for seed, arguments in enumerate(HAND):
        await judge("hand", _request(PROMPTS[0], NAMED, 0.0, seed), arguments, seed)
    for seed in range(3):
        sampled = await reference.chat(_request(PROMPTS[seed % 2], NAMED, 1.0, seed + 20))
        await judge("sampled", _request(PROMPTS[seed % 2], NAMED, 0.0, seed), _arguments(sampled)[0], seed)
    canned = _arguments(await reference.chat(_request(PROMPTS[1], NAMED, 0.0, 0)))[0]
    for seed, prompt in enumerate(["What is the weather in Lima?", "Is it snowing in Tokyo?", PROMPTS[0]]):
        await judge("canned", _request(prompt, NAMED, 0.0, seed), canned, seed)
    caught = {kind: sum(not v.ok for v in found) for kind, found in verdicts.items()}
    print(caught)
    assert caught["hand"] >= 2 and caught["canned"] >= 2
    # a cheat that passes (a plausible alternative: another unit, a sample) shows its miss and loses quality
    assert all(not v.ok or v.quality < 1.0 for found in verdicts.values() for v in found)


async def _grammar_written_call(engine: LlamaCppEngine, request: dict[str, Any]) -> str:
    """Arguments SmolLM2 writes for get_weather after the chat template's call layout, under a grammar of the
    function's schema (what a backend shaping freely written calls, llama.cpp's server for one, produces)."""
    tokenizer = await engine.tokenizer(SMOL)
    prompt = await tokenizer.chat_prompt(request["messages"], tools=[WEATHER, TIME])
    head = [t.id for t in await tokenizer.text_tokens('<tool_call>\n{"name": "get_weather", "arguments": ')]
    out = await engine.completion({"model": SMOL, "prompt": prompt + head, "max_tokens": 40, "seed": request["seed"],
                                   "temperature": request["temperature"],
                                   "json_schema": WEATHER["function"]["parameters"]})
    return str(out["choices"][0]["text"])


def _free_answer(arguments: str) -> dict[str, Any]:
    answer = _call_answer(arguments, 0, 0)
    answer["usage"] = None
    return answer


@pytest.mark.model
@pytest.mark.timeout(900)
async def test_freely_written_calls_are_rescored_softly(reference: LlamaCppEngine) -> None:
    """``auto`` calls are re-scored in their arguments as free text. A backend may have shaped them with a
    grammar the validator cannot replay, so nothing there is hard: honest calls pass with their quality,
    hand-written ones pass with far less."""
    honest, forged = [], []
    for seed in range(6):
        request = _request(PROMPTS[seed % 2], "auto", [0.0, 1.0][seed % 2], seed)
        arguments = await _grammar_written_call(reference, request)
        counted = await verify_chat_answer(reference, request, _call_answer(arguments, 1, 1))
        assert counted.usage is not None
        claim = (counted.usage.prompt_tokens, counted.usage.completion_tokens)
        verdict = await verify_chat_answer(reference, request, _call_answer(arguments, *claim), rng=random.Random(seed))
        print("honest", verdict.ok, round(verdict.quality, 2), verdict.text_positions, arguments, verdict.reason)
        honest.append(verdict)
        junk = HAND[seed % 3].replace("Paris", "Zyxq Vortland")
        verdict = await verify_chat_answer(reference, request, _call_answer(junk, *claim), rng=random.Random(seed))
        print("forged", verdict.ok, round(verdict.quality, 2), verdict.text_positions, junk, verdict.reason)
        forged.append(verdict)
    assert all(v.ok and v.text_positions > 0 for v in honest + forged)
    # an honest call that max_tokens cut short has invalid arguments and is worth less; the whole ones are worth
    # their quality (which of the six get cut depends on the engine's thread count: greedy ties break apart)
    whole = [v for v in honest if "invalid_arguments" not in {f.code for f in v.findings}]
    assert len(whole) >= 3 and statistics.fmean(v.quality for v in whole) > 0.85
    assert statistics.fmean(v.quality for v in honest) > statistics.fmean(v.quality for v in forged)
    assert all(v.quality < 0.5 for v in forged[::2])  # greedy requests: hand-written arguments miss the argmax
