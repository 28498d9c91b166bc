"""`veilnet gateway run` stopped with SIGTERM (as `docker stop` does) bills every request it answered: requests
in flight finish, then the last ledger rows are written before the process exits, and its bundled Redis goes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from bittensor_wallet import Keypair
from sqlalchemy import select
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.conftest import free_port, serve_asgi
from tests.miner.conftest import fake_upstream_app
from tests.store.test_bundled_redis import alive, children
from veilnet.chain.types import RAO_PER_TAO
from veilnet.devnet.chain import DevnetChain
from veilnet.devnet.chain.server import create_chain_app
from veilnet.miner import MetagraphHolder, MinerContext, create_miner_app
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.settings import EpistulaSettings, MinerSettings
from veilnet.store.gateway_tables import usage
from veilnet.store.keys import KeyStore
from veilnet.store.sql import open_database
from veilnet.wallet import create_wallet

pytestmark = pytest.mark.slow

OWNER_C, OWNER_H = Keypair.create_from_uri("//StopOwnerCold"), Keypair.create_from_uri("//StopOwnerHot")
MINER_C, MINER_H = Keypair.create_from_uri("//StopMinerCold"), Keypair.create_from_uri("//StopMinerHot")


class CountingApp:
    """An ASGI app counting the HTTP requests it received."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def subnet_with_a_miner(tmp_path: Path, redis: aioredis.Redis,
                              upstream_app: ASGIApp) -> AsyncIterator[tuple[str, int, Path]]:
    """A devnet chain served over HTTP, the gateway's wallet registered on it as a validator with a permit, and
    one real miner (relaying to a loopback upstream) serving its axon. Yields (chain URL, netuid, wallets)."""
    wallets = tmp_path / "wallets"
    gateway = create_wallet(wallets, "gateway", password=None).wallet.hotkey
    async with contextlib.AsyncExitStack() as stack:
        chain = await stack.enter_async_context(DevnetChain(None, block_time=0.05))
        chain_url = await stack.enter_async_context(serve_asgi(create_chain_app(chain), lifespan="off"))
        for cold in (OWNER_C, MINER_C):
            await chain.fund(cold.ss58_address, 1_000 * RAO_PER_TAO)
        netuid = await chain.register_subnet(OWNER_C, OWNER_H.ss58_address)
        await chain.sudo_set_hyperparameter(netuid, "tempo", 5)
        await chain.sudo_set_hyperparameter(netuid, "max_regs_per_block", 8)
        await chain.burned_register(netuid, OWNER_C, gateway.ss58_address)
        await chain.add_stake(netuid, OWNER_C, gateway.ss58_address, 100 * RAO_PER_TAO)
        await chain.burned_register(netuid, MINER_C, MINER_H.ss58_address)
        upstream = await stack.enter_async_context(serve_asgi(upstream_app))
        engine = await stack.enter_async_context(OpenAIUpstreamEngine(f"{upstream}/v1", ["upstream-slow"]))
        holder = MetagraphHolder(await chain.get_metagraph(netuid))
        refresher = asyncio.create_task(holder.refresh_forever(chain, netuid, 0.2))
        stack.callback(refresher.cancel)
        ctx = MinerContext(keypair=MINER_H, engine=engine, redis=redis, metagraph=holder,
                           settings=MinerSettings(capacity_per_window=100_000, max_concurrency=64, max_queue=256,
                                                  price_input_per_million=1.0, price_output_per_million=2.0),
                           epistula=EpistulaSettings())
        miner_url = await stack.enter_async_context(serve_asgi(create_miner_app(ctx), lifespan="off"))
        await chain.serve_axon(netuid, MINER_H, ip="127.0.0.1", port=int(miner_url.rsplit(":", 1)[1]))
        while not (await chain.get_metagraph(netuid)).by_hotkey(gateway.ss58_address).validator_permit:  # type: ignore[union-attr]
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the miner's metagraph shows the permit too
        yield chain_url, netuid, wallets


async def wait_serving(client: httpx.AsyncClient, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            pytest.fail(f"gateway exited: {log.read_text()[-3000:]}")
        try:
            if (await client.get("/v1/models")).json().get("data"):
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    pytest.fail(f"gateway did not come up: {log.read_text()[-3000:]}")


async def test_sigterm_bills_every_answered_request(tmp_path: Path, redis_client: aioredis.Redis, sql_url: str) -> None:
    async with open_database(sql_url) as engine:
        secret, key = await KeyStore(engine).create("app", credit_usd=100.0)
    port = free_port()
    upstream = CountingApp(fake_upstream_app())
    async with subnet_with_a_miner(tmp_path, redis_client, upstream) as (chain_url, netuid, wallets):
        env = {**os.environ, "VEILNET_WALLET__PATH": str(wallets), "VEILNET_WALLET__NAME": "gateway",
               "VEILNET_CHAIN__DEVNET_URL": chain_url, "VEILNET_CHAIN__NETUID": str(netuid),
               "VEILNET_DATABASE__URL": sql_url, "VEILNET_DATA_DIR": str(tmp_path / "data"),
               "VEILNET_GATEWAY__REQUESTS_PER_MINUTE": "100000"}  # Redis: the bundled one
        log = tmp_path / "gateway.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "veilnet", "gateway", "run", "--port", str(port)],  # noqa: ASYNC220
                                    env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                         headers={"Authorization": f"Bearer {secret}"},
                                         limits=httpx.Limits(max_connections=200)) as client:
                await wait_serving(client, proc, log)
                bundled_redis = children(proc.pid)
                assert len(bundled_redis) == 1

                async def ask() -> str | None:
                    body = {"model": "upstream-slow", "messages": [{"role": "user", "content": "hi"}]}
                    try:
                        response = await client.post("/v1/chat/completions", json=body)
                    except httpx.TransportError:
                        return None  # sent after the gateway stopped listening: not served, not billed
                    assert response.status_code == 200, response.text
                    return response.headers["X-Generation-Id"]

                answered = [g for g in await asyncio.gather(*(ask() for _ in range(60))) if g]
                last = [asyncio.create_task(ask()) for _ in range(30)]
                while upstream.requests < 90:  # all 30 in flight, each waiting half a second for its answer
                    await asyncio.sleep(0.01)
                proc.send_signal(signal.SIGTERM)
                answered += [g for g in await asyncio.gather(*last) if g]
            exit_code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert len(answered) == 90  # the 30 in flight at SIGTERM finished
    async with open_database(sql_url) as engine, engine.connect() as conn:
        billed = (await conn.execute(select(usage.c.generation_id).where(usage.c.key_id == key.id))).scalars().all()
    assert len(billed) == 90 and sorted(billed) == sorted(answered)
    text = log.read_text()
    assert exit_code == 0 and "Traceback" not in text, text[-3000:]
    assert not alive(bundled_redis[0]), "the bundled redis-server outlived the gateway"
