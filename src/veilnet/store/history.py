"""Writing and reading the validator's per-tempo score history in the relational store.

Each row is one miner at one tempo: the score the validator stores for it (``ScoreState.ema``, the value
weights are made from; docs/scoring.md gives its scale), its verified quality and — when the validator read
the metagraph at that epoch — the miner's uid, incentive and emission on chain. The dashboard plots it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from veilnet.chain.types import RAO_PER_TAO, Metagraph
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
    uid: int | None = None
    incentive: float | None = None  # share of the subnet's incentive, in [0, 1]
    emission: float | None = None  # TAO


class ScoreHistory:
    def __init__(self, engine: AsyncEngine, validator: str, netuid: int, *, timeout: float = 15.0) -> None:
        self._engine = engine
        self._timeout = timeout
        self._validator = validator
        self._netuid = netuid

    async def record(
        self, tempo: int, block: int, states: dict[str, ScoreState], metagraph: Metagraph | None = None
    ) -> None:
        """One row per miner in ``states``; ``metagraph`` (read at this epoch) adds uid, incentive, emission."""
        if not states:
            return
        now = time.time()
        rows = []
        for miner, state in states.items():
            neuron = metagraph.by_hotkey(miner) if metagraph is not None else None
            rows.append({
                "validator": self._validator, "netuid": self._netuid, "tempo": tempo, "block": block,
                "miner": miner, "score": state.ema, "quality": state.quality, "created_at": now,
                "uid": neuron.uid if neuron else None,
                "incentive": neuron.incentive_f if neuron else None,
                "emission": neuron.emission / RAO_PER_TAO if neuron else None,
            })
        async with database_errors("write score history", self._timeout), self._engine.begin() as conn:
            await conn.execute(insert(score_history), rows)

    def _mine(self) -> list[ColumnElement[bool]]:
        return [score_history.c.validator == self._validator, score_history.c.netuid == self._netuid]

    async def series(self, limit: int = 10_000) -> list[ScorePoint]:
        """The newest ``limit`` points, oldest first."""
        query = select(score_history).where(*self._mine()).order_by(score_history.c.id.desc()).limit(limit)
        return list(reversed(await self._points(query)))

    async def recent_tempos(self, tempos: int = 100) -> list[ScorePoint]:
        """Every point of the newest ``tempos`` tempos, oldest first."""
        newest = (
            select(score_history.c.tempo).where(*self._mine()).distinct()
            .order_by(score_history.c.tempo.desc()).limit(tempos).subquery()
        )
        query = (
            select(score_history)
            .where(*self._mine(), score_history.c.tempo.in_(select(newest.c.tempo)))
            .order_by(score_history.c.id)
        )
        return await self._points(query)

    async def _points(self, query: Select[Any]) -> list[ScorePoint]:
        async with database_errors("read score history", self._timeout), self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [ScorePoint(r.tempo, r.block, r.miner, r.score, r.quality, r.uid, r.incentive, r.emission)
                for r in rows]
