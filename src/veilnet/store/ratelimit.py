"""Per-API-key requests/minute and tokens/minute limits, shared by every gateway process through Redis (fixed
one-minute windows).

Keys: ``veilnet:ratelimit:<key id>:<window start ms>:{requests,tokens}``, kept two windows; one Lua script
(``lua/ratelimit.lua``) reads and changes both at once, atomically.

Requests are admitted from leases. A process asks Redis for a lease of a few of the key's requests this
minute (``lease_share`` of the limit, or as many as requests are waiting); the script grants at most what is
left of the limit, so all processes together never admit more than the limit, however many they are. The
process admits from its lease with no round trip, asks for the next lease before this one runs out (a busy
key rarely waits), and gives back what it did not use once the key was quiet for ``idle_seconds`` (so the
other processes can have it). A lease is one script call, and calls made together share one round trip
(:class:`~veilnet.store.redis.PipelinedScript`). A key Redis refused is refused here without asking again for
``recheck_seconds``. What sharing can cost a key: requests leased to a process that gets no more of its
requests, for up to ``idle_seconds``; never more than the limit.

Tokens are known only once a request has finished: a process counts them, adds them to Redis with its next
lease or at the background sync (every ``sync_seconds``), and refuses a key once the key's shared count (as
last heard) plus its own reaches the limit. Several processes together can exceed a token limit by what they
count within one sync interval, and any process by the tokens of requests it had already admitted.

While Redis cannot be reached or answers slower than ``timeout``, each process limits on its own counts (each
admits at most the limit) and asks Redis again after ``retry_seconds``; what it admitted meanwhile is added to
the shared count once Redis answers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from importlib import resources
from types import TracebackType

import redis.asyncio as aioredis

from veilnet.errors import RateLimited, StoreError
from veilnet.store.flusher import Flusher
from veilnet.store.redis import KeySpace, PipelinedScript

__all__ = ["KeyRateLimiter"]

log = logging.getLogger(__name__)

WINDOW_MS = 60_000
Slot = tuple[int, int]  # (key id, window start ms)
_SCRIPT = resources.files("veilnet.store").joinpath("lua/ratelimit.lua").read_text()


@dataclass(slots=True)
class _Minute:
    """One key's minute as this process sees it."""

    allowance: int = 0  # requests leased to (or granted by) this process and not admitted yet
    granted: int = 0  # requests Redis granted to all processes, as of its last answer
    tokens: int = 0  # tokens all processes counted, as of Redis's last answer
    unsent_tokens: int = 0  # tokens counted here since
    unleased: int = 0  # requests this process granted itself while Redis was away, not yet added there
    admitted: int = 0  # requests this process admitted
    waiting: int = 0  # requests waiting for the lease in flight
    heard: bool = False  # Redis answered for this minute at least once
    touched: bool = False  # admitted or counted tokens since the last sync
    refused_until: float = 0.0  # monotonic: Redis granted nothing; refuse without asking until then
    last_admit: float = 0.0  # monotonic
    leasing: asyncio.Task[None] | None = None


def _done_leasing(minute: _Minute, leasing: asyncio.Task[None]) -> None:
    if minute.leasing is leasing:
        minute.leasing = None


