"""The scores the gateway routes by: re-read from Redis in the background, the last ones kept while Redis is away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from veilnet.scoring import ScoreState
from veilnet.store.redis import bundled_redis_server, redis_from_url
from veilnet.store.scores import LatestScores, ScoreStore


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")


async def test_scores_follow_redis_without_a_read_per_request(redis_client: aioredis.Redis) -> None:
    store = ScoreStore(redis_client, "5Validator", 7)
    await store.save({"5A": ScoreState(ema=0.7, seen=True), "5B": ScoreState(ema=0.2, seen=True)}, 3)
    async with LatestScores(store, interval=0.05) as scores:
        assert await scores() == {"5A": 0.7, "5B": 0.2}  # read before the first request
        assert await scores.states() == (await store.load())[0]  # and the whole states, for the dashboard
        hgetall = int((await redis_client.info("commandstats")).get("cmdstat_hgetall", {}).get("calls", 0))
        await asyncio.gather(*(scores() for _ in range(1000)))
        after = int((await redis_client.info("commandstats")).get("cmdstat_hgetall", {}).get("calls", 0))
        assert after - hgetall <= 2  # requests never read Redis; only the background refresh does
        await store.save({"5A": ScoreState(ema=0.1, seen=True)}, 4)
        for _ in range(100):  # the next tempo's scores arrive within an interval or two
            if await scores() == {"5A": 0.1}:
                break
            await asyncio.sleep(0.02)
        assert await scores() == {"5A": 0.1}


async def test_the_last_scores_stay_while_redis_is_away(caplog: pytest.LogCaptureFixture) -> None:
    async with bundled_redis_server() as url:
        client = redis_from_url(url, timeout=0.5)
        store = ScoreStore(client, "5Validator", 7)
        await store.save({"5A": ScoreState(ema=0.9, seen=True)}, 1)
        scores = LatestScores(store, interval=0.05)
        await scores.__aenter__()
    try:  # the server is gone now
        with caplog.at_level(logging.WARNING, logger="veilnet.store.scores"):
            await wait_for(lambda: "cannot read them from Redis" in caplog.text)
        assert await scores() == {"5A": 0.9}
    finally:
        await scores.__aexit__(None, None, None)
        await client.aclose()


async def test_a_gateway_starting_without_redis_routes_on_no_scores(caplog: pytest.LogCaptureFixture) -> None:
    client = redis_from_url("redis://127.0.0.1:1", timeout=0.5)  # nothing listens there
    try:
        with caplog.at_level(logging.WARNING, logger="veilnet.store.scores"):
            async with LatestScores(ScoreStore(client, "5Validator", 7), interval=10) as scores:
                assert await scores() == {}
        assert "cannot read them from Redis" in caplog.text
    finally:
        await client.aclose()
