"""The gateway's OpenAI/OpenRouter-compatible ASGI app: routes only, over :class:`~veilnet.gateway.service.Gateway`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from veilnet.dashboard import DashboardSnapshot, dashboard_router
from veilnet.edge import EdgeApp, document_json_bodies, install_error_handlers, parse_body, read_body
from veilnet.gateway.confidential import attested_miners, fetch_miner_evidence
from veilnet.gateway.service import Gateway, GatewayContext
from veilnet.protocol import paths
from veilnet.protocol.confidential import AttestationRelayRequest
from veilnet.protocol.gateway import ConfidentialMinerList, GatewayHealth, KeyInfo, ModelCard, ModelCardList
from veilnet.protocol.headers import ENCRYPTION_HEADER
from veilnet.protocol.openai import GatewayChatRequest, GatewayCompletionRequest, GatewayEmbeddingRequest

__all__ = ["add_task_routes", "create_gateway_app"]

_OWN_ROUTES = frozenset({paths.CHAT_COMPLETIONS, paths.COMPLETIONS, paths.EMBEDDINGS})


def add_task_routes(app: EdgeApp, gateway: Gateway) -> dict[str, Callable[[Request], Awaitable[Response]]]:
    """A POST route for each task's gateway route that is not one of the OpenAI routes above (those share)."""
    added: dict[str, Callable[[Request], Awaitable[Response]]] = {}
    def serving(route: str) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            started = time.perf_counter()
            return await gateway.tasks.serve(request, route, await read_body(request, gateway.max_body_bytes),
                                             started=started)
        return serve

    for route in sorted(gateway.tasks.routes() - _OWN_ROUTES):
        added[route] = app.post(route)(serving(route))
    return added


def create_gateway_app(
    ctx: GatewayContext, *, max_body_bytes: int = 4 * 1024 * 1024, keepalive_seconds: float = 2.0,
    gauge_seconds: float = 5.0,
) -> EdgeApp:
    """``keepalive_seconds``: a stream whose miner has not answered by then starts at once and carries an SSE
    comment (``: keep-alive``) every ``keepalive_seconds`` until the first chunk, as OpenRouter does.
    While the app runs (its lifespan), the miners' score and breaker gauges of /metrics are refreshed every
    ``gauge_seconds``."""
    gateway = Gateway(ctx, max_body_bytes=max_body_bytes, keepalive_seconds=keepalive_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gauges = asyncio.create_task(gateway.stats.refresh_gauges_forever(
            gateway.directory, gateway.breaker, gateway.scores, gauge_seconds))
        try:
            yield
        finally:
            gauges.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gauges

    app = EdgeApp(title="veilnet gateway", docs_url=None, redoc_url=None, lifespan=lifespan)
    install_error_handlers(app)
    build_snapshot = gateway.stats.snapshot_source(gateway.directory, gateway.breaker, gateway.netuid, gateway.scores,
                                                   gateway.history, gateway.score_states, gateway.units)

    class _Source:
        async def snapshot(self) -> DashboardSnapshot:
            return await build_snapshot()

    app.include_router(dashboard_router(_Source()))

    @app.post(paths.CHAT_COMPLETIONS)
    async def chat(request: Request) -> Response:
        if ENCRYPTION_HEADER in request.headers:  # sealed by the client: relayed as ciphertext
            return await gateway.passthrough.serve(request, paths.CHAT_COMPLETIONS)
        if gateway.tasks.shares(paths.CHAT_COMPLETIONS):  # a task (OCR) is offered on this route: its model says
            return await serve_shared(request, paths.CHAT_COMPLETIONS, GatewayChatRequest)
        return await gateway.relay(request, GatewayChatRequest)

    async def serve_shared(request: Request, route: str, schema: type[GatewayChatRequest]) -> Response:
        started = time.perf_counter()
        body = await read_body(request, gateway.max_body_bytes)
        task = gateway.tasks.peek(route, body)
        if task is not None:
            return await gateway.tasks.serve(request, route, body, task=task, started=started)
        return await gateway.relay(request, schema, body=body)

    @app.post(paths.COMPLETIONS)
    async def completions(request: Request) -> Response:
        if ENCRYPTION_HEADER in request.headers:
            return await gateway.passthrough.serve(request, paths.COMPLETIONS)
        return await gateway.relay(request, GatewayCompletionRequest)

    @app.post(paths.EMBEDDINGS)
    async def embeddings(request: Request) -> Response:
        return await gateway.relay(request, GatewayEmbeddingRequest)

    @app.get(paths.CONFIDENTIAL_MINERS)
    async def confidential_miners(request: Request, model: str | None = None) -> ConfidentialMinerList:
        """Miners this gateway has verified attestation for (clients verify again, themselves)."""
        await gateway.access.admit(request.headers.get("authorization"))
        return attested_miners(gateway.attestations, gateway.directory, await gateway.scores(), model)

    @app.post(paths.CONFIDENTIAL_ATTESTATION)
    async def confidential_attestation(request: Request) -> Response:
        """Relay a client's challenge to one miner and return its evidence untouched for the client to verify."""
        await gateway.access.admit(request.headers.get("authorization"))
        challenge: AttestationRelayRequest = parse_body(AttestationRelayRequest,
                                                       await read_body(request, gateway.max_body_bytes))
        evidence = await fetch_miner_evidence(ctx, challenge.miner, bytes.fromhex(challenge.nonce))
        return Response(evidence.model_dump_json().encode(), media_type="application/json")

    @app.get(paths.MODELS)
    async def models() -> ModelCardList:
        return gateway.models()

    @app.get(paths.MODEL)
    async def model(model_id: str) -> ModelCard:
        return gateway.model(model_id)

    @app.get(paths.KEY)
    async def key_info(request: Request) -> KeyInfo:
        """OpenRouter's key endpoint; a key out of credit or budget can still ask."""
        return gateway.access.info(await gateway.access.bearer_key(request.headers.get("authorization")))

    @app.get(paths.METRICS)
    async def metrics() -> Response:
        return Response(generate_latest(gateway.stats.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(paths.HEALTH)
    async def health() -> GatewayHealth:
        return GatewayHealth(miners=len({o.hotkey for o in gateway.directory.offers}), breakers=gateway.breaker.states())

    fast_tasks = add_task_routes(app, gateway)

    # the request paths skip FastAPI's layers (EdgeApp); the routes above still define the OpenAPI document
    app.fast_routes.update({paths.CHAT_COMPLETIONS: chat, paths.COMPLETIONS: completions, paths.EMBEDDINGS: embeddings,
                            **fast_tasks})
    document_json_bodies(app, {
        paths.CHAT_COMPLETIONS: GatewayChatRequest, paths.COMPLETIONS: GatewayCompletionRequest,
        paths.EMBEDDINGS: GatewayEmbeddingRequest, paths.CONFIDENTIAL_ATTESTATION: AttestationRelayRequest,
    }, bearer=frozenset({paths.CHAT_COMPLETIONS, paths.COMPLETIONS, paths.EMBEDDINGS, paths.KEY,
                         paths.CONFIDENTIAL_MINERS, paths.CONFIDENTIAL_ATTESTATION}))
    return app
