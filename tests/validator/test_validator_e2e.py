"""End to end on the devnet chain: three real miners, one cheating (Gemma answering as SmolLM2).

After the validator's weights go through two epochs, the honest miners hold the miner incentive on chain and
the cheater's weight is 0; a validator restarted mid-tempo carries its scores on and keeps setting weights.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
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
from veilnet.models.engine import ModelInfo
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.settings import EpistulaSettings, MinerSettings, ValidatorSettings
from veilnet.store.history import ScoreHistory
from veilnet.store.organic import RequestCounter
from veilnet.store.scores import ScoreStore
from veilnet.store.sql import open_database
from veilnet.store.validator_pipeline import ValidatorPipeline
from veilnet.validator import ValidatorContext, run_challenger, run_scorer, run_validator, run_weights

SMOL = "SmolLM2-135M-Instruct"
OWNER_C, OWNER_H = Keypair.create_from_uri("//E2EOwnerCold"), Keypair.create_from_uri("//E2EOwnerHot")
VAL_C, VAL_H = Keypair.create_from_uri("//E2EValCold"), Keypair.create_from_uri("//E2EValHot")
MINERS = {name: (Keypair.create_from_uri(f"//E2E{name}Cold"), Keypair.create_from_uri(f"//E2E{name}Hot"))
          for name in ("honest1", "honest2", "cheater")}

pytestmark = [pytest.mark.model, pytest.mark.slow]


class DisguisedEngine:
    """The cheater: answers with Gemma 3 270M while claiming to serve SmolLM2."""

    def __init__(self, inner: LlamaCppEngine) -> None:
        self.inner = inner

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(SMOL, 4096)]

    async def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = await self.inner.chat({**request, "model": "gemma-3-270m"})
        answer["model"] = SMOL
        return answer

    def chat_stream(self, request: dict[str, Any]) -> Any:
        return self.inner.chat_stream({**request, "model": "gemma-3-270m"})

    async def completion(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self.inner.completion({**request, "model": "gemma-3-270m"})

    def completion_stream(self, request: dict[str, Any]) -> Any:
        return self.inner.completion_stream({**request, "model": "gemma-3-270m"})

    async def embeddings(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self.inner.embeddings(request)


@contextlib.asynccontextmanager
async def subnet(tmp_path: Path, redis: aioredis.Redis, *,
                 cheater: Callable[[LlamaCppEngine], Any] | None = None,
                 cheater_hop: Callable[[ASGIApp], ASGIApp] | None = None,
                 ) -> AsyncIterator[tuple[DevnetChain, int, LlamaCppEngine]]:
    """The devnet subnet with honest1, honest2 and the cheater: Gemma answering as SmolLM2 unless ``cheater``
    makes its engine from the honest SmolLM2 one (``cheater_hop``: a wrapper around its miner app)."""
    cache = tmp_path / "models"
    honest = LlamaCppEngine([SMOL], cache_dir=cache, concurrency=2)
    gemma = LlamaCppEngine(["gemma-3-270m"], cache_dir=cache, concurrency=1) if cheater is None else None
    reference = LlamaCppEngine([SMOL], cache_dir=cache, concurrency=1, tokenizer=True)
    for engine in (honest, gemma, reference):
        if engine is not None:
            await asyncio.to_thread(engine.load)
    cheating = DisguisedEngine(gemma) if gemma is not None else cheater(honest)  # type: ignore[misc]
    async with DevnetChain(None, block_time=0.1) as chain, contextlib.AsyncExitStack() as stack:
        for cold in [OWNER_C, VAL_C, *(c for c, _ in MINERS.values())]:
            await chain.fund(cold.ss58_address, 10_000 * RAO_PER_TAO)
        netuid = await chain.register_subnet(OWNER_C, OWNER_H.ss58_address)
        for name, value in (("tempo", 30), ("weights_rate_limit", 1), ("max_regs_per_block", 10),
                            ("target_regs_per_interval", 10), ("activity_cutoff", 10_000)):
            await chain.sudo_set_hyperparameter(netuid, name, value)
        await chain.burned_register(netuid, VAL_C, VAL_H.ss58_address)
        await chain.add_stake(netuid, VAL_C, VAL_H.ss58_address, 1_000 * RAO_PER_TAO)
        for name, (cold, hot) in MINERS.items():
            await chain.burned_register(netuid, cold, hot.ss58_address)
            holder = MetagraphHolder(await chain.get_metagraph(netuid))
            refresher = asyncio.create_task(holder.refresh_forever(chain, netuid, 0.2))
            stack.callback(refresher.cancel)
            ctx = MinerContext(
                keypair=hot, engine=cheating if name == "cheater" else honest, redis=redis,
                metagraph=holder, settings=MinerSettings(capacity_per_window=100_000), epistula=EpistulaSettings(),
            )
            app = create_miner_app(ctx)
            if name == "cheater" and cheater_hop is not None:
                app = cheater_hop(app)
            url = await stack.enter_async_context(serve_asgi(app, lifespan="off"))
            await chain.serve_axon(netuid, hot, ip="127.0.0.1", port=int(url.rsplit(":", 1)[1]))
        yield chain, netuid, reference


async def _validator(chain: DevnetChain, netuid: int, reference: LlamaCppEngine, redis: aioredis.Redis,
                     http: aiohttp.ClientSession, seed: int, history: ScoreHistory | None = None,
                     separate_roles: bool = False) -> asyncio.Task[None]:
    """The validator: one process with every role, or (``separate_roles``) one context per role as separate
    processes would have, sharing only Redis (and the chain)."""

    def context(reference: LlamaCppEngine | None, history: ScoreHistory | None, rng: int) -> ValidatorContext:
        return ValidatorContext(
            history=history,
            keypair=VAL_H, chain=chain, netuid=netuid, reference=reference, http=http,
            scores=ScoreStore(redis, VAL_H.ss58_address, netuid),
            # small probe rounds: short answers, two requests a miner (the machine is small and shared)
            settings=ValidatorSettings(verify_rate=1.0, reference_models=[SMOL], challenges_per_window=600,
                                       probe_max_tokens=32, probe_concurrency=2),
            pipeline=ValidatorPipeline(redis, VAL_H.ss58_address, netuid, consumer=f"scorer-{rng}"),
            synthetic_counts=RequestCounter(redis, "synthetic", VAL_H.ss58_address, netuid), rng=random.Random(rng),
        )

    if not separate_roles:
        return asyncio.create_task(run_validator(context(reference, history, seed), round_interval=0.2))

    async def roles() -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(run_challenger(context(None, None, seed), round_interval=0.2))
            group.create_task(run_scorer(context(reference, None, seed + 100)))
            group.create_task(run_weights(context(None, history, seed + 200), round_interval=0.2))

    return asyncio.create_task(roles())


async def _wait_epochs(chain: DevnetChain, netuid: int, count: int) -> None:
    for _ in range(count):
        target = await chain.get_next_epoch_block(netuid)
        await chain.wait_for_block(target, timeout=60)


@pytest.mark.timeout(600)  # a loaded machine verifies slowly; the waits below have their own ceilings
async def test_honest_miners_earn_and_the_cheater_gets_nothing(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with subnet(tmp_path, redis_client) as (chain, netuid, reference), aiohttp.ClientSession() as http, \
            open_database(f"sqlite+aiosqlite:///{tmp_path / 'history.sqlite3'}") as engine:
        history = ScoreHistory(engine, VAL_H.ss58_address, netuid)
        validator = await _validator(chain, netuid, reference, redis_client, http, seed=1, history=history,
                                     separate_roles=True)
        try:
            val_uid = (await chain.get_metagraph(netuid)).uid_of(VAL_H.ss58_address)
            assert val_uid is not None
            for _ in range(1200):  # until the first weights are on chain (a ceiling for a loaded machine)
                if chain.state.subnets[netuid].neurons[val_uid].weights:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the validator never set weights")
            # Answers arrive slowly on a busy machine and the cheater passes most sampled challenges one by
            # one: wait until the scores say what they must (the cheater banned, both honest miners earning),
            # then until weights made from those scores are revealed on chain, then one epoch on them.
            store = ScoreStore(redis_client, VAL_H.ss58_address, netuid)
            hot = {name: h.ss58_address for name, (_, h) in MINERS.items()}
            for _ in range(3000):
                states, tempo = await store.load()
                cheater = states.get(hot["cheater"])
                if (cheater is not None and cheater.banned_until >= tempo
                        and all(states.get(hot[n]) is not None and states[hot[n]].ema > 0 for n in ("honest1", "honest2"))):
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"the validator never banned the cheater while scoring both honest miners: {states}")
            graph = await chain.get_metagraph(netuid)
            uids = {name: graph.uid_of(address) for name, address in hot.items()}
            for _ in range(3000):
                weights = dict(chain.state.subnets[netuid].neurons[val_uid].weights)
                if weights.get(uids["cheater"], 0) == 0 and weights.get(uids["honest1"], 0) > 0 \
                        and weights.get(uids["honest2"], 0) > 0:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("weights without the cheater never reached the chain")
            await _wait_epochs(chain, netuid, 1)
            graph = await chain.get_metagraph(netuid)
            incentive = {name: graph.by_hotkey(address).incentive for name, address in hot.items()}  # type: ignore[union-attr]
            assert incentive["cheater"] == 0
            assert incentive["honest1"] > 0 and incentive["honest2"] > 0
            assert incentive["honest1"] + incentive["honest2"] >= 0.95 * sum(incentive.values())

            points = await history.series()
            assert {p.miner for p in points} >= set(hot.values())
            # each row keeps the chain's view at its epoch (the dashboard plots it)
            assert all(p.uid == graph.uid_of(p.miner) and p.incentive is not None for p in points)

            # restart mid-tempo as one process with every role: the scores survive in Redis and weights
            # keep being set
            validator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await validator
            states, tempo = await ScoreStore(redis_client, VAL_H.ss58_address, netuid).load()
            assert tempo >= 1 and states[MINERS["honest1"][1].ss58_address].ema > 0
            assert states[MINERS["cheater"][1].ss58_address].ema == 0
            last_update = chain.state.subnets[netuid].neurons[val_uid].last_update
            validator = await _validator(chain, netuid, reference, redis_client, http, seed=2)
            for _ in range(600):
                if chain.state.subnets[netuid].neurons[val_uid].last_update > last_update:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the restarted validator set no weights")
            _, tempo_after = await ScoreStore(redis_client, VAL_H.ss58_address, netuid).load()
            assert tempo_after > tempo  # it continued counting from the saved tempo
        finally:
            validator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await validator


