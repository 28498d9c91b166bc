"""The miner's replay cache in Redis: each signed request (caller, Epistula uuid) is served once.

A marker ``veilnet:replay:<miner>:<caller>:<uuid>`` lives a little longer than a signature stays fresh
(twice the clock skew allowed, plus a second), so a request is either refused as stale or refused as seen:
it never runs twice. On the request path the marker is set in the same Lua call that takes the caller's quota
(:meth:`key` and :attr:`ttl_ms` go to :meth:`veilnet.store.quota.QuotaStore.take`); :meth:`claim` sets it
alone, for signed requests that take no quota (attestation challenges).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from veilnet.errors import StoreError
from veilnet.store.redis import KeySpace

__all__ = ["ReplayCache"]


class ReplayCache:
    def __init__(self, redis: aioredis.Redis, miner_hotkey: str, *, max_clock_skew_ms: int) -> None:
        self._redis = redis
        self._keys = KeySpace(f"veilnet:replay:{miner_hotkey}")
        self.ttl_ms = 2 * max_clock_skew_ms + 1000  # longer than a signature stays fresh

    def key(self, caller: str, request_uuid: str) -> str:
        return self._keys(caller, request_uuid)

    async def claim(self, caller: str, request_uuid: str) -> bool:
        """Mark the request as seen: True the first time, False for a replay (StoreError when Redis fails)."""
        try:
            return bool(await self._redis.set(self.key(caller, request_uuid), b"1", nx=True, px=self.ttl_ms))
        except (aioredis.RedisError, OSError) as exc:
            raise StoreError(f"replay cache unavailable: {exc}") from exc
