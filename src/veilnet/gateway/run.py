"""Running the gateway process: chain, Redis (validator scores), SQL (keys, ledger), HTTP to miners."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import uvicorn

from veilnet.chain.connect import chain_from_settings
from veilnet.confidential.config import verifier_from_settings
from veilnet.confidential.sessions import AttestedSessions
from veilnet.gateway.app import create_gateway_app
from veilnet.gateway.confidential import attest_forever
from veilnet.gateway.directory import MinerDirectory
from veilnet.gateway.service import GatewayContext
from veilnet.settings import Settings
from veilnet.store.keys import KeyStore
from veilnet.store.organic import OrganicStream
from veilnet.store.ratelimit import KeyRateLimiter
from veilnet.store.redis import open_redis
from veilnet.store.scores import ScoreStore
from veilnet.store.sql import open_database
from veilnet.wallet import load_wallet

__all__ = ["run_gateway"]


async def run_gateway(settings: Settings) -> None:
    wallet = load_wallet(settings.wallet)
    netuid = settings.chain.netuid
    async with contextlib.AsyncExitStack() as stack:
        chain = await stack.enter_async_context(chain_from_settings(settings.chain))
        redis = await stack.enter_async_context(open_redis(settings.redis))
        engine = await stack.enter_async_context(open_database(settings.database_url()))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        directory = MinerDirectory(http, wallet.hotkey.ss58_address)
        await directory.refresh(await chain.get_metagraph(netuid))
        refresher = asyncio.create_task(directory.refresh_forever(chain, netuid))
        stack.callback(refresher.cancel)
        score_store = ScoreStore(redis, wallet.hotkey.ss58_address, netuid)

        async def scores() -> dict[str, float]:
            states, _ = await score_store.load()
            return {hotkey: state.ema for hotkey, state in states.items()}

        ctx = GatewayContext(
            keypair=wallet.hotkey, keys=KeyStore(engine), directory=directory, http=http, scores=scores,
            netuid=netuid,
            ratelimit=KeyRateLimiter(redis, requests_per_minute=settings.gateway.requests_per_minute,
                                     tokens_per_minute=settings.gateway.tokens_per_minute),
            organic=OrganicStream(redis, netuid, sample_rate=settings.gateway.organic_sample_rate),
            attestations=AttestedSessions(verifier_from_settings(settings.confidential)),
        )
        attester = asyncio.create_task(attest_forever(ctx))
        stack.callback(attester.cancel)
        config = uvicorn.Config(create_gateway_app(ctx, max_body_bytes=settings.gateway.max_body_bytes),
                                host=settings.gateway.host, port=settings.gateway.port, log_level="warning",
                                lifespan="off")
        await uvicorn.Server(config).serve()
