"""API keys (stored as SHA-256 hashes, shown once), their credit, and the usage ledger."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from veilnet.errors import AuthenticationError, InvalidRequest, NotFound, StoreError
from veilnet.store.gateway_tables import api_keys, usage

__all__ = ["ApiKey", "KeyStore", "UsageRow"]

KEY_PREFIX = "vn-"


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    credit_usd: float
    spent_usd: float
    revoked: bool

    @property
    def remaining_usd(self) -> float:
        return self.credit_usd - self.spent_usd


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
                  spent_usd=m["spent_usd"], revoked=m["revoked"])


class KeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, name: str, credit_usd: float) -> tuple[str, ApiKey]:
        """A new key; the secret is returned once and only its hash is stored."""
        if credit_usd < 0:
            raise InvalidRequest("credit must be >= 0", param="credit")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(
                    insert(api_keys).values(name=name, prefix=secret[:10], key_hash=_hash(secret),
                                            credit_usd=credit_usd, spent_usd=0.0, revoked=False,
                                            created_at=time.time())
                )
                key_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot create API key: {exc}") from exc
        return secret, ApiKey(key_id, name, secret[:10], credit_usd, 0.0, False)

    async def authenticate(self, secret: str) -> ApiKey:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.key_hash == _hash(secret)))).first()
        if row is None:
            raise AuthenticationError("invalid API key", code="invalid_api_key")
        key = _row(row)
        if key.revoked:
            raise AuthenticationError("this API key was revoked", code="invalid_api_key")
        return key

    async def all_keys(self) -> list[ApiKey]:
        async with self._engine.connect() as conn:
            return [_row(r) for r in (await conn.execute(select(api_keys).order_by(api_keys.c.id))).all()]

    async def _update(self, key_id: int, **values: object) -> None:
        async with self._engine.begin() as conn:
            result = await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(**values))
        if result.rowcount == 0:
            raise NotFound(f"no API key with id {key_id}")

    async def revoke(self, key_id: int) -> None:
        await self._update(key_id, revoked=True)

    async def topup(self, key_id: int, amount_usd: float) -> None:
        if amount_usd <= 0:
            raise InvalidRequest("top-up amount must be positive", param="amount")
        await self._update(key_id, credit_usd=api_keys.c.credit_usd + amount_usd)

    async def record(self, row: UsageRow) -> None:
        """Write the ledger row and charge the key in one transaction."""
        async with self._engine.begin() as conn:
            await conn.execute(insert(usage).values(**row.__dict__, created_at=time.time()))
            if row.cost_usd:
                await conn.execute(
                    update(api_keys).where(api_keys.c.id == row.key_id)
                    .values(spent_usd=api_keys.c.spent_usd + row.cost_usd)
                )

    async def usage_rows(self, key_id: int) -> list[UsageRow]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(usage).where(usage.c.key_id == key_id).order_by(usage.c.id))).all()
        return [
            UsageRow(**{k: v for k, v in r._mapping.items() if k not in ("id", "created_at")}) for r in rows
        ]
