"""A subnet serving a task scaffolded by ``veilnet new-task`` and nothing else, in process on the devnet chain
(the in-process equivalent of ``veilnet devnet up --task text-stats``): two honest miners and one that
replays a cached answer. The validator challenges and verifies the task through the task interface; after
two epochs on its weights the honest miners hold the incentive and the cheater none. The gateway serves the
task to apps on its route, billed in the task's units."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from bittensor_wallet import Keypair
from pydantic import BaseModel
from tests.conftest import serve_asgi
from tests.scaffold.installed import installed

from veilnet.chain.types import RAO_PER_TAO
from veilnet.devnet.chain import DevnetChain
from veilnet.gateway import GatewayContext, create_gateway_app
from veilnet.gateway.directory import MinerDirectory
from veilnet.miner import MetagraphHolder, MinerContext, create_miner_app
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.relay import RelayClient
from veilnet.scaffold import TaskSpec, write_task
from veilnet.scaffold.spec import parse_fields
from veilnet.settings import EpistulaSettings, MinerSettings, ValidatorSettings
from veilnet.store.keys import KeyStore
from veilnet.store.scores import ScoreStore
from veilnet.store.sql import open_database
from veilnet.store.validator_pipeline import ValidatorPipeline
from veilnet.tasks.interface import HandlerTools, ServedTask, TaskHandler
from veilnet.tasks.registry import task_named
from veilnet.validator import ValidatorContext, run_validator
from veilnet.validator.asking import challenge_client

NAME = "text-stats"
SPEC = TaskSpec(name=NAME, description="Statistics of a text", verification="known_truth",
                inputs=parse_fields("text:string, limit:integer"), outputs=parse_fields("label:string, score:number"))
OWNER_C, OWNER_H = Keypair.create_from_uri("//TaskOwnerCold"), Keypair.create_from_uri("//TaskOwnerHot")
VAL_C, VAL_H = Keypair.create_from_uri("//TaskValCold"), Keypair.create_from_uri("//TaskValHot")
MINERS = {name: (Keypair.create_from_uri(f"//Task{name}Cold"), Keypair.create_from_uri(f"//Task{name}Hot"))
          for name in ("honest1", "honest2", "cacher")}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


class CachingHandler:
    """The cheater: runs the task's engine once and answers every request with that answer."""

    def __init__(self, inner: TaskHandler) -> None:
        self.inner = inner
        self.cached: BaseModel | None = None

    async def __aenter__(self) -> CachingHandler:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.inner.__aexit__(*exc_info)

    def models(self) -> list[str]:
        return self.inner.models()

    async def serve(self, request: Any) -> BaseModel:
        if self.cached is None:
            self.cached = await self.inner.serve(request)
        return self.cached


@contextlib.asynccontextmanager
async def task_subnet(tmp_path: Path, redis: aioredis.Redis) -> AsyncIterator[tuple[DevnetChain, int]]:
    task = task_named(NAME)
    async with DevnetChain(None, block_time=0.1) as chain, contextlib.AsyncExitStack() as stack:
        for cold in [OWNER_C, VAL_C, *(c for c, _ in MINERS.values())]:
            await chain.fund(cold.ss58_address, 10_000 * RAO_PER_TAO)
        netuid = await chain.register_subnet(OWNER_C, OWNER_H.ss58_address)
        for name, value in (("tempo", 20), ("weights_rate_limit", 1), ("max_regs_per_block", 10),
                            ("target_regs_per_interval", 10), ("activity_cutoff", 10_000)):
            await chain.sudo_set_hyperparameter(netuid, name, value)
        await chain.burned_register(netuid, VAL_C, VAL_H.ss58_address)
        await chain.add_stake(netuid, VAL_C, VAL_H.ss58_address, 1_000 * RAO_PER_TAO)
        for name, (cold, hot) in MINERS.items():
            await chain.burned_register(netuid, cold, hot.ss58_address)
            holder = MetagraphHolder(await chain.get_metagraph(netuid))
            refresher = asyncio.create_task(holder.refresh_forever(chain, netuid, 0.2))
            stack.callback(refresher.cancel)
            handler = task.handler(HandlerTools(data_dir=tmp_path))
            assert handler is not None
            served = await stack.enter_async_context(CachingHandler(handler) if name == "cacher" else handler)
            ctx = MinerContext(
                keypair=hot, engine=LlamaCppEngine([], cache_dir=tmp_path), redis=redis, metagraph=holder,
                settings=MinerSettings(capacity_per_window=100_000, price_input_per_million=2_000.0),
                epistula=EpistulaSettings(), tasks={NAME: ServedTask(task, served)},
            )
            url = await stack.enter_async_context(serve_asgi(create_miner_app(ctx), lifespan="off"))
            await chain.serve_axon(netuid, hot, ip="127.0.0.1", port=int(url.rsplit(":", 1)[1]))
        yield chain, netuid


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path, chain: DevnetChain, netuid: int,
                  http: aiohttp.ClientSession) -> AsyncIterator[tuple[str, str]]:
    async with contextlib.AsyncExitStack() as stack:
        directory = MinerDirectory(http, VAL_H.ss58_address)
        await directory.refresh(await chain.get_metagraph(netuid))
        database = await stack.enter_async_context(open_database(f"sqlite+aiosqlite:///{tmp_path / 'gw.sqlite3'}"))
        keys = await stack.enter_async_context(KeyStore(database))
        secret, _ = await keys.create("tests", credit_usd=10.0)

        async def scores() -> dict[str, float]:
            return {}

        ctx = GatewayContext(keypair=VAL_H, keys=keys, directory=directory, http=http, scores=scores,
                             relay=await stack.enter_async_context(RelayClient()), netuid=netuid)
        url = await stack.enter_async_context(serve_asgi(create_gateway_app(ctx), lifespan="off"))
        yield url, secret


