"""Per-key rate limits: exact within a process, shared through Redis between processes by the sync."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from veilnet.errors import RateLimited, StoreError
from veilnet.store.ratelimit import WINDOW_MS, KeyRateLimiter
from veilnet.store.redis import redis_from_url

NOW = 1_800_000_000_000 - 1_800_000_000_000 % WINDOW_MS + 1_000  # one second into a window


async def test_limits_are_exact_in_process_and_shared_after_a_sync(redis_client: aioredis.Redis) -> None:
    async with KeyRateLimiter(redis_client, requests_per_minute=5, tokens_per_minute=0) as a, \
            KeyRateLimiter(redis_client, requests_per_minute=5, tokens_per_minute=0) as b:
        for _ in range(3):
            await a.admit(7, now_ms=NOW)
        await a.sync(now_ms=NOW)
        await b.admit(7, now_ms=NOW)
        await b.sync(now_ms=NOW)  # b now knows a's three
        await b.admit(7, now_ms=NOW)
        with pytest.raises(RateLimited) as limited:
            await b.admit(7, now_ms=NOW)
        assert limited.value.retry_after == pytest.approx(59.0)
        assert b.counts(7, now_ms=NOW) == (5, 0)
        await b.sync(now_ms=NOW)
        await a.sync(now_ms=NOW)
        with pytest.raises(RateLimited):
            await a.admit(7, now_ms=NOW)
        await a.admit(8, now_ms=NOW)  # another key has its own budget
        await a.admit(7, now_ms=NOW + WINDOW_MS)  # and the next minute starts afresh
        assert await redis_client.get(f"veilnet:ratelimit:7:{NOW - 1_000}:requests") == b"5"


async def test_tokens_per_minute(redis_client: aioredis.Redis) -> None:
    async with KeyRateLimiter(redis_client, requests_per_minute=0, tokens_per_minute=100) as a, \
            KeyRateLimiter(redis_client, requests_per_minute=0, tokens_per_minute=100) as b:
        await a.admit(1, now_ms=NOW)
        a.add_tokens(1, 60, now_ms=NOW)
        await a.admit(1, now_ms=NOW)
        a.add_tokens(1, 40, now_ms=NOW)
        with pytest.raises(RateLimited, match="100 tokens per minute"):
            await a.admit(1, now_ms=NOW)
        await a.sync(now_ms=NOW)
        with pytest.raises(RateLimited):  # b's first request for the key reads what a counted
            await b.admit(1, now_ms=NOW)
        assert b.counts(1, now_ms=NOW) == (2, 100)


async def test_counts_survive_redis_being_away() -> None:
    unreachable = redis_from_url("redis://127.0.0.1:1")
    try:
        limiter = KeyRateLimiter(unreachable, requests_per_minute=2, tokens_per_minute=0)
        await limiter.admit(3, now_ms=NOW)
        with pytest.raises(StoreError, match="cannot reach Redis"):
            await limiter.sync(now_ms=NOW)
        await limiter.admit(3, now_ms=NOW)  # still limited in-process, and the counts wait for Redis
        with pytest.raises(RateLimited):
            await limiter.admit(3, now_ms=NOW)
        assert limiter.counts(3, now_ms=NOW) == (2, 0)
    finally:
        await unreachable.aclose()


async def test_a_burst_of_first_requests_reads_redis_once(redis_client: aioredis.Redis) -> None:
    """A thousand requests of a key arriving together at a fresh process share one read of the key's shared
    counts (each reading for itself once queued a thousand reads on Redis), and the limit still holds."""

    async def mget_calls() -> int:
        stats = await redis_client.info("commandstats")
        return int(stats.get("cmdstat_mget", {}).get("calls", 0))

    await redis_client.set(f"veilnet:ratelimit:9:{NOW - 1_000}:requests", 20)  # other processes' requests
    before = await mget_calls()
    async with KeyRateLimiter(redis_client, requests_per_minute=120, tokens_per_minute=0) as limiter:
        results = await asyncio.gather(*(limiter.admit(9, now_ms=NOW) for _ in range(1000)), return_exceptions=True)
    assert await mget_calls() - before == 1
    assert sum(result is None for result in results) == 100  # 120 a minute, 20 of them taken elsewhere
    assert all(isinstance(result, RateLimited) for result in results if result is not None)
