"""The challenger's budget against real miners over HTTP, real Redis and the devnet chain: one quota per
validator at the miner, organic traffic first, and no extra challenges for a miner that hides its terms."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from starlette.types import ASGIApp, Receive, Scope, Send
from tests.conftest import serve_asgi
from tests.miner.conftest import fake_upstream_app
from tests.validator.subnet import MinerSpec, Subnet, devnet_subnet

from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.protocol.openai import ChatCompletionRequest
from veilnet.quotas import quota_for, validator_stakes
from veilnet.relay import MinerClient
from veilnet.settings import MinerSettings, ValidatorSettings
from veilnet.store.organic import RequestCounter
from veilnet.store.validator_pipeline import ChallengeRecord
from veilnet.validator import run_challenger

MODEL = "upstream-echo"


@contextlib.asynccontextmanager
async def upstream() -> AsyncIterator[OpenAIUpstreamEngine]:
    async with serve_asgi(fake_upstream_app()) as url, OpenAIUpstreamEngine(f"{url}/v1", [MODEL]) as engine:
        yield engine


def hiding_terms(app: ASGIApp) -> ASGIApp:
    """A miner that answers 503 on ``/capacity`` and serves everything else."""

    async def hop(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/capacity":
            await send({"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"unavailable"})
            return
        await app(scope, receive, send)

    return hop


async def drain(net: Subnet, ctx: Any) -> list[ChallengeRecord]:
    records = []
    while batch := await ctx.pipeline.claim_answers(count=500, block_ms=50):
        records += [record for _, record in batch]
    return records


async def challenge_for(ctx: Any, seconds: float) -> None:
    challenger = asyncio.create_task(run_challenger(ctx, round_interval=0.2))
    try:
        await asyncio.sleep(seconds)
        assert not challenger.done(), challenger.exception()
    finally:
        challenger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await challenger


async def test_organic_traffic_comes_first_and_challenges_stay_within_the_share(redis_client: aioredis.Redis) -> None:
    window = 10  # the request counters' bucket: windows and buckets line up
    async with upstream() as engine, devnet_subnet(
            redis_client, {"m": MinerSpec(engine, MinerSettings(capacity_per_window=40, window_seconds=window))},
            prefix="Budget") as net:
        me = net.validator.ss58_address
        quota = quota_for(40, validator_stakes((await net.chain.get_metagraph(net.netuid)).neurons), me).total
        assert quota >= 30
        ctx = net.context(settings=ValidatorSettings(reference_models=[MODEL], synthetic_share=0.5,
                                                     challenges_per_window=600))
        organic_counts = RequestCounter(redis_client, "organic", me, net.netuid)
        gateway = MinerClient(net.validator, net.relay, on_send=organic_counts.count)  # as the gateway has it
        neuron = (await net.chain.get_metagraph(net.netuid)).by_hotkey(net.hotkey("m"))
        assert neuron is not None and neuron.axon is not None
        while time.time() % window > 0.5:  # start at a window's start
            await asyncio.sleep(0.05)
        start_ms = int(time.time() * 1000) // (window * 1000) * window * 1000
        organic = quota - 10
        request = ChatCompletionRequest(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        statuses = []
        for response in await asyncio.gather(*(gateway.send(neuron.axon.url, neuron.hotkey, request)
                                               for _ in range(organic))):
            statuses.append(response.status)
            response.release()
        assert statuses == [200] * organic
        await organic_counts.flush()
        quota_key = f"veilnet:quota:{neuron.hotkey}:{me}:{start_ms}:total"  # the miner's count of the window

        async def quota_used_after_the_window() -> Any:  # read before the key expires (two windows after its last use)
            await asyncio.sleep(start_ms / 1000 + window + 0.3 - time.time())
            return await redis_client.get(quota_key)

        quota_used = asyncio.create_task(quota_used_after_the_window())
        await challenge_for(ctx, window * 2 - (time.time() - start_ms / 1000) + 0.5)  # this window and the next
        records = await drain(net, ctx)
        synthetic = ctx.synthetic_counts
        await synthetic.flush()
        first, second = (await synthetic.used(neuron.hotkey, start_ms, now_ms=start_ms + window * 1000 - 1),
                         await synthetic.used(neuron.hotkey, start_ms + window * 1000,
                                              now_ms=start_ms + 2 * window * 1000 - 1))
        # the first window: what organic traffic left (10), never the synthetic share (quota / 2)
        assert 1 <= first <= quota - organic
        # the next: the synthetic share, never the whole quota
        assert quota // 4 <= second <= quota // 2
        # (one may still be in flight at the end; the last half second belongs to a third window)
        third = await synthetic.used(neuron.hotkey, start_ms + 2 * window * 1000,
                                     now_ms=start_ms + 3 * window * 1000 - 1)
        assert first + second - 2 <= len(records) <= first + second + third
        assert all(r.observation.outcome == "ok" for r in records)  # no 429: the one quota was never overrun
        assert int(await quota_used) == organic + first <= quota


async def test_a_miner_hiding_its_terms_gets_the_normal_budget_and_a_reliability_failure(
        redis_client: aioredis.Redis) -> None:
    async with upstream() as engine, devnet_subnet(
            redis_client, {"honest": MinerSpec(engine), "hiding": MinerSpec(engine, hop=hiding_terms)},
            prefix="Terms") as net:
        ctx = net.context(settings=ValidatorSettings(reference_models=[MODEL], challenges_per_window=120))
        await challenge_for(ctx, 12.0)
        records = await drain(net, ctx)
        observations, _ = await ctx.pipeline.take_observations()
    # probe rounds measure the miners whose terms can be read (they take from the share, not from the challenges)
    probed = {r.observation.miner for r in records if r.observation.kind == "probe"}
    assert probed == {net.hotkey("honest")}
    challenges = [r for r in records if r.observation.kind == "challenge"]
    counts = {name: sum(r.observation.miner == net.hotkey(name) for r in challenges) for name in ("honest", "hiding")}
    spread = 3 * math.sqrt(counts["honest"] + counts["hiding"])  # Poisson arrivals: a few standard deviations
    assert counts["honest"] >= 10
    assert counts["hiding"] <= counts["honest"] + spread  # never more challenges (it was 370 against 88)
    assert counts["hiding"] >= counts["honest"] - spread  # nor starved: the normal budget
    terms = [o for o in observations if o.task == "terms"]
    assert terms and {o.miner for o in terms} == {net.hotkey("hiding")}
    assert all(o.outcome == "error" for o in terms)  # a reliability failure, once a minute
    assert len(terms) == 1
