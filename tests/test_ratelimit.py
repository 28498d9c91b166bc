"""Per-key rate limits shared by every gateway process through Redis: leases keep all processes together
within a key's requests per minute, token counts are shared, and Redis being away leaves each process
limiting on its own counts."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
import redis.asyncio as aioredis

from veilnet.errors import RateLimited, StoreError
from veilnet.store.ratelimit import WINDOW_MS, KeyRateLimiter
from veilnet.store.redis import redis_from_url

NOW = 1_800_000_000_000 - 1_800_000_000_000 % WINDOW_MS + 1_000  # one second into a window


async def script_calls(redis: aioredis.Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))


async def clear_of_the_window_end(margin_s: float = 10.0) -> None:
    """When the current minute window ends within ``margin_s``, wait for the next one: a test counting in real
    time must not straddle two windows (each starts afresh)."""
    left_ms = WINDOW_MS - int(time.time() * 1000) % WINDOW_MS
    if left_ms < margin_s * 1000:
        await asyncio.sleep(left_ms / 1000 + 0.05)


async def admitted(limiter: KeyRateLimiter, key_id: int, count: int, **kwargs: int) -> int:
    results = await asyncio.gather(*(limiter.admit(key_id, **kwargs) for _ in range(count)), return_exceptions=True)
    assert all(r is None or isinstance(r, RateLimited) for r in results), results
    return sum(r is None for r in results)


async def test_two_processes_together_never_admit_more_than_the_limit(redis_url: str,
                                                                      redis_client: aioredis.Redis) -> None:
    """Two gateway processes (each its own limiter and connection pool) sharing one Redis take turns in random
    bursts; together they admit the key's 120 requests a minute, not more (the per-process counting this
    replaces admitted up to twice the limit)."""
    other = redis_from_url(redis_url)
    rng = random.Random(5)
    await clear_of_the_window_end()
    try:
        async with KeyRateLimiter(redis_client, requests_per_minute=120, tokens_per_minute=0) as a, \
                KeyRateLimiter(other, requests_per_minute=120, tokens_per_minute=0) as b:
            total = 0
            for _ in range(40):
                bursts = [admitted(limiter, 7, rng.randint(1, 12)) for limiter in (a, b) if rng.random() < 0.8]
                total += sum(await asyncio.gather(*bursts))
                await asyncio.sleep(rng.uniform(0, 0.02))
            assert 120 - 2 * 6 <= total <= 120  # what may be missing: the two processes' unused leases
            await asyncio.sleep(1.2)  # both quiet: their unused leases go back at the next sync
            await a.sync()
            await b.sync()
            total += await admitted(a, 7, 50) + await admitted(b, 7, 50)
            assert total == 120
            await admitted(a, 8, 5)  # another key has its own limit
            assert b.counts(7)[0] == 120
    finally:
        await other.aclose(close_connection_pool=True)


async def test_a_busy_key_rarely_waits_on_redis(redis_client: aioredis.Redis) -> None:
    before = await script_calls(redis_client)
    async with KeyRateLimiter(redis_client, requests_per_minute=6_000, tokens_per_minute=0) as limiter:
        for _ in range(1_000):
            await limiter.admit(3, now_ms=NOW)
        calls = await script_calls(redis_client) - before
    assert calls <= 1_000 // 300 + 5  # a lease of 300 (5 % of the limit) at a time, the next one ahead of need


async def test_a_burst_of_first_requests_shares_one_lease(redis_client: aioredis.Redis) -> None:
    """A thousand requests of a key arriving together at a fresh process share one lease (each reading for
    itself once queued a thousand calls on Redis), and the limit still holds."""
    await redis_client.set(f"veilnet:ratelimit:9:{NOW - 1_000}:requests", 20)  # other processes' requests
    before = await script_calls(redis_client)
    async with KeyRateLimiter(redis_client, requests_per_minute=120, tokens_per_minute=0) as limiter:
        assert await admitted(limiter, 9, 1_000, now_ms=NOW) == 100  # 120 a minute, 20 of them taken elsewhere
        with pytest.raises(RateLimited) as limited:
            await limiter.admit(9, now_ms=NOW)
        assert limited.value.retry_after == pytest.approx(59.0)
        assert await script_calls(redis_client) - before <= 2  # the lease, and one that found nothing left
        await limiter.admit(9, now_ms=NOW + WINDOW_MS)  # the next minute starts afresh


async def test_tokens_per_minute_are_shared(redis_client: aioredis.Redis) -> None:
    async with KeyRateLimiter(redis_client, requests_per_minute=0, tokens_per_minute=100) as a, \
            KeyRateLimiter(redis_client, requests_per_minute=0, tokens_per_minute=100) as b:
        await a.admit(1, now_ms=NOW)
        a.add_tokens(1, 60, now_ms=NOW)
        await a.admit(1, now_ms=NOW)
        a.add_tokens(1, 40, now_ms=NOW)
        with pytest.raises(RateLimited, match="100 tokens per minute"):
            await a.admit(1, now_ms=NOW)
        await a.sync(now_ms=NOW)
        with pytest.raises(RateLimited):  # b's first request for the key hears what a counted
            await b.admit(1, now_ms=NOW)
        assert b.counts(1, now_ms=NOW)[1] == 100


async def test_each_process_limits_on_its_own_while_redis_is_away(redis_client: aioredis.Redis) -> None:
    unreachable = redis_from_url("redis://127.0.0.1:1")
    try:
        limiter = KeyRateLimiter(unreachable, requests_per_minute=2, tokens_per_minute=0)
        await limiter.admit(3, now_ms=NOW)
        await limiter.admit(3, now_ms=NOW)
        with pytest.raises(RateLimited):
            await limiter.admit(3, now_ms=NOW)
        assert limiter.counts(3, now_ms=NOW) == (2, 0)
        with pytest.raises(StoreError, match="cannot reach Redis"):
            await limiter.sync(now_ms=NOW)
    finally:
        await unreachable.aclose()
    # what a process admitted while Redis was away is added to the shared count once Redis answers
    await clear_of_the_window_end()
    async with KeyRateLimiter(redis_client, requests_per_minute=5, tokens_per_minute=0) as limiter:
        limiter._redis_away_until = float("inf")  # as after a failed call
        await limiter.admit(4)
        await limiter.admit(4)
        limiter._redis_away_until = 0.0
    async with KeyRateLimiter(redis_client, requests_per_minute=5, tokens_per_minute=0) as other:
        assert await admitted(other, 4, 10) == 3
