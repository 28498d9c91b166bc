"""The validator's score history (one row per miner per tempo), which the dashboard plots."""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, String, Table

from veilnet.store.sql import metadata

__all__ = ["score_history"]

score_history = Table(
    "validator_score_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("validator", String(64), nullable=False),
    Column("netuid", Integer, nullable=False),
    Column("tempo", Integer, nullable=False),
    Column("block", Integer, nullable=False),
    Column("miner", String(64), nullable=False, index=True),
    Column("score", Float, nullable=False),
    Column("quality", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)
