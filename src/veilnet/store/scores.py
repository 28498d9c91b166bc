"""The validator's score states in Redis, so a restarted validator carries on where it stopped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from types import TracebackType

import redis.asyncio as aioredis

from veilnet import cancelling
from veilnet.scoring import ScoreState
from veilnet.store.redis import KeySpace

__all__ = ["LatestScores", "ScoreStore"]

log = logging.getLogger(__name__)


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
            (key.decode() if isinstance(key, bytes) else key): ScoreState.from_dict(json.loads(value))
            for key, value in raw.items()
        }
        tempo = await self._redis.get(self._tempo)
        return states, int(tempo) if tempo is not None else -1

    async def save(self, states: dict[str, ScoreState], tempo: int) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._states)
            if states:
                pipe.hset(self._states, mapping={k: json.dumps(v.to_dict()) for k, v in states.items()})
            pipe.set(self._tempo, tempo)
            await pipe.execute()


class LatestScores:
    """The validator's current score (EMA) per miner hotkey, as the gateway routes by it (and the whole states,
    :meth:`states`, for the dashboard): re-read from Redis
    every ``interval`` seconds in the background, so no request waits on Redis (nor do a thousand requests
    read it at once), and while Redis is away routing goes on with the last scores read (each failed read is
    logged). Calling it returns the scores; use it with ``async with``."""

    def __init__(self, store: ScoreStore, *, interval: float = 1.0) -> None:
        self._store = store
        self._interval = interval
        self._latest: dict[str, float] = {}
        self._states: dict[str, ScoreState] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LatestScores:
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._refresh_forever())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __call__(self) -> dict[str, float]:
        return self._latest

    async def states(self) -> dict[str, ScoreState]:
        """The whole score states last read (per-task figures included), as the dashboard shows them."""
        return self._states

    async def refresh(self) -> None:
        """Read the scores now; on failure keep the last ones and log why."""
        try:
            states, _ = await self._store.load()
        except (aioredis.RedisError, OSError, ValueError) as exc:
            log.warning("gateway routes on the last scores read: cannot read them from Redis: %s", exc)
            return
        self._states = states
        self._latest = {hotkey: state.ema for hotkey, state in states.items()}

    async def _refresh_forever(self) -> None:
        while True:
            cancelling.raise_if_stopping()
            await asyncio.sleep(self._interval)
            await self.refresh()
