"""API keys and the usage ledger on SQLite and PostgreSQL (migrated by Alembic)."""

from __future__ import annotations

import asyncio

import pytest

from veilnet.errors import AuthenticationError, InvalidRequest, NotFound
from veilnet.store.keys import KeyStore, UsageRow
from veilnet.store.sql import open_database


async def test_keys_are_hashed_charged_and_revocable(sql_url: str) -> None:
    async with open_database(sql_url) as engine:
        store = KeyStore(engine)
        secret, key = await store.create("app", credit_usd=1.0)
        assert secret.startswith("vn-") and len(secret) > 40
        assert (await store.authenticate(secret)).id == key.id
        with pytest.raises(AuthenticationError):
            await store.authenticate(secret + "x")
        store.record(UsageRow("gen-1", key.id, "m", "miner", 10, 20, 0.25, 12.0, "ok"))
        assert (await store.authenticate(secret)).remaining_usd == pytest.approx(0.75)
        await store.topup(key.id, 2.0)
        assert (await store.authenticate(secret)).remaining_usd == pytest.approx(2.75)
        assert [row.generation_id for row in await store.usage_rows(key.id)] == ["gen-1"]
        for amount in (-1.0, float("nan"), float("inf")):
            with pytest.raises(InvalidRequest, match="top-up amount must be a number > 0"):
                await store.topup(key.id, amount)
        with pytest.raises(InvalidRequest, match="credit must be a number >= 0"):
            await store.create("bad", credit_usd=float("nan"))
        with pytest.raises(NotFound):
            await store.revoke(999)
        await store.revoke(key.id)
        with pytest.raises(AuthenticationError, match="revoked"):
            await store.authenticate(secret)
        assert [k.name for k in await store.all_keys()] == ["app"]
    # the schema survives a reopen (migrations are idempotent)
    async with open_database(sql_url) as engine:
        assert len(await KeyStore(engine).all_keys()) == 1


async def test_ledger_rows_are_written_in_batches_and_charged_at_once(sql_url: str) -> None:
    async with open_database(sql_url) as engine:
        other = KeyStore(engine)  # another process's view: the database only
        async with KeyStore(engine, flush_seconds=0.05) as store:
            secret, key = await store.create("app", credit_usd=1.0)
            for n in range(3):
                store.record(UsageRow(f"gen-{n}", key.id, "m", "miner", 1, 2, 0.25, 5.0, "ok"))
            assert (await store.authenticate(secret)).remaining_usd == pytest.approx(0.25)  # before any write
            await asyncio.sleep(0.3)  # the background writer's batch
            assert [r.generation_id for r in await other.usage_rows(key.id)] == ["gen-0", "gen-1", "gen-2"]
            assert (await other.authenticate(secret)).remaining_usd == pytest.approx(0.25)
            assert (await store.authenticate(secret)).remaining_usd == pytest.approx(0.25)  # not charged twice
            store.record(UsageRow("gen-last", key.id, "m", "miner", 1, 2, 0.25, 5.0, "ok"))
        # leaving the store wrote the last row
        assert [r.generation_id for r in await other.usage_rows(key.id)][-1] == "gen-last"
        assert (await KeyStore(engine).authenticate(secret)).remaining_usd == pytest.approx(0.0)


async def test_a_busy_key_never_waits_on_the_database(sql_url: str) -> None:
    from sqlalchemy import event

    async with open_database(sql_url) as engine:
        reads: list[str] = []

        def count(conn: object, cursor: object, statement: str, *args: object) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "api_keys" in statement:
                reads.append(statement)

        event.listen(engine.sync_engine, "before_cursor_execute", count)
        async with KeyStore(engine, cache_seconds=0.4) as store:
            secret, key = await store.create("app", credit_usd=1.0)
            other, _ = await KeyStore(engine).create("other", credit_usd=1.0)
            # a burst on a key nobody has read yet: one read for all of them
            assert {k.id for k in await asyncio.gather(*(store.authenticate(secret) for _ in range(50)))} == {key.id}
            assert len(reads) == 1
            await asyncio.sleep(0.25)  # past half the cache time: answered from the cache, re-read behind it
            assert (await store.authenticate(secret)).id == key.id
            await asyncio.sleep(0.05)
            assert len(reads) == 2
            # another process revokes it: this process sees it within the cache time, never served stale after
            await KeyStore(engine).revoke(key.id)
            await asyncio.sleep(0.45)
            with pytest.raises(AuthenticationError, match="revoked"):
                await store.authenticate(secret)
            with pytest.raises(AuthenticationError, match="invalid API key"):
                await asyncio.gather(*(store.authenticate(other + "x") for _ in range(3)))
            assert (await store.authenticate(other)).name == "other"


