"""Per-API-key requests/minute and tokens/minute limits shared in Redis (fixed one-minute windows).

Counters: ``veilnet:ratelimit:<key id>:<window start ms>:{requests,tokens}``, kept two windows.

Admission is decided in-process, from the window's shared counts as last read plus what this process counted
since; a background sync adds this process's counts to Redis and reads the shared totals back, for every
active key in one pipeline, every ``sync_seconds``; a key's first request of the minute in a process reads its
shared counts first. One gateway process is therefore exact, several together can overshoot a limit by at
most what they admit within one sync interval, and requests do not wait on Redis (a round trip per request
cost the gateway a sixth of its throughput).
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType

import redis.asyncio as aioredis

from veilnet.errors import RateLimited, StoreError
from veilnet.store.flusher import Flusher
from veilnet.store.redis import KeySpace

__all__ = ["KeyRateLimiter"]

log = logging.getLogger(__name__)

WINDOW_MS = 60_000
Slot = tuple[int, int]  # (key id, window start ms)


class KeyRateLimiter:
    def __init__(self, redis: aioredis.Redis, *, requests_per_minute: int, tokens_per_minute: int,
                 sync_seconds: float = 0.1) -> None:
        self._redis = redis
        self._keys = KeySpace("veilnet:ratelimit")
        self.rpm = requests_per_minute  # 0: no limit
        self.tpm = tokens_per_minute  # 0: no limit
        self._shared: dict[Slot, tuple[int, int]] = {}  # (requests, tokens) in Redis at the last sync
        self._unsynced: dict[Slot, list[int]] = {}  # [requests, tokens] counted here since
        self._syncing: dict[Slot, list[int]] = {}  # counted here, on their way to Redis (a sync in flight)
        self._reading: dict[Slot, asyncio.Task[None]] = {}  # a key's first read of the minute, in flight
        self._syncer = Flusher(self.sync, lambda: bool(self._shared), interval=sync_seconds,
                               what="rate limits (per process until Redis answers)")

    async def __aenter__(self) -> KeyRateLimiter:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop syncing; this process's last counts are added to Redis."""
        for reading in list(self._reading.values()):
            reading.cancel()
        await asyncio.gather(*self._reading.values(), return_exceptions=True)
        await self._syncer.aclose()

    @staticmethod
    def _slot(key_id: int, now_ms: int | None) -> tuple[Slot, int]:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        start = now - now % WINDOW_MS
        return (key_id, start), start + WINDOW_MS - now

    def counts(self, key_id: int, *, now_ms: int | None = None) -> tuple[int, int]:
        """(requests, tokens) this minute for the key, as this process knows them."""
        slot, _ = self._slot(key_id, now_ms)
        shared, mine = self._shared.get(slot, (0, 0)), self._unsynced.get(slot, (0, 0))
        sending = self._syncing.get(slot, (0, 0))
        return shared[0] + mine[0] + sending[0], shared[1] + mine[1] + sending[1]

    async def admit(self, key_id: int, *, now_ms: int | None = None) -> None:
        """Count one request; RateLimited (with the seconds to the next window) when a limit is reached."""
        slot, left_ms = self._slot(key_id, now_ms)
        if slot not in self._shared:  # the key's first request here this minute: read what others counted
            reading = self._reading.get(slot)
            if reading is None:  # requests arriving together share one read (a burst is not a burst on Redis)
                reading = self._reading[slot] = asyncio.get_running_loop().create_task(self._read(slot))
                reading.add_done_callback(lambda _: self._reading.pop(slot, None))
            await asyncio.shield(reading)  # a caller that goes away does not cancel the others' read
        requests, tokens = self.counts(key_id, now_ms=now_ms)
        for kind, used, limit in (("requests", requests, self.rpm), ("tokens", tokens, self.tpm)):
            if limit and used >= limit:
                raise RateLimited(f"this key's limit of {limit} {kind} per minute is reached",
                                  retry_after=max(1.0, left_ms / 1000))
        self._unsynced.setdefault(slot, [0, 0])[0] += 1
        self._shared.setdefault(slot, (0, 0))
        self._syncer.soon()

    async def _read(self, slot: Slot) -> None:
        key_id, start = slot
        try:
            values = await self._redis.mget(self._keys(key_id, start, "requests"), self._keys(key_id, start, "tokens"))
        except (aioredis.RedisError, OSError) as exc:
            log.warning("rate limits are per process until Redis answers again: %s", exc)
            values = [None, None]
        self._shared.setdefault(slot, (int(values[0] or 0), int(values[1] or 0)))

    def add_tokens(self, key_id: int, tokens: int, *, now_ms: int | None = None) -> None:
        """Charge the tokens a finished request used to this minute's token budget."""
        if tokens > 0:
            slot, _ = self._slot(key_id, now_ms)
            self._unsynced.setdefault(slot, [0, 0])[1] += tokens
            self._shared.setdefault(slot, (0, 0))
            self._syncer.soon()

    async def sync(self, *, now_ms: int | None = None) -> None:
        """Add this process's counts to Redis and read back the shared totals of every active key."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        oldest = now - now % WINDOW_MS - WINDOW_MS
        for slot in [s for s in self._shared if s[1] < oldest]:
            del self._shared[slot]
        pending, self._unsynced = self._unsynced, {}
        for slot in [s for s in pending if s[1] < oldest]:
            del pending[slot]
        self._syncing = pending
        slots = sorted(set(self._shared) | set(pending))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key_id, start in slots:
                    names = (self._keys(key_id, start, "requests"), self._keys(key_id, start, "tokens"))
                    for name, added in zip(names, pending.get((key_id, start), (0, 0)), strict=True):
                        pipe.incrby(name, added)
                        pipe.pexpire(name, WINDOW_MS * 2)
                replies = await pipe.execute()
        except BaseException as exc:  # failed or cancelled: counted again at the next sync
            self._syncing = {}
            for slot, (requests, tokens) in pending.items():
                mine = self._unsynced.setdefault(slot, [0, 0])
                mine[0] += requests
                mine[1] += tokens
            if isinstance(exc, aioredis.RedisError | OSError):
                raise StoreError(f"rate limiter cannot reach Redis: {exc}") from exc
            raise
        self._syncing = {}
        for index, slot in enumerate(slots):
            self._shared[slot] = (int(replies[4 * index]), int(replies[4 * index + 2]))
