"""The key store when PostgreSQL goes away or hangs: every wait is bounded, failures are StoreError (a 503 at
the gateway), cached keys keep working, and ledger rows are written once the database is back, with no
request needed to wake the writer; shutdown waits a bounded time for it."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest
from bittensor_wallet import Keypair
from sqlalchemy import func, select

from tests.store.pgproxy import PgProxy
from veilnet.errors import StoreError
from veilnet.store.gateway_tables import usage
from veilnet.store.keys import KeyStore, UsageRow
from veilnet.store.sql import DatabaseTimeouts, open_database

FAST = DatabaseTimeouts(connect=1.0, pool=1.0, statement=1.0, operation=2.0)


def row(n: int, key_id: int, cost: float = 0.01) -> UsageRow:
    return UsageRow(f"gen-{n}", key_id, "m", "miner", 1, 2, cost, 5.0, "ok")


async def ledger_rows(url: str) -> int:
    async with open_database(url, run_migrations=False) as engine, engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(usage))).scalar_one())


async def test_a_stopped_database_is_a_store_error_and_the_writer_writes_once_it_is_back(
        proxy: PgProxy, postgres_url: str) -> None:
    async with open_database(proxy.url(postgres_url), timeouts=FAST) as engine:
        store = KeyStore(engine, flush_seconds=0.05, timeout=FAST.operation, cache_seconds=0.2)
        secret, key = await store.create("app", credit_usd=1.0)
        other, _ = await store.create("other", credit_usd=1.0)
        await store.authenticate(secret)
        await proxy.stop()
        for n in range(5):
            store.record(row(n, key.id))
        with pytest.raises(StoreError, match="cannot write the usage ledger"):
            await store.flush()
        with pytest.raises(StoreError, match="cannot read API keys"):
            await store.authenticate(other)  # never read: nothing to go on
        await asyncio.sleep(0.3)  # past the cache time: the key read before goes on as last read
        assert (await store.authenticate(secret)).remaining_usd == pytest.approx(0.95)
        await asyncio.sleep(1.0)  # the writer retries in the background meanwhile
        await proxy.restart()
        deadline = time.monotonic() + 15
        while await ledger_rows(postgres_url) < 5:  # written with no further request to wake the writer
            assert time.monotonic() < deadline, "the ledger writer did not write the rows once the database was back"
            await asyncio.sleep(0.2)
        assert (await store.authenticate(other)).name == "other"
        await store.aclose()


async def test_a_hung_database_bounds_every_wait_and_reads_never_wait_on_the_writer(
        proxy: PgProxy, postgres_url: str) -> None:
    async with open_database(proxy.url(postgres_url), timeouts=FAST) as engine:
        store = KeyStore(engine, timeout=FAST.operation, close_seconds=1.0, cache_seconds=0.6, stale_wait=0.3)
        secret, key = await store.create("app", credit_usd=1.0)
        other, _ = await store.create("other", credit_usd=1.0)
        await store.authenticate(secret)
        proxy.hang()
        store.record(row(1, key.id))
        flushing = asyncio.create_task(store.flush())  # hangs in the database until its time runs out
        await asyncio.sleep(0.1)
        started = time.monotonic()
        assert (await store.authenticate(secret)).id == key.id  # cached: no wait at all
        assert time.monotonic() - started < 0.1
        await asyncio.sleep(0.6)  # the key's cache time is over: its re-read hangs, the request does not
        started = time.monotonic()
        assert (await store.authenticate(secret)).remaining_usd == pytest.approx(0.99)
        assert time.monotonic() - started < 0.3 + 0.2
        started = time.monotonic()
        with pytest.raises(StoreError):
            await asyncio.wait_for(store.authenticate(other), 30)  # a read: bounded by the store's timeout
        assert time.monotonic() - started < FAST.operation + 1.0
        with pytest.raises(StoreError):
            await asyncio.wait_for(flushing, 30)
        proxy.resume()
        await store.aclose()  # the row is written once the database answers again
    assert await ledger_rows(postgres_url) == 1


async def test_shutdown_waits_for_the_database_a_bounded_time(
        proxy: PgProxy, postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    async with open_database(proxy.url(postgres_url), timeouts=FAST) as engine:
        store = KeyStore(engine, timeout=FAST.operation, close_seconds=6.0)
        _, key = await store.create("app", credit_usd=1.0)
        await proxy.stop()
        for n in range(3):
            store.record(row(n, key.id))

        async def back_soon() -> None:
            await asyncio.sleep(1.0)
            await proxy.restart()

        returning = asyncio.create_task(back_soon())
        await store.aclose()  # retries until the database is back
        await returning
    assert await ledger_rows(postgres_url) == 3

    async with open_database(proxy.url(postgres_url), timeouts=FAST) as engine:
        store = KeyStore(engine, timeout=FAST.operation, close_seconds=1.5)
        await proxy.stop()
        store.record(row(10, key.id))
        store.record(row(11, key.id))
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="veilnet.store.keys"), \
                pytest.raises(StoreError, match="2 usage ledger rows could not be written"):
            await store.aclose()
        assert time.monotonic() - started < 1.5 + FAST.operation
        lost = [r for r in caplog.records if r.getMessage() == "ledger row lost"]
        assert sorted(r.generation_id for r in lost) == ["gen-10", "gen-11"]  # type: ignore[attr-defined]
        await proxy.restart()


async def test_the_gateway_answers_503_while_the_database_is_down(proxy: PgProxy, postgres_url: str) -> None:
    import aiohttp

    from veilnet.gateway import GatewayContext, create_gateway_app
    from veilnet.gateway.directory import MinerDirectory
    from veilnet.relay import RelayClient

    gateway = Keypair.create_from_uri("//DownDatabaseGateway")

    async def scores() -> dict[str, float]:
        return {}

    async with open_database(proxy.url(postgres_url), timeouts=FAST) as engine, aiohttp.ClientSession() as http, \
            RelayClient() as relay:
        store = KeyStore(engine, timeout=FAST.operation)
        secret, _ = await store.create("app", credit_usd=1.0)
        ctx = GatewayContext(keypair=gateway, keys=store, directory=MinerDirectory(http, gateway.ss58_address),
                             http=http, scores=scores, relay=relay)
        await proxy.stop()
        transport = httpx.ASGITransport(app=create_gateway_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            response = await client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                                         json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["message"] == "cannot read API keys: the database failed (ConnectionRefusedError)"
        assert str(proxy.port) not in response.text  # the database's address stays in the gateway's log
        await proxy.restart()
        await store.aclose()
