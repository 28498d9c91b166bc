"""The gateway's own token count, which apps are billed from (never above the miner's claim): the prompt as
the template renders it with the tools it shows, every choice's completion, forced tool calls counted as the
engine's grammar writes them and freely written ones as the chat template asks for them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from veilnet.gateway.recount import billed_usage, own_usage
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.models.toolcalls import block_calls_text
from veilnet.protocol.openai import ChatCompletionRequest
from veilnet.protocol.usage import Usage

SMOL = "SmolLM2-135M-Instruct"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                   "required": ["city"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[LlamaCppEngine]:
    async with LlamaCppEngine([SMOL], cache_dir=tmp_path, concurrency=2, threads=1, tokenizer=True) as served:
        yield served


def _claim(answer: dict[str, Any]) -> Usage:
    usage = answer["usage"]
    return Usage(prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"],
                 total_tokens=usage["prompt_tokens"] + usage["completion_tokens"])


@pytest.mark.model
async def test_tools_choices_and_forced_calls_are_counted(engine: LlamaCppEngine) -> None:
    tokenizer = await engine.tokenizer(SMOL)
    cases = [
        {"tools": [WEATHER], "tool_choice": "auto", "max_tokens": 24},  # a text answer beside the tools
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
         "max_tokens": 60},
        {"n": 2, "max_tokens": 16, "temperature": 1.0, "seed": 3},  # both choices billed
    ]
    for fields in cases:
        body = {"model": SMOL, "messages": ASK, **fields}
        answer = await engine.chat(body)
        own = await own_usage(tokenizer, ChatCompletionRequest.model_validate(body), answer)
        claim = _claim(answer)
        print(fields.get("tool_choice", "n=2"), own, claim)
        assert own is not None
        assert own[0] == claim.prompt_tokens  # the tools are in the prompt it bills
        assert abs(own[1] - claim.completion_tokens) <= 2  # re-tokenisation of grammar-written text at most
        assert billed_usage(claim, own).completion_tokens >= claim.completion_tokens - 2
    free = {"model": SMOL, "messages": ASK, "tools": [WEATHER], "tool_choice": "auto"}
    written = {"model": SMOL, "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris"}'}}]}}]}
    blocks = block_calls_text("", [("get_weather", '{"city": "Paris"}')])[0]
    own = await own_usage(tokenizer, ChatCompletionRequest.model_validate(free), written)
    assert own is not None and own[1] == len(await tokenizer.text_tokens(blocks)) + 1  # as the template writes them
    broken = {**written, "choices": [{"index": 0, "finish_reason": "tool_calls",
                                      "message": {"role": "assistant", "tool_calls": [{"function": 3}]}}]}
    forced = {**free, "tool_choice": "required"}
    assert await own_usage(tokenizer, ChatCompletionRequest.model_validate(forced), broken) is None
