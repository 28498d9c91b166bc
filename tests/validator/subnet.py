"""A real subnet for end-to-end tests: the devnet chain, real miners serving over loopback HTTP (each a real
miner app, possibly behind a hop that changes what it answers), and validator contexts wired the way
``veilnet validator run`` wires them (a RelayClient and the gateway's MinerClient for challenges, request
counts in Redis). Shared by the end-to-end tests of tests/validator."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from bittensor_wallet import Keypair
from starlette.types import ASGIApp
from tests.conftest import serve_asgi

from veilnet.chain.types import RAO_PER_TAO
from veilnet.devnet.chain import DevnetChain
from veilnet.miner import MetagraphHolder, MinerContext, create_miner_app
from veilnet.models.engine import ModelEngine
from veilnet.relay import RelayClient
from veilnet.scoring import ScoreParams
from veilnet.settings import EpistulaSettings, MinerSettings, ValidatorSettings
from veilnet.store.history import ScoreHistory
from veilnet.store.organic import OrganicStream, RequestCounter
from veilnet.store.scores import ScoreStore
from veilnet.store.validator_pipeline import ValidatorPipeline
from veilnet.validator import ValidatorContext
from veilnet.validator.asking import challenge_client

__all__ = ["MinerSpec", "Subnet", "devnet_subnet", "wait_epochs"]

SMOL = "SmolLM2-135M-Instruct"


@dataclass
class MinerSpec:
    """One miner hotkey: its engine (several hotkeys may share one: a Sybil operator), its settings and an
    optional hop around its app (a miner that answers some paths its own way)."""

    engine: ModelEngine | Any
    settings: MinerSettings = field(default_factory=lambda: MinerSettings(capacity_per_window=100_000))
    hop: Callable[[ASGIApp], ASGIApp] | None = None


@dataclass
class Subnet:
    chain: DevnetChain
    netuid: int
    redis: aioredis.Redis
    http: aiohttp.ClientSession
    relay: RelayClient
    validator: Keypair
    miners: dict[str, Keypair]  # name -> hotkey
    urls: dict[str, str]  # name -> the miner's base URL

    def hotkey(self, name: str) -> str:
        return self.miners[name].ss58_address

    def context(self, *, reference: Any = None, settings: ValidatorSettings | None = None, seed: int = 1,
                history: ScoreHistory | None = None, consumer: str | None = None,
                params: ScoreParams | None = None) -> ValidatorContext:
        """A validator context as one process of ``veilnet validator run`` has it (its synthetic requests
        counted in Redis, challenges through the gateway's MinerClient; ``params``: the scoring's, default
        ones if not given)."""
        me = self.validator.ss58_address
        counts = RequestCounter(self.redis, "synthetic", me, self.netuid)
        return ValidatorContext(
            keypair=self.validator, chain=self.chain, netuid=self.netuid, reference=reference, http=self.http,
            scores=ScoreStore(self.redis, me, self.netuid), history=history,
            # small probe rounds: short answers, two workers a miner, a short window, about once a minute (the
            # machine is small and shared: a round whose window a slow first token outlasts measures nothing);
            # the default 12 challenges a miner a minute, every answer re-scored: few enough that a loaded 2-core
            # machine verifies them as they come, so the probe answers queued behind them are recorded in time
            settings=settings or ValidatorSettings(verify_rate=1.0, reference_models=[SMOL],
                                                   challenges_per_window=12, probe_max_tokens=32,
                                                   probe_concurrency=2, probe_window=4.0, probe_interval=60.0),
            pipeline=ValidatorPipeline(self.redis, me, self.netuid, consumer=consumer or f"scorer-{seed}"),
            synthetic_counts=counts, organic_counts=RequestCounter(self.redis, "organic", me, self.netuid),
            organic=OrganicStream(self.redis, self.netuid, sample_rate=1.0),
            miners=challenge_client(self.validator, self.relay, counts), rng=random.Random(seed),
            params=params or ScoreParams(),
        )

    async def seed_organic(self, model: str = SMOL, count: int = 24, rng: random.Random | None = None) -> None:
        """Organic samples in the stream, as the gateway writes them, that challenges take their parameters
        from: short answers (24-64 tokens), streamed or not, greedy or sampled, some asking for logprobs."""
        rng = rng or random.Random(0)
        async with OrganicStream(self.redis, self.netuid, sample_rate=1.0) as stream:
            for i in range(count):
                request: dict[str, Any] = {"model": model, "max_tokens": rng.randint(24, 64),
                                           "messages": [{"role": "user", "content": f"Say something about {i}."}]}
                if rng.random() < 0.5:
                    request["stream"] = True
                if rng.random() < 0.7:
                    request["temperature"] = rng.choice([0.0, 0.7, 1.0])
                if rng.random() < 0.3:
                    request.update(logprobs=True, top_logprobs=2)
                stream.add(miner="", model=model, request=request, response=None, latency_ms=0.0, status="ok")

    def weights(self) -> dict[str, int]:
        """The validator's weights on chain now, by miner hotkey."""
        state = self.chain.state.subnets[self.netuid]
        by_uid = {uid: n.hotkey for uid, n in enumerate(state.neurons)}
        mine = next(n for n in state.neurons if n.hotkey == self.validator.ss58_address)
        return {by_uid[uid]: value for uid, value in mine.weights if uid in by_uid}

    async def until_weights(self, check: Callable[[dict[str, int]], bool], seconds: float = 60.0) -> None:
        """Wait until the validator's weights on chain pass ``check``."""
        for _ in range(int(seconds / 0.1)):
            if check(self.weights()):
                return
            await asyncio.sleep(0.1)
        pytest.fail(f"the validator's weights never got there: {self.weights()}")

    async def incentive(self) -> dict[str, float]:
        """Each miner's incentive on chain now, by name."""
        graph = await self.chain.get_metagraph(self.netuid)
        return {name: graph.by_hotkey(key.ss58_address).incentive  # type: ignore[union-attr]
                for name, key in self.miners.items()}


