"""PipelinedScript against real Redis: concurrent calls share round trips and each keeps its own answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from veilnet.store.redis import PipelinedScript, redis_from_url

# counts calls per key; ARGV[1] == 'bad' makes this call (only) an error
COUNT = """
if ARGV[1] == 'bad' then return redis.error_reply('bad argument') end
return {redis.call('INCR', KEYS[1]), ARGV[1]}
"""


def count_pipelines(monkeypatch: pytest.MonkeyPatch, client: aioredis.Redis) -> list[int]:
    """The size of every pipeline ``client`` sends from now on."""
    sizes: list[int] = []
    original = client.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = original(*args, **kwargs)
        execute = pipe.execute

        async def counted(*a: Any, **k: Any) -> Any:
            sizes.append(len(pipe.command_stack))
            return await execute(*a, **k)

        pipe.execute = counted  # type: ignore[method-assign]
        return pipe

    monkeypatch.setattr(client, "pipeline", pipeline)
    return sizes


async def test_concurrent_calls_share_round_trips_and_keep_their_own_answers(
    redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = PipelinedScript(redis_client, COUNT)
    sizes = count_pipelines(monkeypatch, redis_client)
    results = await asyncio.gather(*(script([f"k{i % 3}"], [f"call-{i}"]) for i in range(300)))
    assert [echo for _, echo in results] == [f"call-{i}".encode() for i in range(300)]
    for key in range(3):  # each key counted 1..100 over its calls, every call once
        assert sorted(n for i, (n, _) in enumerate(results) if i % 3 == key) == list(range(1, 101))
    assert sum(sizes) == 300
    assert len(sizes) <= 3  # the first call alone, then the rest in batches of at most 256, not 300 trips
    assert int(await redis_client.get("k0")) == 100


async def test_one_call_failing_fails_only_that_call(redis_client: aioredis.Redis) -> None:
    script = PipelinedScript(redis_client, COUNT)
    results = await asyncio.gather(script(["k"], ["a"]), script(["k"], ["bad"]), script(["k"], ["b"]),
                                   return_exceptions=True)
    assert results[0] == [1, b"a"] and results[2] == [2, b"b"]
    assert isinstance(results[1], ResponseError) and "bad argument" in str(results[1])


async def test_a_server_that_forgot_the_script_gets_it_again(redis_client: aioredis.Redis) -> None:
    script = PipelinedScript(redis_client, COUNT)
    assert await script(["k"], ["x"]) == [1, b"x"]
    await redis_client.script_flush()  # as a restarted Redis would be
    assert await asyncio.gather(script(["k"], ["y"]), script(["k"], ["z"])) == [[2, b"y"], [3, b"z"]]


async def test_a_caller_that_goes_away_leaves_the_others_their_answers(redis_client: aioredis.Redis) -> None:
    script = PipelinedScript(redis_client, COUNT)
    first = asyncio.ensure_future(script(["k"], ["first"]))  # sent alone; the next two wait for it
    second = asyncio.ensure_future(script(["k"], ["second"]))
    third = asyncio.ensure_future(script(["k"], ["third"]))
    await asyncio.sleep(0)
    second.cancel()
    assert await first == [1, b"first"]
    assert await third == [3, b"third"]  # the cancelled call still ran (its count is 2)
    assert second.cancelled()


async def test_an_unreachable_server_fails_every_call_of_the_batch() -> None:
    client = redis_from_url("redis://127.0.0.1:1", timeout=1.0)
    try:
        script = PipelinedScript(client, COUNT)
        results = await asyncio.gather(*(script(["k"], [str(i)]) for i in range(5)), return_exceptions=True)
        assert all(isinstance(r, RedisConnectionError | OSError) for r in results), results
        # and the next call tries again rather than waiting on a batch that is gone
        with pytest.raises((RedisConnectionError, OSError)):
            await asyncio.wait_for(script(["k"], ["again"]), 10)
    finally:
        await client.aclose(close_connection_pool=True)
