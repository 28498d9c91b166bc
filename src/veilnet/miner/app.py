"""The miner's ASGI app: thin routes over :mod:`veilnet.miner.service` (checks), :mod:`veilnet.miner.stream`
(the signed SSE body of every stream) and :mod:`veilnet.miner.sealed` (sealed requests)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel
from pydantic_core import to_json

from veilnet.confidential.enclave import Enclave
from veilnet.edge import EdgeApp, install_error_handlers, parse_body, read_body
from veilnet.errors import InvalidRequest, NotFound, UpstreamError
from veilnet.miner.sealed import serve_sealed
from veilnet.miner.service import MinerContext, admit, authenticate
from veilnet.miner.stream import RAW, signed_stream, until_done
from veilnet.miner.tasks import add_task_routes, task_models, task_offers
from veilnet.models.engine import ModelInfo
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.protocol import paths
from veilnet.protocol.capacity import CapacityDocument, ConfidentialOffer, MinerHealth, ModelOffer
from veilnet.protocol.confidential import ENCRYPTION_SCHEME, AttestationChallenge, SealedRequest
from veilnet.protocol.epistula import StreamSigner, sign_response
from veilnet.protocol.headers import ENCRYPTION_HEADER
from veilnet.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    MinerRequest,
    Model,
    ModelList,
    encode_embeddings_base64,
    input_modalities,
)
from veilnet.streaming import EventStreamResponse

__all__ = ["check_input_modalities", "create_miner_app"]

log = logging.getLogger(__name__)

Once = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Stream = Callable[[dict[str, Any]], AsyncIterator[dict[str, Any]]]


def check_input_modalities(request: MinerRequest, info: ModelInfo) -> None:
    """InvalidRequest when ``request`` holds input (images, audio) its model does not take."""
    missing = input_modalities(request) - info.input_modalities
    if missing:
        raise InvalidRequest(f"model {info.name!r} does not take {' or '.join(sorted(missing))} input; it takes "
                             f"{', '.join(sorted(info.input_modalities))}", param="messages",
                             code="unsupported_input")


async def _json_payloads(first: dict[str, Any] | None, rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """An engine's chunks as JSON payloads (the first one already taken, to fail before the first byte)."""
    try:
        if first is not None:
            yield to_json(first)
        async for chunk in rest:
            yield to_json(chunk)
    finally:
        close = getattr(rest, "aclose", None)
        if close is not None:
            await close()