async def test_a_budget_caps_spend_per_period_and_resets(sql_url: str) -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 2, 23, 0, tzinfo=UTC).timestamp()

    def clock() -> float:
        return now

    async with open_database(sql_url) as engine:
        store, other = KeyStore(engine, clock=clock), KeyStore(engine, clock=clock)  # other: another process
        with pytest.raises(InvalidRequest, match="both"):
            await store.create("app", credit_usd=10.0, budget_usd=1.0)
        with pytest.raises(InvalidRequest, match="daily, weekly, monthly"):
            await store.create("app", credit_usd=10.0, budget_usd=1.0, budget_reset="hourly")
        secret, key = await store.create("app", credit_usd=10.0, budget_usd=1.0, budget_reset="daily")
        store.record(UsageRow("gen-1", key.id, "m", "miner", 1, 2, 0.75, 5.0, "ok"))
        seen = await store.authenticate(secret)  # counted at once, before the row is written
        assert seen.budget_remaining_usd == pytest.approx(0.25) and seen.remaining_usd == pytest.approx(9.25)
        assert seen.budget_resets_at == "2026-12-03T00:00:00+00:00"
        await store.flush()
        assert (await other.authenticate(secret)).budget_remaining_usd == pytest.approx(0.25)
        assert (await store.authenticate(secret)).budget_remaining_usd == pytest.approx(0.25)  # not twice
        now += 2 * 3600  # the next day: the budget starts over, the credit does not
        fresh = await other.authenticate(secret)
        assert fresh.budget_remaining_usd == pytest.approx(1.0) and fresh.remaining_usd == pytest.approx(9.25)
        store.record(UsageRow("gen-2", key.id, "m", "miner", 1, 2, 0.5, 5.0, "ok"))
        await store.flush()
        assert (await KeyStore(engine, clock=clock).authenticate(secret)).budget_remaining_usd == pytest.approx(0.5)
        # a new budget counts what the ledger shows for its period (this week: 0.75 + 0.5); clearing it leaves
        # the credit alone
        await store.set_budget(key.id, 0.4, "weekly")
        capped = await store.authenticate(secret)
        assert capped.budget_reset == "weekly" and capped.budget_remaining_usd == pytest.approx(-0.85)
        assert capped.budget_resets_at == "2026-12-07T00:00:00+00:00"
        await store.set_budget(key.id, None, None)
        free = await store.authenticate(secret)
        assert free.budget_remaining_usd is None and free.remaining_usd == pytest.approx(8.75)
        for amount in (0.0, float("nan")):
            with pytest.raises(InvalidRequest, match="budget must be a number > 0"):
                await store.set_budget(key.id, amount, "daily")
        with pytest.raises(NotFound):
            await store.set_budget(999, 1.0, "daily")


async def test_a_ledger_from_before_budgets_upgrades_with_its_keys(sql_url: str) -> None:
    import hashlib

    from alembic import command
    from sqlalchemy import text

    from veilnet.store.sql import alembic_config

    def to_first_revision(connection: object) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "gateway_0001")

    async with open_database(sql_url, run_migrations=False) as engine:
        async with engine.begin() as conn:
            await conn.run_sync(to_first_revision)
            await conn.execute(text(
                "INSERT INTO gateway_api_keys (name, prefix, key_hash, credit_usd, spent_usd, revoked, created_at) "
                "VALUES ('old', 'vn-old', :digest, 3.0, 1.0, false, 0)"), {"digest": hashlib.sha256(b"vn-old").hexdigest()})
    async with open_database(sql_url) as engine:  # migrated to the newest schema on open
        store = KeyStore(engine)
        key = await store.authenticate("vn-old")
        assert (key.remaining_usd, key.budget_usd, key.period_spent_usd) == (2.0, None, 0.0)
        await store.set_budget(key.id, 1.0, "monthly")
        assert (await store.authenticate("vn-old")).budget_remaining_usd == 1.0


async def test_closing_lets_a_ledger_write_in_progress_finish(sql_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Closing while the background writer is inside a transaction waits for it instead of cutting it short
    (cut short, its outcome was unknown: the batch went out twice, and on SQLite the cut transaction's lock
    could hold the next write for the whole busy timeout)."""
    import time

    from sqlalchemy import event

    async with open_database(sql_url) as engine:
        store = KeyStore(engine, flush_seconds=0.01)
        _, key = await store.create("app", credit_usd=1.0)
        inserted, committing = asyncio.Event(), asyncio.Event()

        def started(conn: object, cursor: object, statement: str, *args: object) -> None:
            if statement.lstrip().upper().startswith("INSERT INTO GATEWAY_USAGE"):
                inserted.set()

        def commit(conn: object) -> None:
            if inserted.is_set():
                committing.set()

        event.listen(engine.sync_engine, "before_cursor_execute", started)
        event.listen(engine.sync_engine, "commit", commit)
        for n in range(20):
            store.record(UsageRow(f"gen-{n}", key.id, "m", "miner", 1, 2, 0.01, 5.0, "ok"))
        await asyncio.wait_for(committing.wait(), 10)  # the background writer is committing its batch
        began = time.monotonic()
        with caplog.at_level("WARNING"):
            await store.aclose()
        assert time.monotonic() - began < 3
        assert "already written" not in caplog.text
        assert len(await KeyStore(engine).usage_rows(key.id)) == 20
