"""Organic traffic for the validator's scoring: a sampled, anonymised stream of gateway requests.

Stream ``veilnet:organic:<netuid>`` (capped at ``MAXLEN`` entries), fields: ``miner`` (hotkey), ``model``,
``request`` (the JSON request without user identifiers), ``response`` (the JSON answer, non-streamed
requests only), ``latency_ms`` and ``status``. The API key and any ``user`` field never enter the stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any

import redis.asyncio as aioredis

from veilnet.errors import StoreError
from veilnet.store.flusher import Flusher
from veilnet.store.redis import KeySpace

__all__ = ["OrganicStream", "RequestCounter"]

log = logging.getLogger(__name__)

MAXLEN = 10_000


class OrganicStream:
    """The gateway adds samples in process (:meth:`add`, no waiting) and they go to Redis in one pipeline every
    ``flush_seconds``; leaving ``async with`` writes what is left. A sample that cannot be written waits for the
    next flush (at most ``MAXLEN`` wait; past that the oldest are dropped, logged)."""

    def __init__(self, redis: aioredis.Redis, netuid: int, *, sample_rate: float,
                 rng: random.Random | None = None, flush_seconds: float = 0.25) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError("sample_rate must be within [0, 1]")
        self._redis = redis
        self._name = f"veilnet:organic:{netuid}"
        self._rate = sample_rate
        self._rng = rng or random.Random()
        self._unwritten: list[dict[str, str]] = []
        self._writer = Flusher(self.flush, lambda: bool(self._unwritten), interval=flush_seconds,
                               what="organic samples")

    async def __aenter__(self) -> OrganicStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._writer.aclose()

    def draw(self) -> bool:
        """Whether the next request is sampled (probability ``sample_rate``); decided before any work."""
        return self._rng.random() < self._rate

    def add(self, *, miner: str, model: str, request: dict[str, Any], response: dict[str, Any] | None,
            latency_ms: float, status: str) -> None:
        """Add one (drawn) request to the stream, anonymised (needs a running event loop)."""
        anonymised = {k: v for k, v in request.items() if k not in ("user", "provider", "models")}
        self._unwritten.append({
            "miner": miner, "model": model, "request": json.dumps(anonymised),
            "response": json.dumps(response) if response is not None else "", "latency_ms": f"{latency_ms:.1f}",
            "status": status,
        })
        if len(self._unwritten) > MAXLEN:
            dropped = len(self._unwritten) - MAXLEN
            del self._unwritten[:dropped]
            log.warning("organic samples: Redis has not taken them for a while, dropped the oldest %d", dropped)
        self._writer.soon()

    async def flush(self) -> None:
        """Write the samples added so far (StoreError, keeping them, when Redis is unreachable)."""
        batch, self._unwritten = self._unwritten, []
        if not batch:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for fields in batch:
                    pipe.xadd(self._name, fields, maxlen=MAXLEN, approximate=True)  # type: ignore[arg-type]
                await pipe.execute()
        except BaseException as exc:  # failed or cancelled: written with the next flush
            self._unwritten[:0] = batch
            if isinstance(exc, aioredis.RedisError | OSError):
                raise StoreError(f"cannot write organic samples: {exc}") from exc
            raise

    async def read(self, count: int = 100) -> list[dict[str, str]]:
        """The newest ``count`` samples, oldest first (this process's unwritten ones written first)."""
        await self.flush()
        entries = list(await self._redis.xrevrange(self._name, count=count) or [])
        return [
            {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in fields.items()}
            for _, fields in reversed(entries)
            if fields
        ]


class RequestCounter:
    """How many requests of one ``kind`` (``organic`` from the gateway, ``synthetic`` from the challenger)
    this validator sent each miner, in buckets of ``BUCKET_MS``:
    ``veilnet:requests:<kind>:<validator>:<netuid>:<miner>:<bucket start ms>``. Both use the validator's quota
    at the miner; the challenger spends only what organic traffic left. Counted in-process and added to Redis
    every ``flush_seconds`` in one pipeline (so a restarted challenger knows what it already sent); kept an
    hour."""

    BUCKET_MS = 10_000
    KEEP_MS = 3_600_000

    def __init__(self, redis: aioredis.Redis, kind: str, validator: str, netuid: int, *,
                 flush_seconds: float = 1.0) -> None:
        self._redis = redis
        self._keys = KeySpace(f"veilnet:requests:{kind}:{validator}:{netuid}")
        self._unwritten: dict[tuple[str, int], int] = {}
        self._writing = asyncio.Lock()  # a flush waits for one in flight: when it returns, all is written
        self._writing_now: dict[tuple[str, int], int] = {}  # the batch a flush is writing
        self._writer = Flusher(self.flush, lambda: bool(self._unwritten), interval=flush_seconds,
                               what=f"{kind} request counts")

    async def __aenter__(self) -> RequestCounter:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._writer.aclose()

    def count(self, miner: str, *, now_ms: int | None = None) -> None:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        bucket = (miner, now - now % self.BUCKET_MS)
        self._unwritten[bucket] = self._unwritten.get(bucket, 0) + 1
        self._writer.soon()

    async def flush(self) -> None:
        async with self._writing:
            batch, self._unwritten = self._unwritten, {}
            if not batch:
                return
            self._writing_now = batch  # still counted by used() while it is on its way
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for (miner, start), n in batch.items():
                        pipe.incrby(self._keys(miner, start), n)
                        pipe.pexpire(self._keys(miner, start), self.KEEP_MS)
                    await pipe.execute()
            except BaseException as exc:  # failed or cancelled: counted again at the next flush
                for bucket, n in batch.items():
                    self._unwritten[bucket] = self._unwritten.get(bucket, 0) + n
                if isinstance(exc, aioredis.RedisError | OSError):
                    raise StoreError(f"cannot count requests: {exc}") from exc
                raise
            finally:
                self._writing_now = {}

    async def used(self, miner: str, since_ms: int, *, now_ms: int | None = None) -> int:
        """Requests sent ``miner`` from the bucket holding ``since_ms`` to now (by every process of this
        validator, as written so far; this process's unwritten ones included)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        since_ms = max(since_ms, now - self.KEEP_MS)  # older buckets have expired
        starts = range(since_ms - since_ms % self.BUCKET_MS, now + 1, self.BUCKET_MS)
        if not starts:
            return 0
        pending = [*self._unwritten.items(), *self._writing_now.items()]  # taken before Redis answers
        values = await self._redis.mget([self._keys(miner, start) for start in starts])
        # a batch written while Redis answered is in both: counted twice at worst, never missed
        mine = sum(n for (who, start), n in pending if who == miner and starts[0] <= start <= starts[-1])
        return mine + sum(int(v) for v in values if v is not None)
