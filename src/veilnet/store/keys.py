"""API keys (stored as SHA-256 hashes, shown once), their credit and budgets, credit held for requests in
flight, and the usage ledger."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

from sqlalchemy import RowMapping, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from veilnet.budgets import BUDGET_RESETS, period_bounds
from veilnet.errors import AuthenticationError, InvalidRequest, NotFound, PaymentRequired, StoreError
from veilnet.logs import log_event
from veilnet.store.flusher import Flusher
from veilnet.store.gateway_tables import api_keys, usage
from veilnet.store.ledger import UsageRow, write_batch
from veilnet.store.reservations import Holds, Reservation
from veilnet.store.sql import database_errors

__all__ = ["ApiKey", "KeyStore", "Reservation", "UsageRow"]

log = logging.getLogger(__name__)

KEY_PREFIX = "vn-"
USD_EPSILON = 1e-9  # USD: sums of float amounts are off by about this much; a hold that fits exactly still fits


@dataclass(frozen=True)
class ApiKey:
    """A key as the gateway sees it. With a budget, ``period_spent_usd`` is what was spent in the period
    starting at ``period_start`` (as :meth:`KeyStore.authenticate` returns a key: the current period).
    ``reserved_usd`` is held for this process's requests in flight (:meth:`KeyStore.reserve`); what is left
    counts it as spent."""

    id: int
    name: str
    prefix: str
    credit_usd: float
    spent_usd: float
    revoked: bool
    budget_usd: float | None = None
    budget_reset: str | None = None  # daily | weekly | monthly
    period_start: float | None = None
    period_spent_usd: float = 0.0
    reserved_usd: float = 0.0

    @property
    def remaining_usd(self) -> float:
        return self.credit_usd - self.spent_usd - self.reserved_usd

    @property
    def budget_remaining_usd(self) -> float | None:
        return None if self.budget_usd is None else self.budget_usd - self.period_spent_usd - self.reserved_usd

    @property
    def budget_resets_at(self) -> str | None:
        """When the budget period of ``period_start`` ends (ISO 8601, UTC)."""
        if self.budget_reset is None or self.period_start is None:
            return None
        return datetime.fromtimestamp(period_bounds(self.budget_reset, self.period_start)[1], UTC).isoformat()

    def in_period(self, now: float) -> ApiKey:
        """This key with its period spend counted in the budget period holding ``now`` (0 in a new one)."""
        if self.budget_reset is None:
            return self
        start, _ = period_bounds(self.budget_reset, now)
        if start == self.period_start:
            return self
        return ApiKey(self.id, self.name, self.prefix, self.credit_usd, self.spent_usd, self.revoked,
                      self.budget_usd, self.budget_reset, start, 0.0, self.reserved_usd)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _key(m: RowMapping) -> ApiKey:
    return ApiKey(id=m["id"], name=m["name"], prefix=m["prefix"], credit_usd=m["credit_usd"],
                  spent_usd=m["spent_usd"], revoked=m["revoked"], budget_usd=m["budget_usd"],
                  budget_reset=m["budget_reset"], period_start=m["period_start"],
                  period_spent_usd=m["period_spent_usd"])


def _check_budget(budget_usd: float | None, reset: str | None) -> None:
    if (budget_usd is None) != (reset is None):
        raise InvalidRequest("a budget needs both an amount and a reset period", param="budget")
    if budget_usd is not None and not (math.isfinite(budget_usd) and budget_usd > 0):
        raise InvalidRequest("budget must be a number > 0", param="budget")
    if reset is not None and reset not in BUDGET_RESETS:
        raise InvalidRequest(f"budget reset must be one of {', '.join(BUDGET_RESETS)}", param="budget_reset")


class KeyStore:
    """Keys and the ledger on one SQL engine, built for the gateway's hot path.

    Keys: a key read from the database is trusted for ``cache_seconds`` (a key revoked or topped up by another
    process, such as ``veilnet keys``, takes effect within that; by this store, at once). Reads never wait on a
    ledger write: a read that overlaps a write of this store keeps the row that write read back. While the
    database fails, a key read within the last ``stale_seconds`` is served as last read (its re-read goes on in
    the background; a request waits at most ``stale_wait`` for it); a key not read in that time gets
    StoreError.

    Ledger: rows are written in batches, one transaction at most ``flush_seconds`` after the request; until then
    their cost already counts against the key here. A batch that fails is kept and retried in the background
    (backing off while the database is away), and a batch sent twice is charged once (:mod:`.ledger`).
    Leaving ``async with`` writes the rest, retrying for up to ``close_seconds``.

    Holds: :meth:`reserve` holds credit for a request in flight (:mod:`.reservations`).

    Every database operation gives up after ``timeout`` seconds (StoreError). A key's budget, when it has one,
    counts what it spent in the current day, week or month (UTC, :mod:`veilnet.budgets`; ``clock`` tells the
    time).
    """

    def __init__(self, engine: AsyncEngine, *, cache_seconds: float = 2.0, flush_seconds: float = 0.25,
                 clock: Callable[[], float] = time.time, timeout: float = 15.0, stale_seconds: float = 60.0,
                 stale_wait: float = 0.5, close_seconds: float = 10.0) -> None:
        self._engine = engine
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._timeout = timeout
        self._stale_seconds = stale_seconds
        self._stale_wait = stale_wait
        self._close_seconds = close_seconds
        # key hash -> (fresh until, read at, key id), monotonic times
        self._by_digest: dict[str, tuple[float, float, int]] = {}
        # key id -> (write number when stored, the key's row): _writes counts this store's writes, so a read
        # that overlapped one never replaces the row that write read back
        self._rows: dict[int, tuple[int, ApiKey]] = {}
        self._writes = 0
        self._failing_until = 0.0  # monotonic: the database failed a read; serve keys as last read until then
        self._holds = Holds()
        self._pending: list[tuple[UsageRow, float]] = []  # rows not yet written, with their time
        self._writer = Flusher(self.flush, lambda: bool(self._pending), interval=flush_seconds,
                               what="usage ledger")
        self._flushing = asyncio.Lock()
        self._reading: dict[str, asyncio.Task[ApiKey]] = {}  # key hash -> the read in flight
        self._closing = False

    async def __aenter__(self) -> KeyStore:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Write what is pending and stop the background writer (once it is idle, never mid-transaction),
        retrying for up to ``close_seconds``; rows still unwritten then are logged one by one (event
        ``ledger row lost``) and StoreError says how many."""
        self._closing = True
        for reading in list(self._reading.values()):
            reading.cancel()
        await asyncio.gather(*self._reading.values(), return_exceptions=True)
        await self._writer.stop()
        try:
            async with asyncio.timeout(self._close_seconds):
                await self._flush_until_written()
        except (TimeoutError, StoreError) as exc:
            for row, at in self._pending:
                log_event(log, "ledger row lost", logging.ERROR, recorded_at=at, **row.__dict__)
            raise StoreError(f"{len(self._pending)} usage ledger rows could not be written within "
                             f"{self._close_seconds} s of shutdown (logged as 'ledger row lost')") from exc

    async def _flush_until_written(self) -> None:
        delay = 0.1
        while True:
            try:
                await self.flush()
                return
            except StoreError as exc:
                log.warning("usage ledger: write failed at shutdown, retrying in %.1f s: %s", delay, exc.message)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    async def create(self, name: str, credit_usd: float, *, budget_usd: float | None = None,
                     budget_reset: str | None = None) -> tuple[str, ApiKey]:
        """A new key; the secret is returned once and only its hash is stored. ``budget_usd`` with
        ``budget_reset`` (daily, weekly, monthly) caps what it may spend per period, within its credit."""
        if not (math.isfinite(credit_usd) and credit_usd >= 0):
            raise InvalidRequest("credit must be a number >= 0", param="credit")
        _check_budget(budget_usd, budget_reset)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        async with database_errors("create API key", self._timeout), self._engine.begin() as conn:
            result = await conn.execute(
                insert(api_keys).values(name=name, prefix=secret[:10], key_hash=_hash(secret),
                                        credit_usd=credit_usd, spent_usd=0.0, revoked=False,
                                        created_at=time.time(), budget_usd=budget_usd,
                                        budget_reset=budget_reset, period_spent_usd=0.0)
            )
            key_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        return secret, ApiKey(key_id, name, secret[:10], credit_usd, 0.0, False, budget_usd, budget_reset)

    async def authenticate(self, secret: str) -> ApiKey:
        """The key for ``secret`` (AuthenticationError when unknown or revoked), its spend including rows not
        yet written and its holds. A cached key past half its time is re-read in the background while requests
        go on with it, and concurrent requests for an expired key share one read, so a busy key never waits on
        the database (nor do a thousand requests read it at once)."""
        digest = _hash(secret)
        now = time.monotonic()
        cached = self._by_digest.get(digest)
        if cached is not None and (cached[0] > now or self._serve_stale(cached, now)):
            if cached[0] - now < self._cache_seconds / 2 and digest not in self._reading:
                self._read_soon(digest)
            key = self._rows[cached[2]][1]
        else:
            reading = self._reading.get(digest) or self._read_soon(digest)
            stale_ok = cached is not None and now - cached[1] < self._stale_seconds
            try:  # a key read not long ago waits for its re-read a short while only (the database may hang)
                async with asyncio.timeout(self._stale_wait if stale_ok else None):
                    key = await asyncio.shield(reading)
            except (StoreError, TimeoutError):
                cached = self._by_digest.get(digest)
                if not stale_ok or cached is None:
                    raise
                self._failing_until = max(self._failing_until, now + self._cache_seconds)
                key = self._rows[cached[2]][1]
        return self._as_seen(key)

    def _serve_stale(self, cached: tuple[float, float, int], now: float) -> bool:
        return now < self._failing_until and now - cached[1] < self._stale_seconds

    def _as_seen(self, key: ApiKey) -> ApiKey:
        """The key as read plus what this process knows and the database does not yet: rows not yet written
        and holds; its budget counted in the current period."""
        if key.revoked:
            raise AuthenticationError("this API key was revoked", code="invalid_api_key")
        if key.budget_reset is not None:
            key = key.in_period(self._clock())
        unwritten, reserved = self._holds.unwritten(key.id), self._holds.reserved(key.id)
        if not unwritten and not reserved:
            return key
        # built directly (half the cost of dataclasses.replace): this runs on every request
        return ApiKey(key.id, key.name, key.prefix, key.credit_usd, key.spent_usd + unwritten, key.revoked,
                      key.budget_usd, key.budget_reset, key.period_start, key.period_spent_usd + unwritten, reserved)

    def _read_soon(self, digest: str) -> asyncio.Task[ApiKey]:
        task = asyncio.get_running_loop().create_task(self._read(digest))
        self._reading[digest] = task
        task.add_done_callback(lambda done: self._settle_read(digest, done))
        return task

    def _settle_read(self, digest: str, done: asyncio.Task[ApiKey]) -> None:
        self._reading.pop(digest, None)
        if not done.cancelled() and done.exception() is not None:  # retrieved here for background reads
            if isinstance(done.exception(), AuthenticationError):
                self._by_digest.pop(digest, None)  # the key is gone: the next request hears so

    async def _read(self, digest: str) -> ApiKey:
        writes = self._writes
        try:
            async with database_errors("read API keys", self._timeout), self._engine.connect() as conn:
                row = (await conn.execute(select(api_keys).where(api_keys.c.key_hash == digest))).first()
        except StoreError:
            self._failing_until = time.monotonic() + self._cache_seconds
            raise
        self._failing_until = 0.0
        if row is None:
            raise AuthenticationError("invalid API key", code="invalid_api_key")
        key = self._keep(_key(row._mapping), writes)
        now = time.monotonic()
        self._by_digest[digest] = (now + self._cache_seconds, now, key.id)
        return key

    def _keep(self, key: ApiKey, writes: int) -> ApiKey:
        """Store a key row read when this store had made ``writes`` writes, unless a later write of this
        store read the row back meanwhile (that row is as new or newer); the row kept."""
        current = self._rows.get(key.id)
        if current is not None and current[0] > writes:
            return current[1]
        self._rows[key.id] = (writes, key)
        return key

    def _written(self, rows: list[ApiKey]) -> None:
        """Rows a write of this store read back in its transaction: newer than any read in flight."""
        self._writes += 1
        for key in rows:
            self._rows[key.id] = (self._writes, key)

    async def all_keys(self) -> list[ApiKey]:
        async with database_errors("list API keys", self._timeout), self._engine.connect() as conn:
            return [_key(r._mapping) for r in (await conn.execute(select(api_keys).order_by(api_keys.c.id))).all()]

    async def _update(self, key_id: int, **values: object) -> None:
        async with database_errors("update API key", self._timeout), self._engine.begin() as conn:
            result = await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values))
            if result.rowcount == 0:
                raise NotFound(f"no API key with id {key_id}")
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).one()
        self._written([_key(row._mapping)])

    async def revoke(self, key_id: int) -> None:
        await self._update(key_id, revoked=True)

    async def topup(self, key_id: int, amount_usd: float) -> None:
        if not (math.isfinite(amount_usd) and amount_usd > 0):
            raise InvalidRequest("top-up amount must be a number > 0", param="amount")
        await self._update(key_id, credit_usd=api_keys.c.credit_usd + amount_usd)

    async def set_budget(self, key_id: int, budget_usd: float | None, reset: str | None) -> None:
        """Cap what the key may spend per ``reset`` period (None and None: no budget). What its ledger shows
        it spent in the current period already counts against the new budget."""
        _check_budget(budget_usd, reset)
        if reset is None:
            await self._update(key_id, budget_usd=None, budget_reset=None, period_start=None, period_spent_usd=0.0)
            return
        start, _ = period_bounds(reset, self._clock())
        spent = (select(func.coalesce(func.sum(usage.c.cost_usd), 0.0))
                 .where(usage.c.key_id == key_id, usage.c.created_at >= start).scalar_subquery())
        await self._update(key_id, budget_usd=budget_usd, budget_reset=reset, period_start=start,
                           period_spent_usd=spent)

    def reserve(self, key: ApiKey, amount_usd: float) -> Reservation:
        """Hold ``amount_usd`` of the key's credit (and budget) for a request about to be served: the most it
        can cost (:func:`~veilnet.store.reservations.reservation_usd`). PaymentRequired when the key cannot
        cover it, counting its spend, rows not yet written and every other hold of this process; the check
        and the hold are one step (no await between), so concurrent requests cannot both take the last
        credit. ``key`` is one :meth:`authenticate` returned. Settle the reservation with the request's ledger
        row, or release it (``with store.reserve(...) as held:`` releases on exit unless settled)."""
        if not (math.isfinite(amount_usd) and amount_usd >= 0):
            raise ValueError(f"a reservation must be a finite amount >= 0, not {amount_usd}")
        stored = self._rows.get(key.id)
        if stored is None:
            raise ValueError(f"key {key.id} was not read through this store: authenticate it first")
        seen = self._as_seen(stored[1])
        credit_left = seen.remaining_usd
        if credit_left <= 0 or amount_usd > credit_left + USD_EPSILON:
            raise PaymentRequired(_short_of(seen, credit_left, amount_usd, "its credit", "top it up"))
        budget_left = seen.budget_remaining_usd
        if budget_left is not None and (budget_left <= 0 or amount_usd > budget_left + USD_EPSILON):
            raise PaymentRequired(_short_of(seen, budget_left, amount_usd, f"its {seen.budget_reset} budget",
                                            f"it resets at {seen.budget_resets_at}"), code="budget_exceeded")
        self._holds.hold(key.id, amount_usd)
        return Reservation(key.id, amount_usd, self._holds, self.record)

    def record(self, row: UsageRow) -> None:
        """Queue the ledger row (needs a running event loop); its cost counts against the key at once, the row is
        written within ``flush_seconds`` (with the others of that moment, in one transaction)."""
        self._pending.append((row, self._clock()))
        self._holds.recorded(row.key_id, row.cost_usd)
        self._writer.soon()

    async def flush(self) -> None:
        """Write every pending ledger row and charge the keys, in one transaction (StoreError, keeping the rows
        for the next try, when the database fails)."""
        async with self._flushing:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                async with database_errors("write the usage ledger", self._timeout), self._engine.begin() as conn:
                    written = await write_batch(conn, batch, self._clock())
            except BaseException:  # nothing is lost: the batch goes back in front of newer rows
                self._pending[:0] = batch
                if not self._closing:  # the background writer may have found nothing pending meanwhile and ended
                    self._writer.soon()
                raise
            for row, _ in batch:  # inserted now or by an earlier try: the database's spend counts each row
                self._holds.written(row.key_id, row.cost_usd)
            self._written([_key(mapping) for mapping in written.keys])
            if written.skipped:
                log_event(log, "ledger rows already written were skipped", logging.WARNING, rows=written.skipped)

    async def usage_rows(self, key_id: int) -> list[UsageRow]:
        await self.flush()
        async with database_errors("read the usage ledger", self._timeout), self._engine.connect() as conn:
            rows = (await conn.execute(select(usage).where(usage.c.key_id == key_id).order_by(usage.c.id))).all()
        return [
            UsageRow(**{k: v for k, v in r._mapping.items() if k not in ("id", "created_at")}) for r in rows
        ]


def _short_of(key: ApiKey, left: float, amount: float, what: str, remedy: str) -> str:
    if left <= 0:
        return f"API key {key.prefix}… has spent {what}; {remedy}"
    return (f"API key {key.prefix}… has ${left:.6f} of {what} left and this request may cost up to ${amount:.6f} "
            f"(its prompt and max_tokens at the miner's price): ask for fewer max_tokens, or {remedy}")
