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
        with pytest.raises(InvalidRequest):
            await store.topup(key.id, -1)
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
