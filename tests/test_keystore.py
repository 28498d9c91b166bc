"""API keys and the usage ledger on SQLite and PostgreSQL (migrated by Alembic)."""

from __future__ import annotations

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
        await store.record(UsageRow("gen-1", key.id, "m", "miner", 10, 20, 0.25, 12.0, "ok"))
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
