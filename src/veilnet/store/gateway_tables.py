"""The gateway's tables: hashed API keys with credit and an optional budget per period, and one usage-ledger
row per request (its generation id unique: a request is charged once)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, ForeignKey, Integer, String, Table, Text

from veilnet.store.sql import metadata

__all__ = ["api_keys", "usage"]

api_keys = Table(
    "gateway_api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("credit_usd", Float, nullable=False, default=0.0),
    Column("spent_usd", Float, nullable=False, default=0.0),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("budget_usd", Float, nullable=True),  # at most this much spent per period; NULL: no budget
    Column("budget_reset", String(16), nullable=True),  # daily | weekly | monthly (veilnet.budgets)
    Column("period_start", Float, nullable=True),  # the period period_spent_usd counts in
    Column("period_spent_usd", Float, nullable=False, default=0.0, server_default="0"),
)

usage = Table(
    "gateway_usage",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("generation_id", String(64), nullable=False, index=True, unique=True),
    Column("key_id", Integer, ForeignKey("gateway_api_keys.id"), nullable=False, index=True),
    Column("model", String(200), nullable=False),
    Column("miner", String(64), nullable=True),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("latency_ms", Float, nullable=False, default=0.0),
    Column("status", String(32), nullable=False),
    Column("error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
)
