"""Per-API-key requests/minute and tokens/minute limits in Redis (fixed one-minute windows)."""

from __future__ import annotations

import time
from importlib import resources

import redis.asyncio as aioredis

from veilnet.errors import RateLimited, StoreError
from veilnet.store.redis import KeySpace

__all__ = ["KeyRateLimiter"]

_SCRIPT = resources.files("veilnet.store").joinpath("lua/ratelimit.lua").read_text()
WINDOW_MS = 60_000


class KeyRateLimiter:
    """``veilnet:ratelimit:<key id>:<minute>:{requests,tokens}``."""

    def __init__(self, redis: aioredis.Redis, *, requests_per_minute: int, tokens_per_minute: int) -> None:
        self._redis = redis
        self._keys = KeySpace("veilnet:ratelimit")
        self._script = redis.register_script(_SCRIPT)
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute

    def _names(self, key_id: int, now_ms: int) -> tuple[list[str], int]:
        start = now_ms - now_ms % WINDOW_MS
        return [self._keys(key_id, start, "requests"), self._keys(key_id, start, "tokens")], start + WINDOW_MS

    async def admit(self, key_id: int, *, now_ms: int | None = None) -> None:
        """Count one request; RateLimited (with the seconds to the next window) when a limit is reached."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        names, end = self._names(key_id, now)
        try:
            ok, which = await self._script(keys=names, args=[self.rpm, self.tpm, WINDOW_MS * 2])
        except (aioredis.RedisError, OSError) as exc:
            raise StoreError(f"rate limiter unavailable: {exc}") from exc
        if not ok:
            kind = which.decode() if isinstance(which, bytes) else str(which)
            limit = self.rpm if kind == "requests" else self.tpm
            raise RateLimited(f"this key's limit of {limit} {kind} per minute is reached",
                              retry_after=max(1.0, (end - now) / 1000))

    async def add_tokens(self, key_id: int, tokens: int, *, now_ms: int | None = None) -> None:
        """Charge the tokens a finished request used to this minute's token budget."""
        if tokens <= 0:
            return
        now = int(time.time() * 1000) if now_ms is None else now_ms
        names, _ = self._names(key_id, now)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(names[1], tokens)
            pipe.pexpire(names[1], WINDOW_MS * 2)
            await pipe.execute()
