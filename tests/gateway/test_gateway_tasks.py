"""The gateway serving tasks through the task interface, with the real engines behind real miners: OCR on
``/v1/chat/completions`` picked by its model (the openai SDK's vision request), page orientation on its own
route, chat still relayed beside them; streamed task requests, bad bodies and models nobody offers refused
with what is wrong."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import redis.asyncio as aioredis
from bittensor_wallet import Keypair
from tests.conftest import serve_asgi
from tests.miner.conftest import fake_upstream_app, neuron, served_neuron

from veilnet.chain.types import Metagraph
from veilnet.gateway import GatewayContext, create_gateway_app
from veilnet.gateway.directory import MinerDirectory
from veilnet.gateway.verification import OrganicVerifier
from veilnet.miner import MetagraphHolder, MinerContext, create_miner_app
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.relay import RelayClient
from veilnet.settings import EpistulaSettings, MinerSettings
from veilnet.store.keys import KeyStore
from veilnet.store.sql import open_database
from veilnet.tasks.interface import ChallengeTools, HandlerTools, ServedTask, TaskHandler, VerifyTools
from veilnet.tasks.ocr import OCR_MODEL, character_error_rate, generate_ocr_challenge
from veilnet.tasks.orientation import ORIENTATION_MODEL, generate_orientation_challenge
from veilnet.tasks.registry import task_named

GATEWAY = Keypair.create_from_uri("//TaskGateway")
CHAT_MINER, TASK_MINER = Keypair.create_from_uri("//TaskGwChat"), Keypair.create_from_uri("//TaskGwTasks")
CHEAT_MINER = Keypair.create_from_uri("//TaskGwCheat")


@contextlib.asynccontextmanager
async def task_stack(tmp_path: Path, redis: aioredis.Redis, *, verifier: OrganicVerifier | None = None,
                     cheat: Callable[[TaskHandler], TaskHandler] | None = None) -> AsyncIterator[dict[str, Any]]:
    """A gateway (passing organic answers to ``verifier`` when given), a chat miner and a miner serving OCR and
    orientation; with ``cheat``, a third miner serving OCR through ``cheat(the honest OCR handler)``."""
    async with contextlib.AsyncExitStack() as es:
        upstream = await es.enter_async_context(serve_asgi(fake_upstream_app()))
        chat_engine = await es.enter_async_context(OpenAIUpstreamEngine(f"{upstream}/v1", ["upstream-echo"]))
        tasks = {}
        for name in ("ocr", "orientation"):
            task = task_named(name)
            handler = task.handler(HandlerTools(data_dir=tmp_path, concurrency=1, queue=4, threads=1))
            assert handler is not None
            tasks[name] = ServedTask(task, await es.enter_async_context(handler))
        validators = (neuron(0, GATEWAY, 1000, True),)
        settings = MinerSettings(price_input_per_million=1_000.0)
        urls = {}
        miners = [(CHAT_MINER, chat_engine, {}), (TASK_MINER, LlamaCppEngine([], cache_dir=tmp_path), tasks)]
        if cheat is not None:
            miners.append((CHEAT_MINER, LlamaCppEngine([], cache_dir=tmp_path),
                           {"ocr": ServedTask(tasks["ocr"].task, cheat(tasks["ocr"].handler))}))
        for key, engine, served in miners:
            ctx = MinerContext(keypair=key, engine=engine, redis=redis,
                               metagraph=MetagraphHolder(Metagraph(1, 0, validators)), settings=settings,
                               epistula=EpistulaSettings(max_body_bytes=8 * 1024 * 1024), tasks=served)
            urls[key] = await es.enter_async_context(serve_asgi(create_miner_app(ctx), lifespan="off"))
        http = await es.enter_async_context(aiohttp.ClientSession())
        directory = MinerDirectory(http, GATEWAY.ss58_address)
        neurons = {key: served_neuron(uid, key, url) for uid, (key, url) in enumerate(urls.items(), start=1)}
        await directory.refresh(Metagraph(1, 0, (validators[0], *neurons.values())))
        database = await es.enter_async_context(open_database(f"sqlite+aiosqlite:///{tmp_path / 'gw.sqlite3'}"))
        keys = await es.enter_async_context(KeyStore(database))
        secret, key = await keys.create("tests", credit_usd=10.0)

        async def scores() -> dict[str, float]:
            return {}

        ctx = GatewayContext(keypair=GATEWAY, keys=keys, directory=directory, http=http, scores=scores,
                             relay=await es.enter_async_context(RelayClient()), rng=random.Random(0),
                             verifier=verifier)
        url = await es.enter_async_context(serve_asgi(create_gateway_app(ctx, max_body_bytes=8 * 1024 * 1024),
                                                      lifespan="off"))
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
        yield {"client": client, "url": url, "secret": secret, "http": http, "neurons": neurons}
        await client.close()


async def test_ocr_orientation_and_chat_through_one_gateway(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with task_stack(tmp_path, redis_client) as stack:
        client: openai.AsyncOpenAI = stack["client"]
        # chat still reaches its miner while a task shares its route
        chat = await client.chat.completions.create(model="upstream-echo",
                                                    messages=[{"role": "user", "content": "hello there"}])
        assert chat.choices[0].message.content

        # OCR: the openai SDK's vision request, to the OCR model's name
        drawn = generate_ocr_challenge(random.Random(4))
        request = drawn.request.model_dump(mode="json", exclude_unset=True)
        raw = await client.chat.completions.with_raw_response.create(model=OCR_MODEL, messages=request["messages"])
        answer = raw.parse()
        assert raw.headers["x-generation-id"].startswith("gen-")
        assert character_error_rate(drawn.truth, answer.choices[0].message.content or "") < 0.1
        assert answer.usage is not None and answer.usage.prompt_tokens == 1
        assert answer.usage.model_extra is not None and answer.usage.model_extra["cost"] == pytest.approx(0.001)

        with pytest.raises(openai.BadRequestError, match="not streamed"):
            await client.chat.completions.create(model=OCR_MODEL, messages=request["messages"], stream=True)
        two = [{"role": "user", "content": [*request["messages"][0]["content"],
                                            *[p for p in request["messages"][0]["content"] if p["type"] == "image_url"]]}]
        with pytest.raises(openai.BadRequestError, match="exactly one image_url"):
            await client.chat.completions.create(model=OCR_MODEL, messages=two)

        # orientation on its own route
        pages = generate_orientation_challenge(random.Random(6), rounds=(1, 1))
        auth = {"Authorization": f"Bearer {stack['secret']}"}
        http: aiohttp.ClientSession = stack["http"]
        body = pages.request.model_dump(mode="json")
        async with http.post(f"{stack['url']}/v1/orientation", json=body, headers=auth) as response:
            turned = await response.json()
            assert response.status == 200, turned
        assert [item["angle"] for item in turned["data"]] == list(pages.truth)
        assert turned["usage"]["prompt_tokens"] == 4


@pytest.mark.parametrize(("route", "body", "status", "words"), [
    ("/v1/orientation", {"model": ORIENTATION_MODEL, "images": []}, 400, "images"),
    ("/v1/orientation", {"model": "nobody-serves-this", "images": ["x"]}, 404, "nobody-serves-this"),
    ("/v1/ai-detection", {"model": "smollm2-token-statistics", "input": "a text"}, 404, "none yet"),
    ("/v1/orientation", "a JSON string", 400, "must be a JSON object"),
])
async def test_bad_task_requests_get_clear_errors(tmp_path: Path, redis_client: aioredis.Redis, route: str,
                                                  body: Any, status: int, words: str) -> None:
    async with task_stack(tmp_path, redis_client) as stack:
        auth = {"Authorization": f"Bearer {stack['secret']}"}
        async with stack["http"].post(f"{stack['url']}{route}", json=body, headers=auth) as response:
            error = (await response.json())["error"]
            assert response.status == status and words in error["message"], error


async def test_a_challenge_shaped_request_is_no_different_to_the_gateway(tmp_path: Path,
                                                                         redis_client: aioredis.Redis) -> None:
    """What the validator sends a miner is the task's own request document: apps can send it as it is."""
    task = task_named("orientation")
    challenge = await task.challenge(ChallengeTools(rng=random.Random(9), model=ORIENTATION_MODEL))
    async with task_stack(tmp_path, redis_client) as stack:
        async with stack["http"].post(f"{stack['url']}{task.gateway_route}",
                                      json=challenge.request.model_dump(mode="json", exclude_unset=True),
                                      headers={"Authorization": f"Bearer {stack['secret']}"}) as response:
            answer = await response.json()
        answer.pop("usage")  # the gateway's bill, beside the task's answer document
        verdict = await task.verify(challenge.request, challenge.truth, answer, VerifyTools())
        assert verdict.ok and verdict.quality == 1.0