@contextlib.asynccontextmanager
async def devnet_subnet(redis: aioredis.Redis, miners: dict[str, MinerSpec], *, prefix: str, tempo: int = 30,
                        block_time: float = 0.1, wait_for_permit: bool = True) -> AsyncIterator[Subnet]:
    """The devnet chain with a subnet (``tempo`` blocks of ``block_time`` s), a validator with stake and the
    given miners registered and serving; keys are derived from ``prefix`` and the names. With
    ``wait_for_permit`` it returns once the validator's permit is on chain (the next epoch)."""
    owner_c, owner_h = Keypair.create_from_uri(f"//{prefix}OwnerCold"), Keypair.create_from_uri(f"//{prefix}OwnerHot")
    val_c, val_h = Keypair.create_from_uri(f"//{prefix}ValCold"), Keypair.create_from_uri(f"//{prefix}ValHot")
    keys = {name: (Keypair.create_from_uri(f"//{prefix}{name}Cold"), Keypair.create_from_uri(f"//{prefix}{name}Hot"))
            for name in miners}
    async with DevnetChain(None, block_time=block_time) as chain, contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        relay = await stack.enter_async_context(RelayClient())
        for cold in [owner_c, val_c, *(c for c, _ in keys.values())]:
            await chain.fund(cold.ss58_address, 10_000 * RAO_PER_TAO)
        netuid = await chain.register_subnet(owner_c, owner_h.ss58_address)
        for name, value in (("tempo", tempo), ("weights_rate_limit", 1), ("max_regs_per_block", 20),
                            ("target_regs_per_interval", 20), ("activity_cutoff", 10_000)):
            await chain.sudo_set_hyperparameter(netuid, name, value)
        await chain.burned_register(netuid, val_c, val_h.ss58_address)
        await chain.add_stake(netuid, val_c, val_h.ss58_address, 1_000 * RAO_PER_TAO)
        urls = {}
        for name, spec in miners.items():
            cold, hot = keys[name]
            await chain.burned_register(netuid, cold, hot.ss58_address)
            holder = MetagraphHolder(await chain.get_metagraph(netuid))
            refresher = asyncio.create_task(holder.refresh_forever(chain, netuid, 0.2))
            stack.callback(refresher.cancel)
            ctx = MinerContext(keypair=hot, engine=spec.engine, redis=redis, metagraph=holder,
                               settings=spec.settings, epistula=EpistulaSettings())
            app = create_miner_app(ctx)
            urls[name] = await stack.enter_async_context(
                serve_asgi(spec.hop(app) if spec.hop is not None else app, lifespan="off"))
            await chain.serve_axon(netuid, hot, ip="127.0.0.1", port=int(urls[name].rsplit(":", 1)[1]))
        subnet = Subnet(chain, netuid, redis, http, relay, val_h, {n: hot for n, (_, hot) in keys.items()}, urls)
        if wait_for_permit:
            for _ in range(600):
                graph = await chain.get_metagraph(netuid)
                if graph.by_hotkey(val_h.ss58_address).validator_permit:  # type: ignore[union-attr]
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the validator never got its permit")
            await asyncio.sleep(0.5)  # the miners' metagraphs refresh every 0.2 s
        yield subnet


async def wait_epochs(chain: DevnetChain, netuid: int, count: int) -> None:
    for _ in range(count):
        target = await chain.get_next_epoch_block(netuid)
        await chain.wait_for_block(target, timeout=60)
