"""A gateway in front of a real SmolLM2 miner over loopback, for the app clients' tests."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from bittensor_wallet import Keypair

from tests.conftest import serve_asgi
from tests.miner.conftest import neuron, served_neuron
from veilnet.chain.types import Metagraph
from veilnet.gateway import AttemptOutcome, GatewayContext, create_gateway_app
from veilnet.gateway.directory import MinerDirectory
from veilnet.miner import MetagraphHolder, MinerContext, create_miner_app
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.relay import RelayClient
from veilnet.settings import EpistulaSettings, MinerSettings
from veilnet.store.keys import KeyStore
from veilnet.store.organic import OrganicStream, RequestCounter
from veilnet.store.ratelimit import KeyRateLimiter
from veilnet.store.sql import open_database

SMOL = "SmolLM2-135M-Instruct"
GATEWAY = Keypair.create_from_uri("//AppsGateway")
MINER = Keypair.create_from_uri("//AppsMiner")
CONTEXT = 2048


@dataclass
class AppStack:
    url: str  # the gateway's base URL, ending in /v1
    secret: str  # an API key
    ctx: GatewayContext
    outcomes: list[AttemptOutcome]


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppEngine]:
    """The real SmolLM2 with embeddings, loaded once per module."""
    engine = LlamaCppEngine([SMOL], cache_dir=Path(tmp_path_factory.mktemp("models")), concurrency=2,
                            context_length=CONTEXT, embedding_models=[SMOL])
    engine.load()
    yield engine


@contextlib.asynccontextmanager
async def app_stack(tmp_path: Path, redis: aioredis.Redis, engine: LlamaCppEngine) -> AsyncIterator[AppStack]:
    """The real miner (every parameter declared, the default) and the gateway, each on a loopback port."""
    outcomes: list[AttemptOutcome] = []
    async with contextlib.AsyncExitStack() as es:
        validators = (neuron(0, GATEWAY, 1000, True),)
        miner = MinerContext(keypair=MINER, engine=engine, redis=redis,
                             metagraph=MetagraphHolder(Metagraph(1, 0, validators)),
                             settings=MinerSettings(capacity_per_window=1000), epistula=EpistulaSettings())
        miner_url = await es.enter_async_context(serve_asgi(create_miner_app(miner), lifespan="off"))
        http = await es.enter_async_context(aiohttp.ClientSession())
        directory = MinerDirectory(http, GATEWAY.ss58_address)
        await directory.refresh(Metagraph(1, 0, (validators[0], served_neuron(1, MINER, miner_url))))
        sql = await es.enter_async_context(open_database(f"sqlite+aiosqlite:///{tmp_path / 'gw.sqlite3'}"))
        keys = await es.enter_async_context(KeyStore(sql))
        secret, _ = await keys.create("apps", credit_usd=10.0)

        async def scores() -> dict[str, float]:
            return {MINER.ss58_address: 1.0}

        ctx = GatewayContext(keypair=GATEWAY, keys=keys, directory=directory, http=http, scores=scores,
                             relay=await es.enter_async_context(RelayClient()), rng=random.Random(0),
                             request_timeout=300.0, first_byte_timeout=300.0, idle_timeout=120.0,
                             on_attempt=outcomes.append,
                             ratelimit=await es.enter_async_context(KeyRateLimiter(redis, requests_per_minute=0, tokens_per_minute=0)),
                             organic=await es.enter_async_context(OrganicStream(redis, 1, sample_rate=1.0)),
                             organic_counts=await es.enter_async_context(
                                 RequestCounter(redis, "organic", GATEWAY.ss58_address, 1)))
        url = await es.enter_async_context(serve_asgi(create_gateway_app(ctx), lifespan="off"))
        yield AppStack(f"{url}/v1", secret, ctx, outcomes)
