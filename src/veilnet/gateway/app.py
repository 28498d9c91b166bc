"""The gateway's OpenAI/OpenRouter-compatible ASGI app: thin routes over :mod:`veilnet.gateway.service`."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from veilnet.dashboard import DashboardSnapshot, dashboard_router
from veilnet.edge import error_body, install_error_handlers, parse_body
from veilnet.errors import Overloaded, PayloadTooLarge, UpstreamError, VeilnetError
from veilnet.gateway.routing import Candidate
from veilnet.gateway.service import (
    GatewayContext,
    authenticate_key,
    cost_usd,
    open_miner_request,
    requested_parameters,
    route,
)
from veilnet.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, RoutingFields
from veilnet.store.keys import ApiKey, UsageRow

__all__ = ["create_gateway_app"]

log = logging.getLogger(__name__)

KEEPALIVE_COMMENT = b": keep-alive\n\n"


class GatewayChatRequest(ChatCompletionRequest, RoutingFields):
    pass


class GatewayCompletionRequest(CompletionRequest, RoutingFields):
    pass


class GatewayEmbeddingRequest(EmbeddingRequest, RoutingFields):
    pass


def _seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds (HTTP dates and garbage are ignored)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def create_gateway_app(
    ctx: GatewayContext, *, max_body_bytes: int = 4 * 1024 * 1024, keepalive_seconds: float = 2.0
) -> FastAPI:
    """``keepalive_seconds``: a stream whose miner has not answered by then starts at once and carries an SSE
    comment (``: keep-alive``) every ``keepalive_seconds`` until the first chunk, as OpenRouter does."""
    app = FastAPI(title="veilnet gateway", docs_url=None, redoc_url=None)
    install_error_handlers(app)

    build_snapshot = ctx.stats.snapshot_source(ctx.directory, ctx.breaker, ctx.netuid, ctx.scores)

    class _Source:
        async def snapshot(self) -> DashboardSnapshot:
            return await build_snapshot()

    app.include_router(dashboard_router(_Source()))

    async def record(key: ApiKey, generation: str, model: str, candidate: Candidate | None, usage: dict[str, Any],
                     started: float, status: str, error: str | None = None,
                     request: dict[str, Any] | None = None, response: dict[str, Any] | None = None) -> None:
        uid = ctx.directory.metagraph.uid_of(candidate.hotkey) if candidate and ctx.directory.metagraph else None
        if candidate is not None:
            ctx.stats.observe(candidate.hotkey, uid, time.perf_counter() - started, status == "ok",
                              int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        row = UsageRow(
            generation_id=generation, key_id=key.id, model=model,
            miner=candidate.hotkey if candidate else None,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cost_usd=float(usage.get("cost") or 0.0), latency_ms=(time.perf_counter() - started) * 1000,
            status=status, error=error,
        )
        # shielded: a client that disconnects must not lose the ledger row
        await asyncio.shield(ctx.keys.record(row))
        if ctx.ratelimit is not None:
            await ctx.ratelimit.add_tokens(key.id, row.prompt_tokens + row.completion_tokens)
        if ctx.organic is not None and candidate is not None and request is not None:
            await ctx.organic.maybe_add(miner=candidate.hotkey, model=model, request=request, response=response,
                                        latency_ms=row.latency_ms, status=status)

    async def relay(request: Request, schema: Any, path: str) -> Response:
        started = time.perf_counter()
        key = await authenticate_key(ctx, request.headers.get("authorization"))
        body = await request.body()
        if len(body) > max_body_bytes:
            raise PayloadTooLarge(f"request body exceeds {max_body_bytes} bytes")
        parsed = parse_body(schema, body)
        generation = f"gen-{uuid.uuid4().hex}"
        payload = parsed.model_dump(exclude_none=True, exclude={"provider", "models"})
        # miners answer embeddings as floats; base64 (the openai SDK's default) is encoded here
        wants_base64 = payload.get("encoding_format") == "base64"
        if wants_base64:
            payload["encoding_format"] = "float"
        models = [parsed.model, *[m for m in (parsed.models or []) if m != parsed.model]]
        failures: list[VeilnetError] = []
        requested = requested_parameters(payload)

        async def attempts() -> AsyncGenerator[tuple[str, Candidate, aiohttp.ClientResponse], None]:
            """Each miner that answered 200, in routing order over the ``models`` fallback list."""
            for model in models:
                payload["model"] = model
                try:
                    candidates = await route(ctx, model, parsed.provider, embeddings=path == "/v1/embeddings",
                                             requested=requested)
                except VeilnetError as exc:
                    failures.append(exc)
                    continue
                for candidate in candidates:
                    try:
                        response = await open_miner_request(ctx, candidate, path, payload)
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        ctx.breaker.failure(candidate.hotkey)
                        failures.append(UpstreamError(f"miner {candidate.hotkey[:8]}… unreachable: {exc}"))
                        continue
                    if response.status != 200:
                        retry_after = _seconds(response.headers.get("Retry-After")) if response.status == 429 else None
                        ctx.breaker.failure(candidate.hotkey, retry_after=retry_after)
                        failures.append(UpstreamError(f"miner {candidate.hotkey[:8]}… answered HTTP {response.status}"))
                        response.release()
                        continue
                    ctx.breaker.success(candidate.hotkey)
                    yield model, candidate, response

        async def give_up() -> VeilnetError:
            error = failures[-1] if failures else UpstreamError("no miner could serve the request")
            await record(key, generation, parsed.model, None, {}, started, "error", error.message)
            if isinstance(error, UpstreamError):
                return Overloaded(f"no miner could serve the request: {error.message}", retry_after=2)
            return error

        headers = {"X-Generation-Id": generation}
        # provider.data_collection=deny: nothing of the request is sampled into the validator's organic stream
        deny = parsed.provider is not None and parsed.provider.data_collection == "deny"

        def sampled() -> dict[str, Any] | None:  # the request as sent to the miner that answered
            return None if deny else dict(payload)

        if getattr(parsed, "stream", False):
            found = attempts()
            first = asyncio.ensure_future(anext(found, None))
            done, _ = await asyncio.wait({first}, timeout=keepalive_seconds)
            if done:
                opened = first.result()
                await found.aclose()  # later candidates are not needed once one answered
                if opened is None:
                    raise await give_up()
                model, candidate, response = opened
                events = stream(response, key, generation, model, candidate, started, sampled())
            else:
                # the miner is slow to answer: start the stream and keep it alive with SSE comments
                events = stream_when_ready(first, found, give_up, key, generation, started, parsed.model, sampled)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={**headers, "Cache-Control": "no-cache"})

        async with contextlib.aclosing(attempts()) as tried:
            async for model, candidate, response in tried:
                try:
                    data = await response.json()
                except (aiohttp.ClientError, ValueError, TimeoutError) as exc:
                    ctx.breaker.failure(candidate.hotkey)
                    failures.append(UpstreamError(f"miner {candidate.hotkey[:8]}… sent an unreadable answer: {exc}"))
                    continue
                finally:
                    response.release()
                if not isinstance(data, dict):
                    ctx.breaker.failure(candidate.hotkey)
                    failures.append(UpstreamError(f"miner {candidate.hotkey[:8]}… answered with a non-object"))
                    continue
                usage = data.setdefault("usage", {})
                usage["cost"] = cost_usd(usage, candidate)
                if "choices" in data:
                    data["id"] = generation
                if wants_base64:
                    for item in data.get("data", []):
                        vector = np.asarray(item.get("embedding", []), dtype="<f4")
                        item["embedding"] = base64.b64encode(vector.tobytes()).decode()
                await record(key, generation, model, candidate, usage, started, "ok", request=sampled(),
                             response=data)
                return JSONResponse(data, headers=headers)
        raise await give_up()

    async def stream_when_ready(
        first: asyncio.Future[tuple[str, Candidate, aiohttp.ClientResponse] | None],
        found: AsyncGenerator[tuple[str, Candidate, aiohttp.ClientResponse], None],
        give_up: Callable[[], Awaitable[VeilnetError]],
        key: ApiKey, generation: str, started: float, model: str,
        sampled: Callable[[], dict[str, Any] | None],
    ) -> AsyncIterator[bytes]:
        try:
            while not first.done():
                yield KEEPALIVE_COMMENT
                await asyncio.wait({first}, timeout=keepalive_seconds)
            opened = first.result()
        except asyncio.CancelledError:
            first.cancel()
            raise
        await found.aclose()
        if opened is None:
            error = await give_up()
            error_chunk = {"id": generation, "object": "chat.completion.chunk", "model": model,
                           "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}], **error_body(error)}
            yield b"data: " + json.dumps(error_chunk).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
            return
        answered, candidate, response = opened
        async for line in stream(response, key, generation, answered, candidate, started, sampled()):
            yield line

    async def stream(response: aiohttp.ClientResponse, key: ApiKey, generation: str, model: str,
                     candidate: Candidate, started: float, request: dict[str, Any] | None) -> AsyncIterator[bytes]:
        usage: dict[str, Any] = {}
        status = "ok"
        try:
            async for line in response.content:
                if line.startswith(b": "):
                    continue  # the miner's signature comment is for validators, not apps
                if line.startswith(b"data: {") and b'"usage"' in line:
                    chunk = json.loads(line[6:])
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                        usage["cost"] = cost_usd(usage, candidate)
                        line = b"data: " + json.dumps(chunk).encode() + b"\n"
                if line.startswith(b"data: {") and b'"error"' in line:
                    chunk = json.loads(line[6:])
                    if "error" in chunk and "choices" not in chunk:
                        # OpenRouter's shape for an error after streaming began
                        status = "error"
                        chunk = {"id": generation, "object": "chat.completion.chunk", "model": model,
                                 "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}],
                                 "error": chunk["error"]}
                        line = b"data: " + json.dumps(chunk).encode() + b"\n"
                yield line
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = "error"
            error = error_body(UpstreamError(f"miner failed mid-stream: {exc}"))
            error_chunk = {"id": generation, "object": "chat.completion.chunk", "model": model,
                           "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}], **error}
            yield b"data: " + json.dumps(error_chunk).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
        except asyncio.CancelledError:
            status = "client_disconnected"
            raise
        finally:
            response.release()
            await record(key, generation, model, candidate, usage, started, status, request=request)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await relay(request, GatewayChatRequest, "/v1/chat/completions")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await relay(request, GatewayCompletionRequest, "/v1/completions")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        return await relay(request, GatewayEmbeddingRequest, "/v1/embeddings")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = []
        for model, offers in sorted(ctx.directory.models().items()):
            cheapest = min(offers, key=lambda o: o.price_input + o.price_output)
            data.append({
                "id": model, "object": "model", "owned_by": "veilnet",
                "context_length": max(o.context_length for o in offers),
                "pricing": {"prompt": cheapest.price_input / 1e6, "completion": cheapest.price_output / 1e6},
                "providers": len(offers),
            })
        return {"object": "list", "data": data}

    @app.get("/api/v1/key")
    async def key_info(request: Request) -> dict[str, Any]:
        key = await ctx.keys.authenticate((request.headers.get("authorization") or "")[7:].strip())
        return {"data": {"label": key.name, "limit": key.credit_usd, "usage": key.spent_usd,
                         "limit_remaining": key.remaining_usd}}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(ctx.stats.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "miners": len({o.hotkey for o in ctx.directory.offers}),
                "breakers": ctx.breaker.states()}
    return app
