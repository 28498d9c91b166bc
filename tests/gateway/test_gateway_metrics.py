"""The gateway keeps its miners' score and breaker gauges current by itself: a Prometheus scrape of /metrics
sees them though nobody opened the dashboard (real gateway and miners over loopback HTTP)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Receive, Scope, Send
from tests.gateway.conftest import MINER_A, MINER_B, stack


def failing_posts(app: ASGIApp) -> ASGIApp:
    """A miner whose engine fails every request (500: the miner's own fault)."""
    async def hop(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"error": {"message": "engine crashed"}}'})
            return
        await app(scope, receive, send)

    return hop


async def gauges(http: aiohttp.ClientSession, url: str) -> dict[str, dict[str, float]]:
    """name -> miner_uid -> value, as Prometheus reads /metrics."""
    async with http.get(f"{url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("veilnet_miner_score", "veilnet_gateway_breaker_open"):
            found[family.name] = {sample.labels["miner_uid"]: sample.value for sample in family.samples}
    return found


async def test_scores_and_open_breakers_are_on_metrics_without_the_dashboard(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    async with stack(tmp_path, redis_client, gateway_lifespan="on", gauge_seconds=0.1,
                     miner_hops={MINER_B.ss58_address: failing_posts}) as s, aiohttp.ClientSession() as http:
        url, ctx = s["url"], s["ctx"]
        uids = {n.hotkey: str(n.uid) for n in ctx.directory.metagraph.neurons}
        a, b = uids[MINER_A.ss58_address], uids[MINER_B.ss58_address]
        for _ in range(50):  # the refresh runs in the background: no request has been made
            seen = await gauges(http, url)
            if seen.get("veilnet_miner_score", {}).get(a):
                break
            await asyncio.sleep(0.1)
        assert seen["veilnet_miner_score"][a] == 0.9 and seen["veilnet_miner_score"][b] == 0.1
        assert seen["veilnet_gateway_breaker_open"][a] == 0 and seen["veilnet_gateway_breaker_open"][b] == 0
        # miner B fails every request sent to it (miner A is told to stay out of the way)
        headers = {"Authorization": f"Bearer {s['secret']}"}
        body = {"model": "upstream-echo", "messages": [{"role": "user", "content": "hi"}],
                "provider": {"ignore": [MINER_A.ss58_address]}}
        for _ in range(3):
            async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as response:
                assert response.status >= 500
        assert ctx.breaker.state(MINER_B.ss58_address) != "closed"
        for _ in range(50):
            seen = await gauges(http, url)
            if seen["veilnet_gateway_breaker_open"].get(b) == 1:
                break
            await asyncio.sleep(0.1)
        assert seen["veilnet_gateway_breaker_open"][b] == 1
        assert seen["veilnet_gateway_breaker_open"][a] == 0
