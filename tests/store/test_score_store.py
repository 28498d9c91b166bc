"""The validator's score states survive a restart in real Redis, measured throughput and ban included, and
states written before throughput was kept still load."""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from veilnet.scoring import Observation, ScoreState, update_scores
from veilnet.store.scores import ScoreStore


async def test_states_round_trip_through_redis(redis_client: aioredis.Redis) -> None:
    store = ScoreStore(redis_client, "validator", 7)
    probe = [Observation(miner="a", model="m", task=task, outcome="ok", kind="probe", probe="r1", elapsed_ms=2000,
                         units=64) for task in ("chat", "embeddings")]
    caught = Observation(miner="b", model="m", task="chat", outcome="ok", verified=False, quality=0.0)
    states = update_scores({}, [*probe, caught], tempo=3)
    assert states["a"].throughput == {"chat": 32.0, "embeddings": 32.0} and states["b"].banned_until == 23
    await store.save(states, 3)
    assert await ScoreStore(redis_client, "validator", 7).load() == (states, 3)


async def test_states_saved_before_throughput_was_kept_still_load(redis_client: aioredis.Redis) -> None:
    store = ScoreStore(redis_client, "validator", 7)
    old = {"ema": 0.4, "quality": 0.9, "banned_until": -1, "seen": True}
    await redis_client.hset("veilnet:scores:validator:7:states", mapping={"a": json.dumps(old)})
    await redis_client.set("veilnet:scores:validator:7:tempo", 12)
    assert await store.load() == ({"a": ScoreState(ema=0.4, quality=0.9, seen=True)}, 12)
