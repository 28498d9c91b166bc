"""Credit and budgets under concurrency, through the real gateway over HTTP (real miners, real SQL and Redis):
a request holds the most it can cost before a miner is asked, so bursts of concurrent requests of one key
never spend past its credit or budget; every way a request ends (answered, failed mid-stream, left by its
client before or during its stream) settles or releases its hold."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from tests.gateway.conftest import stack

from veilnet.store.keys import KeyStore

# the miners' prices (tests/gateway/conftest.py): $1 per million prompt tokens, $2 per million completion tokens
PROMPT = "hi"
MAX_TOKENS = 2
# what a request holds: its prompt's bytes, 16 template tokens for its message and 64 for the request, max_tokens
HOLD_USD = ((len(PROMPT) + 16 + 64) * 1.0 + MAX_TOKENS * 2.0) / 1e6
ONE_AND_A_HALF_HOLDS = 1.5 * HOLD_USD
# the bursts ask for "user": "max-usage": the fake upstream reports a million tokens each way, so the miner
# bills the most the request allows, which is what it held
ONE_REQUEST_USD = HOLD_USD


def chat(stream: bool = False, model: str = "upstream-echo", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS,
            "stream": stream, **extra}


async def burst(url: str, secret: str, n: int = 50, *, stream: bool = False) -> list[tuple[int, bytes]]:
    async with aiohttp.ClientSession() as http:
        async def one() -> tuple[int, bytes]:
            async with http.post(f"{url}/v1/chat/completions", json=chat(stream, user="max-usage"),
                                 headers={"Authorization": f"Bearer {secret}"}) as response:
                return response.status, await response.read()

        return list(await asyncio.gather(*(one() for _ in range(n))))


async def spent(keys: KeyStore, key_id: int) -> float:
    return sum(row.cost_usd for row in await keys.usage_rows(key_id))  # usage_rows writes pending rows first


async def spend_in_bursts(s: dict[str, Any], secret: str, *, stream: bool) -> tuple[int, list[bytes]]:
    """Bursts of 50 concurrent requests until the key is refused every one: (requests served, refusals)."""
    served, refusals = 0, []
    for _ in range(40):
        answers = await burst(s["url"], secret, stream=stream)
        assert {status for status, _ in answers} <= {200, 402}, answers[:3]
        served += sum(status == 200 for status, _ in answers)
        refusals += [body for status, body in answers if status == 402]
        if all(status == 402 for status, _ in answers):
            return served, refusals
    raise AssertionError("the key was never out of credit")


async def test_concurrent_requests_never_spend_past_a_keys_credit(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client) as s:
        keys: KeyStore = s["keys"]
        for stream in (False, True):
            credit = 10 * ONE_REQUEST_USD
            secret, key = await keys.create(f"ten requests, stream={stream}", credit_usd=credit)
            served, refusals = await spend_in_bursts(s, secret, stream=stream)
            total = await spent(keys, key.id)
            print(f"\nstream={stream}: credit ${credit:.6f} for 10 requests; {served} served, ${total:.6f} spent")
            assert total <= credit + ONE_REQUEST_USD
            assert served == 10 and total == pytest.approx(credit)  # all of it spent, none past it
            assert all(b'"code":"insufficient_credits"' in body and b"credit" in body for body in refusals)
            assert (await keys.authenticate(secret)).reserved_usd == 0.0


async def test_concurrent_requests_never_spend_past_a_keys_budget(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client) as s:
        keys: KeyStore = s["keys"]
        budget = 10 * ONE_REQUEST_USD
        secret, key = await keys.create("budget of ten", credit_usd=1.0, budget_usd=budget, budget_reset="daily")
        served, refusals = await spend_in_bursts(s, secret, stream=False)
        total = await spent(keys, key.id)
        print(f"\nbudget ${budget:.6f} for 10 requests; {served} served, ${total:.6f} spent")
        assert total <= budget + ONE_REQUEST_USD
        assert served == 10 and total == pytest.approx(budget)
        assert any(b"budget_exceeded" in body for body in refusals)
        assert (await keys.authenticate(secret)).reserved_usd == 0.0


async def released(keys: KeyStore, secret: str) -> None:
    """Wait for the request's hold to go, then top the key up to one hold and a half again (a request the
    client left after the miner answered is billed: the miner did the work)."""
    for _ in range(100):
        key = await keys.authenticate(secret)
        if key.reserved_usd == 0.0:
            if key.remaining_usd < ONE_AND_A_HALF_HOLDS:
                await keys.topup(key.id, ONE_AND_A_HALF_HOLDS - key.remaining_usd)
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the request's hold was never released")


async def test_every_way_a_request_ends_frees_its_hold(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    """The key can cover one hold at a time: each step is served only if the one before let its hold go."""
    async with stack(tmp_path, redis_client, keepalive_seconds=2.0) as s:
        keys: KeyStore = s["keys"]
        secret, _ = await keys.create("one at a time", credit_usd=ONE_AND_A_HALF_HOLDS)
        headers = {"Authorization": f"Bearer {secret}"}
        url = f"{s['url']}/v1/chat/completions"
        async with aiohttp.ClientSession() as http:
            # a stream that breaks mid-way (the miner's failure): an error event, nothing billed
            async with http.post(url, json=chat(True, "upstream-dying"), headers=headers) as response:
                assert response.status == 200
                assert b'"finish_reason":"error"' in await response.read()
            await released(keys, secret)
            # the client leaves mid-stream
            async with http.post(url, json=chat(True, user="slow-stream"), headers=headers) as response:
                assert response.status == 200
                await response.content.readline()
                response.close()
            await released(keys, secret)
            # the client leaves before its stream began (the miner answers after half a second)
            with_timeout = aiohttp.ClientTimeout(total=0.2)
            try:
                async with http.post(url, json=chat(True, "upstream-slow"), headers=headers, timeout=with_timeout):
                    pass
            except TimeoutError:
                pass
            await asyncio.sleep(1.0)  # the miner answers meanwhile
            await released(keys, secret)
            # the client leaves before a whole answer came
            try:
                async with http.post(url, json=chat(False, "upstream-slow"), headers=headers, timeout=with_timeout):
                    pass
            except TimeoutError:
                pass
            await asyncio.sleep(1.0)
            await released(keys, secret)
            # and the key still has its one request
            async with http.post(url, json=chat(), headers=headers) as response:
                assert response.status == 200, await response.text()
            await released(keys, secret)


async def test_two_gateway_processes_overdraw_a_key_by_at_most_what_it_had_left(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    """Holds are per process (docs/deploy.md): two gateways sharing a key's database, each with its own
    holds, can together spend at most twice what the key had left, never more."""
    async with stack(tmp_path, redis_client) as one, stack(tmp_path, redis_client) as two:
        keys: KeyStore = one["keys"]  # both gateways' key stores read and write tmp_path/gw.sqlite3
        credit = 10 * ONE_REQUEST_USD
        secret, key = await keys.create("shared by two gateways", credit_usd=credit)
        served = 0
        for _ in range(40):
            first, second = await asyncio.gather(burst(one["url"], secret, 25), burst(two["url"], secret, 25))
            answers = first + second
            served += sum(status == 200 for status, _ in answers)
            if all(status == 402 for status, _ in answers):
                break
        for store in (one["keys"], two["keys"]):
            await store.flush()
        total = await spent(keys, key.id)
        print(f"\ntwo gateways: credit ${credit:.6f} for 10 requests; {served} served, ${total:.6f} spent")
        assert total <= 2 * credit + 1e-12
        assert served <= 20
