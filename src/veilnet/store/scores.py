"""The validator's score states in Redis, so a restarted validator carries on where it stopped."""

from __future__ import annotations

import json
from dataclasses import asdict

import redis.asyncio as aioredis

from veilnet.scoring import ScoreState
from veilnet.store.redis import KeySpace

__all__ = ["ScoreStore"]


class ScoreStore:
    """``veilnet:scores:<validator>:<netuid>``: a hash of miner hotkey -> score state, and the last tempo."""

    def __init__(self, redis: aioredis.Redis, validator: str, netuid: int) -> None:
        self._redis = redis
        keys = KeySpace(f"veilnet:scores:{validator}:{netuid}")
        self._states = keys("states")
        self._tempo = keys("tempo")

    async def load(self) -> tuple[dict[str, ScoreState], int]:
        raw = await self._redis.hgetall(self._states)
        states = {
            (key.decode() if isinstance(key, bytes) else key): ScoreState(**json.loads(value))
            for key, value in raw.items()
        }
        tempo = await self._redis.get(self._tempo)
        return states, int(tempo) if tempo is not None else -1

    async def save(self, states: dict[str, ScoreState], tempo: int) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._states)
            if states:
                pipe.hset(self._states, mapping={k: json.dumps(asdict(v)) for k, v in states.items()})
            pipe.set(self._tempo, tempo)
            await pipe.execute()
