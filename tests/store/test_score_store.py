"""The validator's score states survive a restart in real Redis, measured throughput, per-task figures and ban
included, and states written before throughput or the per-task figures were kept still load."""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from veilnet.scoring import Observation, ScoreState, TaskScore, update_scores
from veilnet.store.scores import ScoreStore


async def test_states_round_trip_through_redis(redis_client: aioredis.Redis) -> None:
    store = ScoreStore(redis_client, "validator", 7)
    probe = [Observation(miner="a", model="m", task=task, outcome="ok", kind="probe", probe="r1", window_ms=2000,
                         units=units) for task, units in (("chat", 64), ("embeddings", 64), ("acme-translate", 6))]
    caught = Observation(miner="b", model="m", task="chat", outcome="ok", verified=False, quality=0.0)
    plugin = Observation(miner="a", model="p", task="acme-translate", outcome="ok", verified=True, quality=0.75,
                         elapsed_ms=1000, units=3)
    states = update_scores({}, [*probe, caught, plugin], tempo=3)
    assert states["a"].throughput == {"chat": 32.0, "embeddings": 32.0, "acme-translate": 3.0}
    assert states["a"].tasks["acme-translate"] == TaskScore(share=1.0, quality=0.75)
    assert states["b"].banned_until == 23 and states["b"].tasks == {}  # caught: no share anywhere
    await store.save(states, 3)
    assert await ScoreStore(redis_client, "validator", 7).load() == (states, 3)


async def test_states_saved_before_throughput_was_kept_still_load(redis_client: aioredis.Redis) -> None:
    store = ScoreStore(redis_client, "validator", 7)
    old = {"ema": 0.4, "quality": 0.9, "banned_until": -1, "seen": True}
    await redis_client.hset("veilnet:scores:validator:7:states", mapping={"a": json.dumps(old)})
    await redis_client.set("veilnet:scores:validator:7:tempo", 12)
    assert await store.load() == ({"a": ScoreState(ema=0.4, quality=0.9, seen=True)}, 12)
    # and one saved with throughput, before the per-task figures were kept
    await redis_client.hset("veilnet:scores:validator:7:states",
                            mapping={"a": json.dumps({**old, "throughput": {"ocr": 2.5}})})
    assert (await store.load())[0] == {"a": ScoreState(ema=0.4, quality=0.9, seen=True, throughput={"ocr": 2.5})}