class KeyRateLimiter:
    def __init__(self, redis: aioredis.Redis, *, requests_per_minute: int, tokens_per_minute: int,
                 sync_seconds: float = 0.1, lease_share: float = 0.05, idle_seconds: float = 1.0,
                 recheck_seconds: float = 1.0, timeout: float = 0.5, retry_seconds: float = 1.0) -> None:
        self._script = PipelinedScript(redis, _SCRIPT)
        self._keys = KeySpace("veilnet:ratelimit")
        self.rpm = requests_per_minute  # 0: no limit
        self.tpm = tokens_per_minute  # 0: no limit
        self._lease_size = max(1, math.ceil(requests_per_minute * lease_share))
        self._idle_seconds = idle_seconds
        self._recheck_seconds = recheck_seconds
        self._timeout = timeout
        self._retry_seconds = retry_seconds
        self._minutes: dict[Slot, _Minute] = {}
        self._redis_away_until = 0.0  # monotonic
        self._syncer = Flusher(self.sync, lambda: bool(self._minutes), interval=sync_seconds,
                               what="rate limits (per process until Redis answers)")

    async def __aenter__(self) -> KeyRateLimiter:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop syncing; this process's unused leases go back and its last counts are added to Redis."""
        leases = [m.leasing for m in self._minutes.values() if m.leasing is not None]
        for lease in leases:
            lease.cancel()
        await asyncio.gather(*leases, return_exceptions=True)
        await self._syncer.stop()
        try:
            await self.sync(everything=True)
        except StoreError as exc:
            log.warning("rate limits: last counts not added to Redis: %s", exc.message)

    @staticmethod
    def _slot(key_id: int, now_ms: int | None) -> tuple[Slot, int]:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        start = now - now % WINDOW_MS
        return (key_id, start), start + WINDOW_MS - now

    def counts(self, key_id: int, *, now_ms: int | None = None) -> tuple[int, int]:
        """(requests, tokens) this minute for the key, as this process knows them (requests: those granted to
        every process, less what this process holds unused)."""
        minute = self._minutes.get(self._slot(key_id, now_ms)[0])
        if minute is None:
            return 0, 0
        return (max(minute.granted + minute.unleased - minute.allowance, minute.admitted),
                minute.tokens + minute.unsent_tokens)

    async def admit(self, key_id: int, *, now_ms: int | None = None) -> None:
        """Count one request; RateLimited (with the seconds to the next window) when a limit is reached."""
        slot, left_ms = self._slot(key_id, now_ms)
        minute = self._minutes.get(slot)
        if minute is None:
            minute = self._minutes[slot] = _Minute()
            self._syncer.soon()
        if not minute.heard and self.tpm and minute.allowance <= 0:
            await self._lease(slot, minute)  # the key's first request here this minute: hear the others' tokens
        if self.tpm and minute.tokens + minute.unsent_tokens >= self.tpm:
            raise RateLimited(f"this key's limit of {self.tpm} tokens per minute is reached",
                              retry_after=max(1.0, left_ms / 1000))
        now = time.monotonic()
        if self.rpm:
            while minute.allowance <= 0:
                if now < minute.refused_until:
                    raise RateLimited(f"this key's limit of {self.rpm} requests per minute is reached",
                                      retry_after=max(1.0, left_ms / 1000))
                await self._lease(slot, minute)
                now = time.monotonic()
            minute.allowance -= 1
            if minute.allowance * 2 < self._lease_size and minute.leasing is None and now >= minute.refused_until:
                self._lease_soon(slot, minute)  # the next lease, before this one runs out
        minute.admitted += 1
        minute.last_admit = now
        minute.touched = True

    def add_tokens(self, key_id: int, tokens: int, *, now_ms: int | None = None) -> None:
        """Charge the tokens a finished request used to this minute's token budget."""
        if tokens > 0:
            slot, _ = self._slot(key_id, now_ms)
            minute = self._minutes.get(slot)
            if minute is None:
                minute = self._minutes[slot] = _Minute()
            minute.unsent_tokens += tokens
            minute.touched = True
            self._syncer.soon()

    def _lease_soon(self, slot: Slot, minute: _Minute) -> asyncio.Task[None]:
        if minute.leasing is None:
            minute.leasing = leasing = asyncio.get_running_loop().create_task(self._ask(slot, minute))
            leasing.add_done_callback(lambda _: _done_leasing(minute, leasing))  # cancelled before it ran, too
        return minute.leasing

    async def _lease(self, slot: Slot, minute: _Minute) -> None:
        """Wait for a lease (the one in flight, or a new one): requests waiting together share it."""
        leasing = self._lease_soon(slot, minute)
        minute.waiting += 1
        try:
            await asyncio.shield(leasing)  # a caller that goes away does not cancel the others' lease
        finally:
            minute.waiting -= 1

    def _names(self, slot: Slot) -> tuple[str, str]:
        key_id, start = slot
        return self._keys(key_id, start, "requests"), self._keys(key_id, start, "tokens")

    async def _ask(self, slot: Slot, minute: _Minute) -> None:
        try:
            want = min(self.rpm, max(self._lease_size, minute.waiting)) if self.rpm else 0
            if time.monotonic() < self._redis_away_until:
                self._grant_locally(minute, want)
                return
            tokens, unleased = self._take_unsent(minute)
            try:
                async with asyncio.timeout(self._timeout):
                    given, granted, shared_tokens = await self._script(
                        self._names(slot), [want, self.rpm, WINDOW_MS * 2, 0, unleased, tokens])
            except (aioredis.RedisError, OSError) as exc:
                self._unsent_again(minute, tokens, unleased)
                self._away(exc)
                self._grant_locally(minute, want)
                return
            self._heard(minute, int(granted), int(shared_tokens))
            minute.allowance += int(given)
            if want and not given:
                minute.refused_until = time.monotonic() + self._recheck_seconds
        finally:
            minute.leasing = None  # at once, not at the done callback: the admit that waited may lease again

    def _grant_locally(self, minute: _Minute, want: int) -> None:
        """Redis is away: grant from this process's own count (it alone never admits more than the limit)."""
        given = max(0, min(want, self.rpm - minute.admitted - minute.allowance)) if self.rpm else 0
        minute.allowance += given
        minute.unleased += given
        if want and not given:
            minute.refused_until = time.monotonic() + self._recheck_seconds

    @staticmethod
    def _take_unsent(minute: _Minute) -> tuple[int, int]:
        """The counts to send now (tokens, requests granted without a lease), taken out of the minute so no
        other call sends them too."""
        taken = minute.unsent_tokens, minute.unleased
        minute.unsent_tokens = minute.unleased = 0
        return taken

    @staticmethod
    def _unsent_again(minute: _Minute, tokens: int, unleased: int) -> None:
        """The call failed: its counts go out with the next one (if Redis did take them and its answer was
        lost, they count twice: the side that limits more)."""
        minute.unsent_tokens += tokens
        minute.unleased += unleased
        minute.touched = True

    def _heard(self, minute: _Minute, granted: int, tokens: int) -> None:
        minute.granted, minute.tokens, minute.heard = granted, tokens, True
        self._redis_away_until = 0.0

    def _away(self, exc: BaseException) -> None:
        if time.monotonic() >= self._redis_away_until:
            log.warning("rate limits are per process until Redis answers again: %s", exc or type(exc).__name__)
        self._redis_away_until = time.monotonic() + self._retry_seconds

    async def sync(self, *, now_ms: int | None = None, everything: bool = False) -> None:
        """Add this process's counts to Redis, give back leases of keys quiet for ``idle_seconds`` (all of
        them with ``everything``), and hear the shared counts of every key active since the last sync."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        oldest = now_ms - now_ms % WINDOW_MS - WINDOW_MS
        for slot in [s for s, m in self._minutes.items() if s[1] < oldest and m.leasing is None]:
            del self._minutes[slot]
        now = time.monotonic()
        sends: list[tuple[_Minute, int, int]] = []
        calls = []
        for slot, minute in self._minutes.items():
            if minute.leasing is not None:  # the lease in flight carries its counts
                continue
            back = 0
            if minute.allowance and (everything or now - minute.last_admit >= self._idle_seconds):
                back, minute.allowance = minute.allowance, 0  # not restored if the call fails: the side that limits more
            if not (back or minute.unleased or minute.unsent_tokens or minute.touched):
                continue
            minute.touched = False
            tokens, unleased = self._take_unsent(minute)
            sends.append((minute, tokens, unleased))
            calls.append(self._script(self._names(slot), [0, self.rpm, WINDOW_MS * 2, back, unleased, tokens]))
        if not calls:
            return
        try:
            replies = await asyncio.gather(*calls, return_exceptions=True)
        except BaseException:  # cancelled: the counts go out with the next call
            for minute, tokens, unleased in sends:
                self._unsent_again(minute, tokens, unleased)
            raise
        failed: BaseException | None = None
        for (minute, tokens, unleased), reply in zip(sends, replies, strict=True):
            if isinstance(reply, BaseException):
                failed = reply
                self._unsent_again(minute, tokens, unleased)
                continue
            _, granted, shared_tokens = reply
            self._heard(minute, int(granted), int(shared_tokens))
        if failed is not None:
            if not isinstance(failed, aioredis.RedisError | OSError):
                raise failed
            self._away(failed)
            raise StoreError(f"rate limiter cannot reach Redis: {failed}") from failed