async def test_a_scaffolded_task_is_challenged_verified_and_paid(tmp_path: Path,
                                                                 redis_client: aioredis.Redis) -> None:
    package = tmp_path / "package"
    write_task(SPEC, package)
    with installed(SPEC, package, tmp_path / "site"):
        async with task_subnet(tmp_path, redis_client) as (chain, netuid), aiohttp.ClientSession() as http, \
                RelayClient() as relay:
            ctx = ValidatorContext(
                miners=challenge_client(VAL_H, relay),
                keypair=VAL_H, chain=chain, netuid=netuid, reference=None, http=http,
                scores=ScoreStore(redis_client, VAL_H.ss58_address, netuid),
                settings=ValidatorSettings(verify_rate=1.0, reference_models=[], challenges_per_window=600,
                                           tasks=[NAME]),
                pipeline=ValidatorPipeline(redis_client, VAL_H.ss58_address, netuid), rng=random.Random(7),
            )
            validator = asyncio.create_task(run_validator(ctx, round_interval=0.2))
            try:
                val_uid = (await chain.get_metagraph(netuid)).uid_of(VAL_H.ss58_address)
                store = ScoreStore(redis_client, VAL_H.ss58_address, netuid)
                for _ in range(1200):  # two tempos folded, weights on chain
                    if (await store.load())[1] >= 2 and chain.state.subnets[netuid].neurons[val_uid].weights:
                        break
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail("the validator never folded two tempos and set weights")
                for _ in range(2):
                    await chain.wait_for_block(await chain.get_next_epoch_block(netuid), timeout=60)
                states, _ = await store.load()
                graph = await chain.get_metagraph(netuid)
                await _served_by_the_gateway(tmp_path, chain, netuid, http)  # the validator holds a permit now
            finally:
                validator.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await validator
    hot = {name: keys[1].ss58_address for name, keys in MINERS.items()}
    assert states[hot["cacher"]].ema == 0 and states[hot["cacher"]].banned_until > 0
    assert states[hot["honest1"]].ema > 0 and states[hot["honest2"]].ema > 0
    incentive = {name: graph.by_hotkey(key).incentive for name, key in hot.items()}  # type: ignore[union-attr]
    assert incentive["cacher"] == 0
    assert incentive["honest1"] > 0 and incentive["honest2"] > 0


async def _served_by_the_gateway(tmp_path: Path, chain: DevnetChain, netuid: int, http: aiohttp.ClientSession) -> None:
    """An app asks the gateway for the task on its route: a right answer, billed one unit; bad requests get
    clear errors, and a chat request on a subnet without chat miners is told no miner serves its model."""
    from veilnet_task_text_stats.documents import TextStatsRequest  # type: ignore[import-not-found]
    from veilnet_task_text_stats.engine import solve  # type: ignore[import-not-found]

    async with gateway(tmp_path, chain, netuid, http) as (url, secret):
        auth = {"Authorization": f"Bearer {secret}"}
        body = {"model": f"{NAME}-v1", "text": "the cat sat", "limit": 3}
        async with http.post(f"{url}/v1/tasks/{NAME}", json=body, headers=auth) as response:
            answer = await response.json()
            assert response.status == 200, answer
            assert response.headers["X-Generation-Id"].startswith("gen-")
        expected = solve(TextStatsRequest.model_validate(body))
        assert {k: answer[k] for k in expected} == expected
        assert answer["usage"]["prompt_tokens"] == 1 and answer["usage"]["cost"] == pytest.approx(0.002)
        for bad, status, words in (({**body, "limit": "3"}, 400, "limit"), ({**body, "model": "nope"}, 404, "nope"),
                                   ({"text": "x"}, 400, "model")):
            async with http.post(f"{url}/v1/tasks/{NAME}", json=bad, headers=auth) as response:
                error = (await response.json())["error"]
                assert response.status == status and words in error["message"], error
        async with http.post(f"{url}/v1/tasks/{NAME}", json=body) as response:
            assert response.status == 401
        chat = {"model": "SmolLM2-135M-Instruct", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(f"{url}/v1/chat/completions", json=chat, headers=auth) as response:
            assert response.status == 404 and (await response.json())["error"]["code"] == "model_not_found"
