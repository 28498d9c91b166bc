"""The official openai SDK against a gateway and a real SmolLM2 miner: chat, streaming, embeddings, tools and
structured output (SmolLM2 is weak: the answers' shape and validity are asserted, not their sense)."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from tests.apps.conftest import CONTEXT, MINER, SMOL, app_stack
from veilnet.models.llamacpp import LlamaCppEngine

pytestmark = pytest.mark.model

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"], "additionalProperties": False}}}


class City(BaseModel):
    name: str = Field(max_length=20)
    country: str = Field(max_length=20)


async def test_openai_sdk_chat_stream_embeddings_tools_structured(
        tmp_path: Path, redis_client: aioredis.Redis, smol: LlamaCppEngine) -> None:
    async with app_stack(tmp_path, redis_client, smol) as stack:
        client = openai.AsyncOpenAI(base_url=stack.url, api_key=stack.secret, max_retries=0)
        ask = [{"role": "user", "content": "What is the weather in Paris?"}]
        chat = await client.chat.completions.create(model=SMOL, messages=ask, max_tokens=8)  # type: ignore[arg-type]
        assert chat.choices[0].message.content and chat.usage and chat.usage.completion_tokens <= 8

        stream = await client.chat.completions.create(model=SMOL, messages=ask, max_tokens=8, stream=True)  # type: ignore[arg-type]
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(pieces)

        vectors = await client.embeddings.create(model=SMOL, input=["a red apple", "a green pear"])
        assert [len(v.embedding) for v in vectors.data] == [576, 576]

        called = await client.chat.completions.create(model=SMOL, messages=ask, tools=[WEATHER], max_tokens=60,  # type: ignore[arg-type, list-item]
                                                      tool_choice={"type": "function", "function": {"name": "get_weather"}})
        choice = called.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
        call = choice.message.tool_calls[0]
        assert call.function.name == "get_weather" and call.id.startswith("call_")  # type: ignore[union-attr]
        assert isinstance(json.loads(call.function.arguments)["city"], str)  # type: ignore[union-attr]

        # the tool calls stream as tool_calls deltas, and the conversation goes on with the tool's answer
        stream = await client.chat.completions.create(model=SMOL, messages=ask, tools=[WEATHER], max_tokens=60,  # type: ignore[arg-type, list-item]
                                                      tool_choice="required", stream=True)
        deltas = [c.choices[0] async for c in stream if c.choices]
        streamed = [d for c in deltas for d in c.delta.tool_calls or []]
        assert streamed and streamed[0].function and streamed[0].function.name == "get_weather"
        assert deltas[-1].finish_reason == "tool_calls"
        follow = await client.chat.completions.create(model=SMOL, max_tokens=8, tools=[WEATHER], messages=[  # type: ignore[arg-type, list-item]
            *ask, choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"}])
        assert follow.choices[0].message.content is not None

        parsed = await client.chat.completions.parse(model=SMOL, messages=[
            {"role": "user", "content": "Name a city and its country."}], response_format=City, max_tokens=60)
        assert isinstance(parsed.choices[0].message.parsed, City)

        as_json = await client.chat.completions.create(model=SMOL, messages=[  # type: ignore[call-overload]
            {"role": "user", "content": "Give a JSON object about Paris."}], response_format={"type": "json_object"},
            max_tokens=60)
        if as_json.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(as_json.choices[0].message.content), dict)

        several = await client.chat.completions.create(model=SMOL, messages=ask, max_tokens=4, n=3)  # type: ignore[arg-type]
        assert [c.index for c in several.choices] == [0, 1, 2]
        assert several.usage and several.usage.completion_tokens > 4

        # a prompt over the context: 400 before any miner is tried, and the miner stays healthy
        tries = len(stack.outcomes)
        with pytest.raises(openai.BadRequestError) as too_long:
            await client.chat.completions.create(model=SMOL, messages=[{"role": "user", "content": "word " * CONTEXT}])
        assert too_long.value.code == "context_length_exceeded" and str(CONTEXT) in too_long.value.message
        assert len(stack.outcomes) == tries
        assert stack.ctx.breaker.allows(MINER.ss58_address)
        await client.close()
