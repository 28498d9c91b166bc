"""Writing and reading the validator's per-tempo score history in the relational store."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from veilnet.scoring import ScoreState
from veilnet.store.sql import database_errors
from veilnet.store.validator_tables import score_history

__all__ = ["ScoreHistory", "ScorePoint"]


@dataclass(frozen=True)
class ScorePoint:
    tempo: int
    block: int
    miner: str
    score: float
    quality: float


class ScoreHistory:
    def __init__(self, engine: AsyncEngine, validator: str, netuid: int, *, timeout: float = 15.0) -> None:
        self._engine = engine
        self._timeout = timeout
        self._validator = validator
        self._netuid = netuid

    async def record(self, tempo: int, block: int, states: dict[str, ScoreState]) -> None:
        if not states:
            return
        now = time.time()
        rows = [
            {"validator": self._validator, "netuid": self._netuid, "tempo": tempo, "block": block, "miner": miner,
             "score": state.ema, "quality": state.quality, "created_at": now}
            for miner, state in states.items()
        ]
        async with database_errors("write score history", self._timeout), self._engine.begin() as conn:
            await conn.execute(insert(score_history), rows)

    async def series(self, limit: int = 10_000) -> list[ScorePoint]:
        """The newest ``limit`` points, oldest first."""
        query = (
            select(score_history)
            .where(score_history.c.validator == self._validator, score_history.c.netuid == self._netuid)
            .order_by(score_history.c.id.desc())
            .limit(limit)
        )
        async with database_errors("read score history", self._timeout), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            ScorePoint(r.tempo, r.block, r.miner, r.score, r.quality) for r in reversed(rows)
        ]
