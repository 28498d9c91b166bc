"""The gateway's attempts reach the validator's scores: a miner refusing the organic work it is sent loses
reliability (real gateway, real miners, real Redis streams, the real scoring)."""

from __future__ import annotations

import random
from pathlib import Path

import openai
import pytest
import redis.asyncio as aioredis
from starlette.types import ASGIApp, Receive, Scope, Send
from tests.gateway.conftest import GATEWAY, MINER_A, MINER_B, stack

from veilnet.gateway import AttemptOutcome, Fault
from veilnet.gateway.outcomes import OrganicOutcomes, organic_observation
from veilnet.scoring import ScoreParams, tempo_components
from veilnet.store.validator_pipeline import ValidatorPipeline


def refusing(app: ASGIApp) -> ASGIApp:
    """A miner that advertises capacity and answers every chat request 429 with Retry-After."""

    async def hop(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/chat/completions":
            body = b'{"error": {"message": "busy", "type": "rate_limit_error", "code": "rate_limited"}}'
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", b"0.05")]})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return hop


def attempt(fault: Fault | None, status: int | None = 200, error: str | None = None) -> AttemptOutcome:
    return AttemptOutcome(miner="m", model="x", fault=fault, status=status, latency_s=0.1, first_byte_s=0.05,
                          error=error)


def test_which_attempts_count() -> None:
    assert organic_observation(attempt(None)).outcome == "ok"  # type: ignore[union-attr]
    assert organic_observation(attempt(Fault.BUSY, 429, "busy")).outcome == "rate_limited"  # type: ignore[union-attr]
    assert organic_observation(attempt(Fault.MINER, None, "no answer")).outcome == "error"  # type: ignore[union-attr]
    for fault in (Fault.CLIENT, Fault.GATEWAY, Fault.DEPENDENCY):
        assert organic_observation(attempt(fault, 400, "x")) is None
    assert organic_observation(attempt(None, 200, "client left")) is None  # abandoned: says nothing
    observation = organic_observation(attempt(None))
    assert observation is not None and observation.category == "organic"


async def test_refused_organic_requests_cost_the_refusing_miner_reliability(
    tmp_path: Path, redis_client: aioredis.Redis,
) -> None:
    pipeline = ValidatorPipeline(redis_client, GATEWAY.ss58_address, 1)
    async with stack(tmp_path, redis_client, miner_hops={MINER_A.ss58_address: refusing}) as s:
        client: openai.AsyncOpenAI = s["client"]
        for _ in range(3):
            answer = await client.chat.completions.create(
                model="upstream-echo", messages=[{"role": "user", "content": "hi"}])
            assert answer.choices[0].message.content
        async with OrganicOutcomes(pipeline, flush_seconds=0.05) as sink:
            for outcome in s["outcomes"]:
                sink(outcome)
    observations, _ = await pipeline.take_observations()
    by_miner = {key: [o.outcome for o in observations if o.miner == key.ss58_address] for key in (MINER_A, MINER_B)}
    assert by_miner[MINER_B] == ["ok", "ok", "ok"]  # every request fell over to B
    assert by_miner[MINER_A] and set(by_miner[MINER_A]) == {"rate_limited"}
    parts = tempo_components(observations, ScoreParams())
    assert parts[MINER_A.ss58_address].reliability == 0.0
    assert parts[MINER_B.ss58_address].reliability == pytest.approx(1.0)


async def test_a_uniform_sample_keeps_the_refusal_share(redis_client: aioredis.Redis) -> None:
    pipeline = ValidatorPipeline(redis_client, GATEWAY.ss58_address, 1)
    async with OrganicOutcomes(pipeline, sample_rate=0.25, flush_seconds=0.05, rng=random.Random(3)) as sink:
        for index in range(800):
            sink(attempt(Fault.BUSY, 429, "busy") if index % 4 == 0 else attempt(None))
    observations, _ = await pipeline.take_observations()
    assert 150 <= len(observations) <= 250
    refused = sum(1 for o in observations if o.outcome == "rate_limited") / len(observations)
    assert 0.17 <= refused <= 0.33  # a quarter refused, as in all 800
