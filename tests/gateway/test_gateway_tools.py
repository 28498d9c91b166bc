"""Tools, structured output and n through the gateway: typed, routed only to miners that declare them; a
prompt over the model's context refused before any miner is tried."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
import redis.asyncio as aioredis
from tests.gateway.conftest import MINER_A, MINER_B, stack

HI = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "thing", "schema": {"type": "object"}}}


async def test_functional_parameters_go_only_to_miners_declaring_them(tmp_path: Path,
                                                                     redis_client: aioredis.Redis) -> None:
    """Miner A declares only max_tokens and temperature; B declares everything (the default). Tools, a JSON
    response format and n > 1 always go to B, require_parameters or not; only A allowed: 404 naming them."""
    async with stack(tmp_path, redis_client) as s:
        client: openai.AsyncOpenAI = s["client"]
        for _ in range(3):
            await client.chat.completions.create(model="upstream-echo", messages=HI, tools=[TOOL],  # type: ignore[arg-type, list-item]
                                                 tool_choice="required", parallel_tool_calls=False)
            await client.chat.completions.create(model="upstream-echo", messages=HI, response_format=SCHEMA)  # type: ignore[arg-type, call-overload]
            await client.chat.completions.create(model="upstream-echo", messages=HI, n=2)  # type: ignore[arg-type]
        rows = await s["keys"].usage_rows(s["key"].id)
        assert len(rows) == 9 and {r.miner for r in rows} == {MINER_B.ss58_address}
        # a text response format and n=1 use nothing: either miner may serve them
        for _ in range(8):
            await client.chat.completions.create(model="upstream-echo", messages=HI, n=1,  # type: ignore[arg-type]
                                                 response_format={"type": "text"})
        rows = await s["keys"].usage_rows(s["key"].id)
        assert len(rows) == 17 and MINER_A.ss58_address in {r.miner for r in rows}  # the first 9 all went to B
        only_a = {"provider": {"only": [MINER_A.ss58_address]}}
        with pytest.raises(openai.NotFoundError) as refused:
            await client.chat.completions.create(model="upstream-echo", messages=HI, tools=[TOOL], extra_body=only_a)  # type: ignore[arg-type, list-item]
        assert "tools" in str(refused.value) and refused.value.body["code"] == "no_endpoints"  # type: ignore[index]
        with pytest.raises(openai.NotFoundError) as refused:
            await client.chat.completions.create(model="upstream-echo", messages=HI, response_format=SCHEMA,  # type: ignore[arg-type, call-overload]
                                                 extra_body=only_a)
        assert "response_format" in str(refused.value)


async def test_tool_documents_are_checked(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client) as s:
        client: openai.AsyncOpenAI = s["client"]
        bad_requests = [
            {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}},
            {"tool_choice": "required"},
            {"messages": [*HI, {"role": "tool", "content": "42"}]},  # which call does it answer?
            {"tools": [{"type": "function", "function": {"name": "has space"}}]},
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": [1]}}},
            {"n": 99},
        ]
        for extra in bad_requests:
            body = {"model": "upstream-echo", "messages": HI, **extra}
            with pytest.raises(openai.BadRequestError):
                await client.chat.completions.create(**body)  # type: ignore[call-overload]
        assert await s["keys"].usage_rows(s["key"].id) == []


async def test_prompt_over_the_context_is_refused_before_any_miner(tmp_path: Path,
                                                                   redis_client: aioredis.Redis) -> None:
    """400 context_length_exceeded naming the limit; no miner is tried, no breaker moves, however often the
    app retries; the next request is served."""
    async with stack(tmp_path, redis_client) as s:
        client: openai.AsyncOpenAI = s["client"]
        for _ in range(6):  # more than a breaker's threshold
            with pytest.raises(openai.BadRequestError) as too_long:
                await client.chat.completions.create(model="upstream-echo",
                                                     messages=[{"role": "user", "content": "word " * 9000}])
            assert too_long.value.code == "context_length_exceeded" and "8192" in too_long.value.message
        assert s["outcomes"] == []
        assert all(s["ctx"].breaker.allows(m.ss58_address) for m in (MINER_A, MINER_B))
        answer = await client.chat.completions.create(model="upstream-echo", messages=HI)
        assert answer.choices[0].message.content == "hello there"
