"""Gateway fixtures: a whole loopback stack (fake upstream, two real miners, the gateway, an openai client)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import redis.asyncio as aioredis
from bittensor_wallet import Keypair
from starlette.types import ASGIApp
from tests.conftest import serve_asgi
from tests.miner.conftest import fake_upstream_app, neuron, served_neuron

from veilnet.chain.types import Metagraph
from veilnet.gateway import AttemptOutcome, GatewayContext, create_gateway_app
from veilnet.gateway.directory import MinerDirectory
from veilnet.gateway.verification import OrganicVerifier
from veilnet.miner import MetagraphHolder, MinerContext, create_miner_app
from veilnet.models.engine import ModelEngine
from veilnet.models.tokenizer import Tokenizer
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.relay import RelayClient
from veilnet.settings import EpistulaSettings, MinerSettings
from veilnet.store.keys import KeyStore
from veilnet.store.organic import OrganicStream, RequestCounter
from veilnet.store.ratelimit import KeyRateLimiter
from veilnet.store.sql import open_database

GATEWAY = Keypair.create_from_uri("//GatewayValidator")
MINER_A, MINER_B = Keypair.create_from_uri("//GwMinerA"), Keypair.create_from_uri("//GwMinerB")
MINER_C = Keypair.create_from_uri("//GwMinerC")


@contextlib.asynccontextmanager
async def stack(tmp_path: Path, redis: aioredis.Redis, *, capacity_a: int = 1000, rpm: int = 0, tpm: int = 0,
                keepalive_seconds: float = 2.0, request_timeout: float = 120.0, first_byte_timeout: float = 30.0,
                idle_timeout: float = 30.0, third_miner: bool = False,
                miner_hops: dict[str, Callable[[ASGIApp], ASGIApp]] | None = None,
                miner_redis: aioredis.Redis | None = None, miner_epistula: EpistulaSettings | None = None,
                gateway_lifespan: str = "off", gauge_seconds: float = 5.0, engine: ModelEngine | None = None,
                verifier: OrganicVerifier | None = None, tokenizers: dict[str, Tokenizer] | None = None,
                miner_engines: dict[str, Any] | None = None,
                ) -> AsyncIterator[dict[str, Any]]:
    """Miners A and B (and C with ``third_miner``; B and C alike) in front of the fake upstream, the gateway
    and an openai client. ``miner_hops``: hotkey -> a wrapper around that miner's app (a hostile or broken
    hop); ``engine``: the miners' engine instead of one over the fake upstream (the caller opens and closes it);
    ``miner_redis``: the miners' own Redis (the gateway keeps ``redis``). Every attempt's outcome is
    collected in ``outcomes``. ``gateway_lifespan="on"`` runs the gateway app's lifespan (its gauges' refresh,
    every ``gauge_seconds``). ``verifier``: passes organic answers to a validator's scorers; ``tokenizers``: the
    gateway's own token count, per model; ``miner_engines``: hotkey -> that miner's engine instead of ``engine``."""
    miners = [MINER_A, MINER_B, *([MINER_C] if third_miner else [])]
    hops = miner_hops or {}
    outcomes: list[AttemptOutcome] = []
    async with contextlib.AsyncExitStack() as es:
        if engine is None:
            upstream = await es.enter_async_context(serve_asgi(fake_upstream_app()))
            engine = await es.enter_async_context(OpenAIUpstreamEngine(
                f"{upstream}/v1", ["upstream-echo", "upstream-dying", "upstream-slow"],
                embedding_models=["upstream-echo"]))
        validators = (neuron(0, GATEWAY, 1000, True),)
        urls = {}
        for key in miners:
            capacity = capacity_a if key is MINER_A else 1000
            # miner A relays to an upstream that may log and ignores logit_bias; miner B keeps nothing
            declared = ({"data_collection": "allow", "supported_parameters": ["max_tokens", "temperature"]}
                        if key is MINER_A else {})
            ctx = MinerContext(keypair=key, engine=(miner_engines or {}).get(key.ss58_address, engine),
                               redis=miner_redis or redis,
                               metagraph=MetagraphHolder(Metagraph(1, 0, validators)),
                               settings=MinerSettings(capacity_per_window=capacity, price_input_per_million=1.0,
                                                      price_output_per_million=2.0, **declared),
                               epistula=miner_epistula or EpistulaSettings())
            app = create_miner_app(ctx)
            hop = hops.get(key.ss58_address)
            urls[key.ss58_address] = await es.enter_async_context(
                serve_asgi(hop(app) if hop is not None else app, lifespan="off"))
        neurons = [validators[0]]
        for uid, key in enumerate(miners, start=1):
            neurons.append(served_neuron(uid, key, urls[key.ss58_address]))
        http = await es.enter_async_context(aiohttp.ClientSession())
        directory = MinerDirectory(http, GATEWAY.ss58_address)
        await directory.refresh(Metagraph(1, 0, tuple(neurons)))
        engine_sql = await es.enter_async_context(open_database(f"sqlite+aiosqlite:///{tmp_path / 'gw.sqlite3'}"))
        keys = await es.enter_async_context(KeyStore(engine_sql))
        secret, key = await keys.create("tests", credit_usd=10.0)

        async def scores() -> dict[str, float]:
            return {MINER_A.ss58_address: 0.9, MINER_B.ss58_address: 0.1, MINER_C.ss58_address: 0.1}

        ctx = GatewayContext(keypair=GATEWAY, keys=keys, directory=directory, http=http, scores=scores,
                             relay=await es.enter_async_context(RelayClient()),
                             rng=random.Random(0), request_timeout=request_timeout,
                             first_byte_timeout=first_byte_timeout, idle_timeout=idle_timeout,
                             on_attempt=outcomes.append, verifier=verifier, tokenizers=tokenizers or {},
                             ratelimit=await es.enter_async_context(
                                 KeyRateLimiter(redis, requests_per_minute=rpm, tokens_per_minute=tpm)),
                             organic=await es.enter_async_context(OrganicStream(redis, 1, sample_rate=1.0)),
                             organic_counts=await es.enter_async_context(
                                 RequestCounter(redis, "organic", GATEWAY.ss58_address, 1)))
        url = await es.enter_async_context(
            serve_asgi(create_gateway_app(ctx, keepalive_seconds=keepalive_seconds, gauge_seconds=gauge_seconds),
                       lifespan=gateway_lifespan))
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
        yield {"client": client, "keys": keys, "key": key, "ctx": ctx, "url": url, "secret": secret,
               "organic": ctx.organic, "outcomes": outcomes}
        await client.close()
