"""The usage ledger's rows and its batch write: one transaction that inserts a batch of rows and charges their
keys, idempotent by generation id.

A commit can succeed on the server while its acknowledgement is lost (the connection breaks after COMMIT
arrived); the writer cannot tell that from a failed commit, so it sends the batch again. Each generation id is
therefore unique in the ledger, rows whose id is already there are skipped (``INSERT ... ON CONFLICT
(generation_id) DO NOTHING``, on SQLite and PostgreSQL alike), and a key is charged, in the same transaction,
only for the rows that transaction inserted: a generation is charged once however often its batch is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import RowMapping, case, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import ReturningInsert

from veilnet.budgets import BUDGET_RESETS, period_bounds
from veilnet.store.gateway_tables import api_keys, usage

__all__ = ["BatchWritten", "UsageRow", "write_batch"]


@dataclass(frozen=True)
class UsageRow:
    """One request's ledger row; ``generation_id`` is its identity (charged once)."""

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


@dataclass(frozen=True)
class BatchWritten:
    """What one batch write did: how many rows it inserted and skipped (already in the ledger), the cost it
    charged per key, and each touched key's row as this transaction left it."""

    inserted: int
    skipped: int
    charged: dict[int, float]
    keys: list[RowMapping]


def _insert_new_rows(dialect: str) -> ReturningInsert[Any]:
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return insert(usage).on_conflict_do_nothing(index_elements=[usage.c.generation_id]).returning(usage.c.generation_id)


async def write_batch(conn: AsyncConnection, batch: Sequence[tuple[UsageRow, float]], now: float) -> BatchWritten:
    """Insert the rows (``(row, recorded at)``) that are not in the ledger yet and charge their keys' spend and
    budget period (the period holding ``now``), within the caller's transaction."""
    values = [{**row.__dict__, "created_at": at} for row, at in batch]
    returned: list[str] = list((await conn.execute(_insert_new_rows(conn.dialect.name), values)).scalars().all())
    new = set(returned)
    charged: dict[int, float] = {}
    for row, _ in batch:
        if row.generation_id in new:
            new.discard(row.generation_id)  # a generation id twice in one batch: its first row was inserted
            charged[row.key_id] = charged.get(row.key_id, 0.0) + row.cost_usd
    # the budget period each key counts in now (by its reset), and its spend in it (all pre-update values)
    start = case(*((api_keys.c.budget_reset == reset, period_bounds(reset, now)[0]) for reset in BUDGET_RESETS),
                 else_=None)
    for key_id, cost in charged.items():
        if not cost:
            continue
        in_period = case((start.is_(None), 0.0),
                         (api_keys.c.period_start == start, api_keys.c.period_spent_usd + cost),
                         else_=cost)
        await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(
            spent_usd=api_keys.c.spent_usd + cost, period_spent_usd=in_period, period_start=start))
    touched = sorted({row.key_id for row, _ in batch})
    keys = [r._mapping for r in (await conn.execute(select(api_keys).where(api_keys.c.id.in_(touched)))).all()]
    return BatchWritten(inserted=len(returned), skipped=len(batch) - len(returned), charged=charged, keys=keys)