class _Miner:
    """What the routes call: a request checked (signature, replay and quota, model, inputs), then run."""

    def __init__(self, ctx: MinerContext) -> None:
        self.ctx = ctx
        self.served = {info.name: info for info in ctx.engine.models()}
        self.limit = ctx.epistula.max_body_bytes
        self.stream_headers = {"Cache-Control": "no-cache", "Epistula-Signed-By": ctx.keypair.ss58_address}

    async def prepare(self, request: Request, schema: type[BaseModel]) -> tuple[Any, str, str]:
        body = await read_body(request, self.limit)
        claims = await authenticate(self.ctx, request.headers, body, check_replay=False)  # admit checks it
        parsed = parse_body(schema, body)
        if parsed.model not in self.served:
            raise NotFound(f"model {parsed.model!r} is not served here; served: {', '.join(self.served)}")
        await admit(self.ctx, claims.signed_by, request_uuid=claims.uuid)
        return parsed, claims.uuid, claims.signed_by

    def enclave_for(self, request: Request) -> Enclave | None:
        """The enclave when ``request`` is sealed, None when it is plain."""
        scheme = request.headers.get(ENCRYPTION_HEADER)
        if scheme is None:
            return None
        if scheme != ENCRYPTION_SCHEME:
            raise InvalidRequest(f"{ENCRYPTION_HEADER} must be {ENCRYPTION_SCHEME}", param=ENCRYPTION_HEADER)
        if self.ctx.enclave is None:
            raise NotFound("this miner serves no sealed requests (no enclave)", code="confidential_unavailable")
        return self.ctx.enclave

    def signed_json(self, body: bytes, request_uuid: str, caller: str) -> Response:
        return Response(body, media_type="application/json",
                        headers=sign_response(self.ctx.keypair, body, request_uuid, caller))

    def check(self, parsed: ChatCompletionRequest | CompletionRequest) -> None:
        check_input_modalities(parsed, self.served[parsed.model])

    async def run(self, request: Request, schema: type[ChatCompletionRequest | CompletionRequest], once: Once,
                  stream: Stream) -> Response:
        enclave = self.enclave_for(request)
        if enclave is not None:
            sealed, request_uuid, caller = await self.prepare(request, SealedRequest)
            if paths.ENDPOINT_PATHS[sealed.endpoint] != schema.PATH:
                raise InvalidRequest(f"sealed request is for {sealed.endpoint}, sent to {schema.PATH}",
                                     param="endpoint")
            return await serve_sealed(self.ctx, enclave, sealed, schema, once, stream, request_uuid, caller,
                                      check=self.check)
        parsed, request_uuid, caller = await self.prepare(request, schema)
        self.check(parsed)
        payload = parsed.model_dump(exclude_none=True)
        signer = StreamSigner(self.ctx.keypair, request_uuid, caller)
        engine = self.ctx.engine
        if parsed.stream and isinstance(engine, OpenAIUpstreamEngine) and engine.can_relay_raw(parsed.model):
            # the bare-relay fast path: no per-chunk decode/encode, bytes forwarded as they arrive
            raw = engine.relay_raw(paths.under_v1(schema.PATH), payload)
            head = await anext(raw, b"")  # errors before the first byte are plain HTTP errors
            return EventStreamResponse(signed_stream(until_done(head, raw), signer, RAW), headers=self.stream_headers)
        if parsed.stream:
            chunks = stream(payload)
            first = await anext(chunks, None)  # errors before the first token are plain HTTP errors
            return EventStreamResponse(signed_stream(_json_payloads(first, chunks), signer),
                                       headers=self.stream_headers)
        result = await once(payload)
        result.setdefault("usage", {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        return self.signed_json(to_json(result), request_uuid, caller)

    async def embeddings(self, request: Request) -> Response:
        parsed, request_uuid, caller = await self.prepare(request, EmbeddingRequest)
        if not self.served[parsed.model].embeddings:
            raise NotFound(f"model {parsed.model!r} has no embeddings on this miner")
        payload = parsed.model_dump(exclude_none=True)
        wants_base64 = payload.pop("encoding_format", "float") == "base64"  # engines answer floats
        result = await self.ctx.engine.embeddings(payload)
        if wants_base64:
            try:
                encode_embeddings_base64(result)
            except ValueError as exc:  # the upstream answered something that is not vectors
                raise UpstreamError(f"the embeddings backend answered unusable vectors: {exc}") from exc
        return self.signed_json(to_json(result), request_uuid, caller)

    async def attestation(self, request: Request) -> Response:
        body = await read_body(request, self.limit)
        claims = await authenticate(self.ctx, request.headers, body)
        challenge = parse_body(AttestationChallenge, body)
        if self.ctx.enclave is None:
            raise NotFound("this miner has no enclave to attest", code="confidential_unavailable")
        evidence = await self.ctx.enclave.attest(bytes.fromhex(challenge.nonce))
        return self.signed_json(evidence.model_dump_json().encode(), claims.uuid, claims.signed_by)

    def capacity(self) -> CapacityDocument:
        ctx, s = self.ctx, self.ctx.settings
        return CapacityDocument(
            hotkey=ctx.keypair.ss58_address, window_seconds=s.window_seconds,
            data_collection=s.data_collection, max_body_bytes=self.limit,
            confidential=None if ctx.enclave is None else ConfidentialOffer(
                platform=ctx.enclave.provider.platform, keyset_digest=ctx.enclave.keyset_digest.hex()),
            models=[ModelOffer(id=info.name, capacity_per_window=s.capacity_per_window,
                               price_input_per_million=s.price_input_per_million,
                               price_output_per_million=s.price_output_per_million,
                               context_length=info.context_length, embeddings=info.embeddings,
                               concurrency=s.max_concurrency,
                               embedding_concurrency=_fewer(info.embedding_concurrency, s.max_concurrency),
                               supported_parameters=list(s.supported_parameters),
                               input_modalities=sorted(info.input_modalities))  # type: ignore[arg-type]
                    for info in self.served.values()] + task_offers(ctx),
        )


def _fewer(lane: int | None, concurrency: int) -> int | None:
    """An engine's embeddings lane as advertised: only when it runs fewer than ``concurrency`` at once."""
    return lane if lane is not None and lane < concurrency else None


def create_miner_app(ctx: MinerContext) -> EdgeApp:
    """The miner app over ``ctx`` (whose resources its owner opens and closes)."""
    app = EdgeApp(title="veilnet miner", docs_url=None, redoc_url=None)
    install_error_handlers(app)
    miner = _Miner(ctx)

    @app.post(paths.CHAT_COMPLETIONS)
    async def chat_completions(request: Request) -> Response:
        return await miner.run(request, ChatCompletionRequest, ctx.engine.chat, ctx.engine.chat_stream)

    @app.post(paths.COMPLETIONS)
    async def completions(request: Request) -> Response:
        return await miner.run(request, CompletionRequest, ctx.engine.completion, ctx.engine.completion_stream)

    @app.post(paths.EMBEDDINGS)
    async def embeddings(request: Request) -> Response:
        return await miner.embeddings(request)

    @app.post(paths.ATTESTATION)
    async def attestation(request: Request) -> Response:
        return await miner.attestation(request)

    @app.get(paths.MODELS)
    async def models() -> ModelList:
        return ModelList(data=[Model(id=info.name, owned_by=ctx.keypair.ss58_address,
                                     context_length=info.context_length) for info in miner.served.values()])

    @app.get(paths.CAPACITY)
    async def capacity() -> CapacityDocument:
        return miner.capacity()

    @app.get(paths.HEALTH)
    async def health() -> MinerHealth:
        return MinerHealth(hotkey=ctx.keypair.ss58_address, models=[*miner.served, *task_models(ctx)])

    app.fast_routes.update({paths.CHAT_COMPLETIONS: chat_completions, paths.COMPLETIONS: completions,
                            paths.EMBEDDINGS: embeddings})
    add_task_routes(app, ctx)
    return app
