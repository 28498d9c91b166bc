"""API keys (stored as SHA-256 hashes, shown once), their credit and budgets, and the usage ledger."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from veilnet.budgets import BUDGET_RESETS, period_bounds
from veilnet.errors import AuthenticationError, InvalidRequest, NotFound, StoreError
from veilnet.store.flusher import Flusher
from veilnet.store.gateway_tables import api_keys, usage

__all__ = ["ApiKey", "KeyStore", "UsageRow"]

KEY_PREFIX = "vn-"


@dataclass(frozen=True)
class ApiKey:
    """A key as the gateway sees it. With a budget, ``period_spent_usd`` is what was spent in the period
    starting at ``period_start`` (as :meth:`KeyStore.authenticate` returns a key: the current period)."""

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

    @property
    def remaining_usd(self) -> float:
        return self.credit_usd - self.spent_usd

    @property
    def budget_remaining_usd(self) -> float | None:
        return None if self.budget_usd is None else self.budget_usd - self.period_spent_usd

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
        return dataclasses.replace(self, period_start=start, period_spent_usd=0.0)


@dataclass(frozen=True)
class UsageRow:
    generation_id: str
    key_id: int
    model: str
    miner: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    status: str
    error: str | None = None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _row(row: object) -> ApiKey:
    m = row._mapping  # type: ignore[attr-defined]
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

    A key read from the database is trusted for ``cache_seconds`` (a key revoked or topped up by another
    process, such as ``veilnet keys``, takes effect within that; by this store, at once). Ledger rows are
    written in batches, one transaction at most ``flush_seconds`` after the request; until then their cost
    already counts against the key here. :meth:`flush` writes them now, and leaving ``async with`` writes the
    rest. A failed write keeps the rows and is retried. A key's budget, when it has one, counts what it spent
    in the current day, week or month (UTC, :mod:`veilnet.budgets`; ``clock`` tells the time).
    """

    def __init__(self, engine: AsyncEngine, *, cache_seconds: float = 2.0, flush_seconds: float = 0.25,
                 clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ApiKey]] = {}  # key hash -> (valid until, key as read)
        self._pending: list[tuple[UsageRow, float]] = []  # rows not yet written, with their time
        self._unwritten_cost: dict[int, float] = {}  # key id -> cost of its pending rows
        self._writer = Flusher(self.flush, lambda: bool(self._pending), interval=flush_seconds,
                               what="usage ledger")
        self._writing = asyncio.Lock()
        self._reading: dict[str, asyncio.Task[ApiKey]] = {}  # key hash -> the read in flight

    async def __aenter__(self) -> KeyStore:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Write what is pending and stop the background writer (once it is idle, never mid-transaction)."""
        for reading in list(self._reading.values()):
            reading.cancel()
        await asyncio.gather(*self._reading.values(), return_exceptions=True)
        await self._writer.stop()
        await self.flush()  # raises StoreError, keeping the rows, when the database is unreachable

    async def create(self, name: str, credit_usd: float, *, budget_usd: float | None = None,
                     budget_reset: str | None = None) -> tuple[str, ApiKey]:
        """A new key; the secret is returned once and only its hash is stored. ``budget_usd`` with
        ``budget_reset`` (daily, weekly, monthly) caps what it may spend per period, within its credit."""
        if not (math.isfinite(credit_usd) and credit_usd >= 0):
            raise InvalidRequest("credit must be a number >= 0", param="credit")
        _check_budget(budget_usd, budget_reset)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(
                    insert(api_keys).values(name=name, prefix=secret[:10], key_hash=_hash(secret),
                                            credit_usd=credit_usd, spent_usd=0.0, revoked=False,
                                            created_at=time.time(), budget_usd=budget_usd,
                                            budget_reset=budget_reset, period_spent_usd=0.0)
                )
                key_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot create API key: {exc}") from exc
        return secret, ApiKey(key_id, name, secret[:10], credit_usd, 0.0, False, budget_usd, budget_reset)

    async def authenticate(self, secret: str) -> ApiKey:
        """The key for ``secret`` (AuthenticationError when unknown or revoked), its spend including rows not
        yet written. A cached key past half its time is re-read in the background while requests go on with
        it, and concurrent requests for an expired key share one read, so a busy key never waits on the
        database (nor do a thousand requests read it at once)."""
        digest = _hash(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            key = cached[1]
            if cached[0] - now < self._cache_seconds / 2 and digest not in self._reading:
                self._read_soon(digest)
        else:
            reading = self._reading.get(digest) or self._read_soon(digest)
            key = await asyncio.shield(reading)
        if key.revoked:
            raise AuthenticationError("this API key was revoked", code="invalid_api_key")
        unwritten = self._unwritten_cost.get(key.id, 0.0)
        if key.budget_reset is not None:
            key = key.in_period(self._clock())
        if not unwritten:
            return key
        # built directly (half the cost of dataclasses.replace): this runs on every request
        return ApiKey(key.id, key.name, key.prefix, key.credit_usd, key.spent_usd + unwritten, key.revoked,
                      key.budget_usd, key.budget_reset, key.period_start, key.period_spent_usd + unwritten)

    def _read_soon(self, digest: str) -> asyncio.Task[ApiKey]:
        task = asyncio.get_running_loop().create_task(self._read(digest))
        self._reading[digest] = task
        task.add_done_callback(lambda done: self._settle_read(digest, done))
        return task

    def _settle_read(self, digest: str, done: asyncio.Task[ApiKey]) -> None:
        self._reading.pop(digest, None)
        if not done.cancelled() and done.exception() is not None:  # retrieved here for background reads
            if isinstance(done.exception(), AuthenticationError):
                self._cache.pop(digest, None)  # the key is gone: the next request hears so

    async def _read(self, digest: str) -> ApiKey:
        async with self._writing:  # never between a ledger write and its cache update
            try:
                async with self._engine.connect() as conn:
                    row = (await conn.execute(select(api_keys).where(api_keys.c.key_hash == digest))).first()
            except SQLAlchemyError as exc:
                raise StoreError(f"cannot read API keys: {exc}") from exc
            if row is None:
                raise AuthenticationError("invalid API key", code="invalid_api_key")
            key = _row(row)
            self._cache[digest] = (time.monotonic() + self._cache_seconds, key)
            return key

    async def all_keys(self) -> list[ApiKey]:
        async with self._engine.connect() as conn:
            return [_row(r) for r in (await conn.execute(select(api_keys).order_by(api_keys.c.id))).all()]

    async def _update(self, key_id: int, **values: object) -> None:
        async with self._writing:  # a key read in flight cannot cache the row from before this change
            async with self._engine.begin() as conn:
                result = await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values))
            if result.rowcount == 0:
                raise NotFound(f"no API key with id {key_id}")
            self._cache = {digest: entry for digest, entry in self._cache.items() if entry[1].id != key_id}

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

    def record(self, row: UsageRow) -> None:
        """Queue the ledger row (needs a running event loop); its cost counts against the key at once, the row is written within
        ``flush_seconds`` (with the others of that moment, in one transaction)."""
        self._pending.append((row, self._clock()))
        if row.cost_usd:
            self._unwritten_cost[row.key_id] = self._unwritten_cost.get(row.key_id, 0.0) + row.cost_usd
        self._writer.soon()

    async def flush(self) -> None:
        """Write every pending ledger row and charge the keys, in one transaction."""
        async with self._writing:
            batch, self._pending = self._pending, []
            if not batch:
                return
            costs: dict[int, float] = {}
            for row, _ in batch:
                if row.cost_usd:
                    costs[row.key_id] = costs.get(row.key_id, 0.0) + row.cost_usd
            now = self._clock()
            # the budget period each key counts in now (by its reset), and its spend in it (all pre-update values)
            start = case(*((api_keys.c.budget_reset == reset, period_bounds(reset, now)[0]) for reset in BUDGET_RESETS),
                         else_=None)
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(insert(usage), [{**row.__dict__, "created_at": at} for row, at in batch])
                    for key_id, cost in costs.items():
                        in_period = case((start.is_(None), 0.0),
                                         (api_keys.c.period_start == start, api_keys.c.period_spent_usd + cost),
                                         else_=cost)
                        await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(
                            spent_usd=api_keys.c.spent_usd + cost, period_spent_usd=in_period, period_start=start))
            except BaseException as exc:  # nothing is lost: the batch goes back in front of newer rows
                self._pending[:0] = batch
                if isinstance(exc, SQLAlchemyError):
                    raise StoreError(f"cannot write the usage ledger: {exc}") from exc
                raise
            for key_id, cost in costs.items():
                left = self._unwritten_cost.pop(key_id, 0.0) - cost
                if left > 1e-12:
                    self._unwritten_cost[key_id] = left
            for digest, (until, key) in list(self._cache.items()):  # the cached keys now owe what was written
                if key.id in costs:
                    key = key.in_period(now)
                    self._cache[digest] = (until, dataclasses.replace(
                        key, spent_usd=key.spent_usd + costs[key.id],
                        period_spent_usd=key.period_spent_usd + costs[key.id] if key.budget_reset else 0.0))

    async def usage_rows(self, key_id: int) -> list[UsageRow]:
        await self.flush()
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(usage).where(usage.c.key_id == key_id).order_by(usage.c.id))).all()
        return [
            UsageRow(**{k: v for k, v in r._mapping.items() if k not in ("id", "created_at")}) for r in rows
        ]
