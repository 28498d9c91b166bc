"""Miner fixtures: real keys, a metagraph, real Redis, a real loopback upstream and the real SmolLM2."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from bittensor_wallet import Keypair
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tests.conftest import serve_asgi
from veilnet.chain.types import AxonInfo, Metagraph, NeuronInfo
from veilnet.miner import MetagraphHolder, MinerContext, create_miner_app
from veilnet.models.engine import ModelEngine
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.protocol.epistula import sign_request
from veilnet.settings import EpistulaSettings, MinerSettings
from veilnet.tasks.interface import ServedTask

MINER = Keypair.create_from_uri("//MinerUnderTest")
VALIDATOR = Keypair.create_from_uri("//Alice")
SMALL_VALIDATOR = Keypair.create_from_uri("//Dave")
NO_PERMIT = Keypair.create_from_uri("//Bob")
STRANGER = Keypair.create_from_uri("//Eve")


def neuron(uid: int, key: Keypair, stake: int, permit: bool) -> NeuronInfo:
    return NeuronInfo(
        uid=uid, hotkey=key.ss58_address, coldkey=key.ss58_address, stake=stake, axon=None,
        validator_permit=permit, incentive=0, dividends=0, emission=0, consensus=0, validator_trust=0,
        last_update=0, block_at_registration=0, active=True,
    )


def served_neuron(uid: int, key: Keypair, url: str) -> NeuronInfo:
    """A miner neuron whose axon is the loopback server at ``url`` (``http://127.0.0.1:PORT``)."""
    host, port = url.removeprefix("http://").split(":")
    return dataclasses.replace(neuron(uid, key, 0, False), axon=AxonInfo(ip=host, port=int(port)))


METAGRAPH = Metagraph(
    netuid=1,
    block=10,
    neurons=(
        neuron(0, MINER, 0, False),
        neuron(1, VALIDATOR, 3_000, True),
        neuron(2, SMALL_VALIDATOR, 1_000, True),
        neuron(3, NO_PERMIT, 10, False),
    ),
)


CONTEXT_WORDS = 8192


def fake_upstream_app() -> FastAPI:
    """A small OpenAI-compatible upstream: model 'echo' answers; model 'dying' breaks mid-stream; model 'slow'
    answers like 'echo' after half a second. A stream for ``"user": "garbled-usage"`` ends with a usage line
    that is not JSON; one for ``"user": "slow-stream"`` waits half a second after each chunk. A chat prompt of
    more than ``CONTEXT_WORDS`` words is refused as longer than the model's context (400), as real servers do.
    A chat for ``"user": "max-usage"`` reports a million prompt and completion tokens (a miner billing all it can)."""
    app = FastAPI()

    def completion(model: str, text: str) -> dict[str, Any]:
        return {
            "id": "cmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        words = sum(len(m["content"].split()) for m in body["messages"] if isinstance(m.get("content"), str))
        if words > CONTEXT_WORDS:
            return JSONResponse({"error": {
                "message": f"This model's maximum context length is {CONTEXT_WORDS} tokens; your prompt has {words}",
                "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}},
                status_code=400)
        if body["model"] == "upstream-slow":
            await asyncio.sleep(0.5)
        most = {"prompt_tokens": 10**6, "completion_tokens": 10**6, "total_tokens": 2 * 10**6}
        inflated = body.get("user") == "max-usage"
        if not body.get("stream"):
            answer = completion(body["model"], "hello there")
            return JSONResponse({**answer, "usage": most} if inflated else answer)

        async def events() -> AsyncIterator[bytes]:
            for word in ["hel", "lo", " there"]:
                chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                         "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
                await asyncio.sleep(0.5 if body.get("user") == "slow-stream" else 0)
                if body["model"] == "upstream-dying":
                    raise RuntimeError("upstream died")  # uvicorn drops the connection mid-stream
            usage = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": body["model"], "choices": [],
                     "usage": most if inflated else {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}
            if body.get("user") == "garbled-usage":
                yield b'data: {"usage": {"prompt_tokens": 3,\n\n'
            else:
                yield b"data: " + json.dumps(usage).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        answer = completion(body["model"], "hello there")
        answer.update(object="text_completion", choices=[{"index": 0, "text": "hello there", "finish_reason": "stop"}])
        if not body.get("stream"):
            return JSONResponse(answer)

        async def events() -> AsyncIterator[bytes]:
            for word in ["hel", "lo", " there"]:
                chunk = {"id": "c", "object": "text_completion", "created": 1, "model": body["model"],
                         "choices": [{"index": 0, "text": word, "finish_reason": None}]}
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        body = await request.json()
        vector: Any = "not numbers" if body["input"] == "garbage" else [0.1, 0.2, 0.3]  # a broken backend
        return {"object": "list", "model": body["model"], "data": [{"object": "embedding", "index": 0,
                "embedding": vector}], "usage": {"prompt_tokens": 1, "total_tokens": 1}}

    return app


@pytest.fixture
async def upstream_url() -> AsyncIterator[str]:
    async with serve_asgi(fake_upstream_app()) as url:
        yield f"{url}/v1"


@pytest.fixture
def make_miner(redis_client: aioredis.Redis) -> Callable[..., Any]:
    """Builds a miner app over an engine and returns an httpx client bound to it (in-process ASGI)."""
    import contextlib

    @contextlib.asynccontextmanager
    async def factory(
        engine: ModelEngine, *, max_body_bytes: int = 64 * 1024, tasks: dict[str, ServedTask] | None = None,
        **settings: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        ctx = MinerContext(
            keypair=MINER,
            engine=engine,
            redis=redis_client,
            metagraph=MetagraphHolder(METAGRAPH),
            settings=MinerSettings(**settings),
            epistula=EpistulaSettings(max_body_bytes=max_body_bytes),
            tasks=tasks or {},
        )
        transport = httpx.ASGITransport(app=create_miner_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://miner") as client:
            yield client

    return factory


@pytest.fixture
async def upstream_engine(upstream_url: str) -> AsyncIterator[OpenAIUpstreamEngine]:
    async with OpenAIUpstreamEngine(
        upstream_url, ["upstream-echo", "upstream-dying"], embedding_models=["upstream-echo"]
    ) as engine:
        yield engine


def signed(body: dict[str, Any] | bytes, key: Keypair = VALIDATOR, **extra: str) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = sign_request(key, raw, MINER.ss58_address)
    headers["Content-Type"] = "application/json"
    headers.update(extra)
    return raw, headers


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")
