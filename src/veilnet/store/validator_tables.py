"""The validator's score history (one row per miner per tempo, with the miner's uid, incentive and emission
on chain at that epoch where known), which the dashboard plots."""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, String, Table

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
    Column("uid", Integer, nullable=True),
    Column("incentive", Float, nullable=True),  # share of the subnet's incentive, in [0, 1]
    Column("emission", Float, nullable=True),  # TAO
    Index("ix_validator_score_history_tempo", "validator", "netuid", "tempo"),
)
