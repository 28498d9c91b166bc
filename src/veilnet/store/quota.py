"""The miner's quota ledger in Redis: one atomic Lua take per request, per validator per window; the takes of
concurrent requests share round trips (:class:`~veilnet.store.redis.PipelinedScript`)."""

from __future__ import annotations

import time
from importlib import resources

import redis.asyncio as aioredis

from veilnet.errors import RateLimited, StoreError
from veilnet.quotas import Quota
from veilnet.store.redis import KeySpace, PipelinedScript

__all__ = ["QuotaStore"]

_TAKE = resources.files("veilnet.store").joinpath("lua/quota_take.lua").read_text()


class QuotaStore:
    """Counts requests per (validator, window) under ``veilnet:quota:<miner>``: one count for everything the
    validator sends (its gateway's requests and its challenges alike)."""

    def __init__(self, redis: aioredis.Redis, miner_hotkey: str, window_seconds: int) -> None:
        if window_seconds < 1:
            raise ValueError("window_seconds must be >= 1")
        self._keys = KeySpace(f"veilnet:quota:{miner_hotkey}")
        self._window_ms = window_seconds * 1000
        self._take = PipelinedScript(redis, _TAKE)

    def _window(self, now_ms: int) -> tuple[int, int]:
        start = now_ms - now_ms % self._window_ms
        return start, start + self._window_ms

    async def take(self, validator: str, quota: Quota, *, now_ms: int | None = None,
                   replay_key: str | None = None, replay_ttl_ms: int = 0) -> int | None:
        """Consume one request; returns how many this validator used in the window, or raises RateLimited
        (StoreError when Redis fails). With ``replay_key``, first marks the request as seen (for
        ``replay_ttl_ms``) in the same round trip and returns None, consuming nothing, when it was seen before."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        start, end = self._window(now)
        keys = [self._keys(validator, start, "total")]
        args = [quota.total, self._window_ms * 2]
        if replay_key is not None:
            keys.append(replay_key)
            args.append(replay_ttl_ms)
        try:
            ok, used = await self._take(keys, args)
        except (aioredis.RedisError, OSError) as exc:
            raise StoreError(f"quota store unavailable: {exc}") from exc
        if ok == -1:
            return None
        if not ok:
            raise RateLimited(
                f"quota spent: {used} of {quota.total} requests this window", retry_after=(end - now) / 1000
            )
        return int(used)
