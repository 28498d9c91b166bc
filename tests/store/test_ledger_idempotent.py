"""Each generation is charged once: a batch sent again after its commit's answer was lost, a row recorded twice,
and a ledger from before the unique generation id (its duplicates removed and refunded on upgrade)."""

from __future__ import annotations

import hashlib

import pytest
from alembic import command
from sqlalchemy import Connection, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from tests.store.pgproxy import PgProxy
from veilnet.errors import StoreError
from veilnet.store.gateway_tables import api_keys, usage
from veilnet.store.keys import KeyStore, UsageRow
from veilnet.store.ledger import write_batch
from veilnet.store.sql import alembic_config, open_database


def row(n: int, key_id: int, cost: float) -> UsageRow:
    return UsageRow(f"gen-{n}", key_id, "m", "miner", 1, 2, cost, 5.0, "ok")


async def test_a_batch_whose_commit_answer_is_lost_is_charged_once(proxy: PgProxy, postgres_url: str) -> None:
    async with open_database(proxy.url(postgres_url)) as engine:
        store = KeyStore(engine)
        secret, key = await store.create("app", credit_usd=10.0)
        await store.authenticate(secret)
        for n in range(60):
            store.record(row(n, key.id, 0.01))
        proxy.drop_next_commit_answers(1)
        with pytest.raises(StoreError, match="cannot write the usage ledger"):
            await store.flush()  # committed on the server; the answer never came
        assert proxy.answers_dropped == 1
        await store.flush()  # the same batch again
        assert (await store.authenticate(secret)).remaining_usd == pytest.approx(9.4)
        await store.aclose()
    async with open_database(postgres_url) as engine, engine.connect() as conn:
        rows = (await conn.execute(select(usage.c.generation_id))).scalars().all()
        spent = (await conn.execute(select(api_keys.c.spent_usd).where(api_keys.c.id == key.id))).scalar_one()
    assert sorted(rows) == sorted(f"gen-{n}" for n in range(60))
    assert spent == pytest.approx(0.6)


async def test_a_batch_written_twice_inserts_and_charges_once(sql_url: str) -> None:
    async with open_database(sql_url) as engine:
        store = KeyStore(engine)
        _, key = await store.create("app", credit_usd=10.0)
        batch = [(row(1, key.id, 0.5), 1.0), (row(2, key.id, 0.25), 1.0), (row(1, key.id, 0.5), 1.0)]
        async with engine.begin() as conn:
            first = await write_batch(conn, batch, 1.0)
        async with engine.begin() as conn:
            again = await write_batch(conn, [*batch, (row(3, key.id, 1.0), 2.0)], 2.0)
        assert (first.inserted, first.skipped, first.charged) == (2, 1, {key.id: 0.75})
        assert (again.inserted, again.skipped, again.charged) == (1, 3, {key.id: 1.0})
        assert again.keys[0]["spent_usd"] == pytest.approx(1.75)
        # the store: a row recorded twice is charged once, here and in the database
        store.record(row(4, key.id, 2.0))
        store.record(row(4, key.id, 2.0))
        await store.flush()
        assert (await KeyStore(engine).all_keys())[0].spent_usd == pytest.approx(3.75)


async def test_a_ledger_with_duplicate_generations_upgrades_refunded(sql_url: str) -> None:
    def to_previous_head(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "gateway_0002")

    async with open_database(sql_url, run_migrations=False) as engine:
        async with engine.begin() as conn:
            await conn.run_sync(to_previous_head)
            await conn.execute(insert(api_keys).values(
                id=1, name="old", prefix="vn-old", key_hash=hashlib.sha256(b"vn-old").hexdigest(), credit_usd=5.0,
                spent_usd=1.75, revoked=False, created_at=0.0, budget_usd=2.0, budget_reset="daily",
                period_start=1000.0, period_spent_usd=1.25))
            # gen-a charged three times (twice in the current period), gen-b once
            for n, (generation, cost, at) in enumerate([("gen-a", 0.5, 500.0), ("gen-b", 0.25, 600.0),
                                                        ("gen-a", 0.5, 1500.0), ("gen-a", 0.5, 1600.0)]):
                await conn.execute(insert(usage).values(
                    id=n + 1, generation_id=generation, key_id=1, model="m", miner=None, prompt_tokens=1,
                    completion_tokens=1, cost_usd=cost, latency_ms=1.0, status="ok", error=None, created_at=at))
    async with open_database(sql_url) as engine:  # upgraded on open
        async with engine.connect() as conn:
            kept = (await conn.execute(select(usage.c.id, usage.c.generation_id).order_by(usage.c.id))).all()
            key = (await conn.execute(select(api_keys))).one()._mapping
        assert [tuple(r) for r in kept] == [(1, "gen-a"), (2, "gen-b")]
        assert key["spent_usd"] == pytest.approx(0.75)
        assert key["period_spent_usd"] == pytest.approx(0.25)
        with pytest.raises(IntegrityError, match="generation_id"):
            async with engine.begin() as conn:
                await conn.execute(text(
                    "INSERT INTO gateway_usage (id, generation_id, key_id, model, prompt_tokens, completion_tokens, "
                    "cost_usd, latency_ms, status, created_at) VALUES (99, 'gen-b', 1, 'm', 1, 1, 0.25, 1, 'ok', 0)"))
        async with engine.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(usage))).scalar_one() == 2
