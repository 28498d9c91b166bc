"""The miner's ASGI app: thin routes over :mod:`veilnet.miner.service`."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from pydantic_core import to_json

from veilnet.confidential.challenge import ATTESTATION_PATH
from veilnet.confidential.enclave import Enclave
from veilnet.edge import EdgeApp, error_body, install_error_handlers, parse_body, read_body
from veilnet.errors import InvalidRequest, NotFound, UpstreamError, VeilnetError
from veilnet.miner.sealed import serve_sealed
from veilnet.miner.service import MinerContext, admit, authenticate
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.protocol.confidential import ENCRYPTION_SCHEME, AttestationChallenge, SealedRequest
from veilnet.protocol.epistula import StreamSigner, sign_response
from veilnet.protocol.headers import ENCRYPTION_HEADER, TRAFFIC_HEADER
from veilnet.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    encode_embeddings_base64,
)
from veilnet.streaming import EventStreamResponse

__all__ = ["create_miner_app"]

_DONE = b"data: [DONE]"

log = logging.getLogger(__name__)


def create_miner_app(ctx: MinerContext) -> EdgeApp:
    """The miner app over ``ctx`` (whose resources its owner opens and closes)."""
    app = EdgeApp(title="veilnet miner", docs_url=None, redoc_url=None)
    install_error_handlers(app)
    served = {info.name: info for info in ctx.engine.models()}
    limit = ctx.epistula.max_body_bytes

    async def prepare(request: Request, schema: type[BaseModel]) -> tuple[Any, str, str]:
        body = await read_body(request, limit)
        claims = await authenticate(ctx, request.headers, body, check_replay=False)  # admit checks it
        parsed = parse_body(schema, body)
        if parsed.model not in served:
            raise NotFound(f"model {parsed.model!r} is not served here; served: {', '.join(served)}")
        traffic = request.headers.get(TRAFFIC_HEADER, "organic")
        if traffic not in ("organic", "synthetic"):
            raise InvalidRequest(f"{TRAFFIC_HEADER} must be organic or synthetic", param=TRAFFIC_HEADER)
        await admit(ctx, claims.signed_by, synthetic=traffic == "synthetic", request_uuid=claims.uuid)
        return parsed, claims.uuid, claims.signed_by

    def enclave_for(request: Request) -> Enclave | None:
        """The enclave when ``request`` is sealed, None when it is plain."""
        scheme = request.headers.get(ENCRYPTION_HEADER)
        if scheme is None:
            return None
        if scheme != ENCRYPTION_SCHEME:
            raise InvalidRequest(f"{ENCRYPTION_HEADER} must be {ENCRYPTION_SCHEME}", param=ENCRYPTION_HEADER)
        if ctx.enclave is None:
            raise NotFound("this miner serves no sealed requests (no enclave)", code="confidential_unavailable")
        return ctx.enclave

    def signed_json(data: dict[str, Any], request_uuid: str, caller: str) -> Response:
        body = to_json(data)
        return Response(body, media_type="application/json", headers=sign_response(ctx.keypair, body, request_uuid, caller))

    def sse(chunks: AsyncIterator[dict[str, Any]], request_uuid: str, caller: str) -> EventStreamResponse:
        signer = StreamSigner(ctx.keypair, request_uuid, caller)

        async def events() -> AsyncIterator[bytes]:
            try:
                async for chunk in chunks:
                    yield signer.feed(b"data: " + to_json(chunk) + b"\n\n")
            except VeilnetError as exc:  # after the first byte, errors travel in-band
                yield signer.feed(b"data: " + json.dumps(error_body(exc)).encode() + b"\n\n")
            except Exception:
                log.exception("stream failed")
                yield signer.feed(b'data: {"error":{"message":"internal error","type":"server_error","code":"internal_error"}}\n\n')
            yield signer.feed(b"data: [DONE]\n\n") + signer.final_line()  # one write: the end and its signature

        return EventStreamResponse(
            events(), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "Epistula-Signed-By": ctx.keypair.ss58_address},
        )

    def sse_raw(first: bytes, rest: AsyncIterator[bytes], request_uuid: str, caller: str) -> EventStreamResponse:
        """Pass an upstream's SSE bytes through as they arrive; add an error event if it ends early. The read
        that completes the stream (``data: [DONE]``) goes out with the signature line in one write, and
        nothing after [DONE] is relayed."""
        signer = StreamSigner(ctx.keypair, request_uuid, caller)

        async def events() -> AsyncIterator[bytes]:
            tail = b""
            problem: VeilnetError | None = None
            try:
                data: bytes | None = first
                while data is not None:
                    tail = (tail + data)[-64:]
                    if _DONE in tail:
                        yield signer.feed(data) + signer.final_line()
                        return
                    if data:
                        yield signer.feed(data)
                    data = await anext(rest, None)
            except VeilnetError as exc:
                problem = exc
            finally:
                close = getattr(rest, "aclose", None)
                if close is not None:
                    await close()  # the upstream response and its admission slot go back now
            problem = problem or UpstreamError("upstream stream ended before [DONE]")
            yield (signer.feed(b"data: " + json.dumps(error_body(problem)).encode() + b"\n\n")
                   + signer.feed(b"data: [DONE]\n\n") + signer.final_line())

        return EventStreamResponse(
            events(), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "Epistula-Signed-By": ctx.keypair.ss58_address},
        )

    async def run(
        request: Request,
        schema: type[BaseModel],
        once: Callable[[dict[str, Any]], Any],
        stream: Callable[[dict[str, Any]], AsyncIterator[dict[str, Any]]],
        raw_path: str,
    ) -> Response:
        enclave = enclave_for(request)
        if enclave is not None:
            sealed, request_uuid, caller = await prepare(request, SealedRequest)
            if sealed.endpoint != raw_path.strip("/").replace("/", "."):
                raise InvalidRequest(f"sealed request is for {sealed.endpoint}, sent to {raw_path}", param="endpoint")
            return await serve_sealed(ctx, enclave, sealed, schema, once, stream, request_uuid, caller)
        parsed, request_uuid, caller = await prepare(request, schema)
        payload = parsed.model_dump(exclude_none=True)
        engine = ctx.engine
        if getattr(parsed, "stream", False) and isinstance(engine, OpenAIUpstreamEngine) and engine.can_relay_raw(parsed.model):
            # The bare-relay fast path: no per-chunk decode/encode, bytes forwarded as they arrive.
            raw = engine.relay_raw(raw_path, payload)
            head = await anext(raw, b"")  # errors before the first byte are plain HTTP errors
            return sse_raw(head, raw, request_uuid, caller)
        if getattr(parsed, "stream", False):
            chunks = stream(payload)
            first = await anext(chunks, None)  # errors before the first token are plain HTTP errors

            async def replay() -> AsyncIterator[dict[str, Any]]:
                if first is not None:
                    yield first
                async for chunk in chunks:
                    yield chunk

            return sse(replay(), request_uuid, caller)
        result = await once(payload)
        result.setdefault("usage", {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        return signed_json(result, request_uuid, caller)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await run(request, ChatCompletionRequest, ctx.engine.chat, ctx.engine.chat_stream, "/chat/completions")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await run(request, CompletionRequest, ctx.engine.completion, ctx.engine.completion_stream, "/completions")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        parsed, request_uuid, caller = await prepare(request, EmbeddingRequest)
        if not served[parsed.model].embeddings:
            raise NotFound(f"model {parsed.model!r} has no embeddings on this miner")
        payload = parsed.model_dump(exclude_none=True)
        wants_base64 = payload.pop("encoding_format", "float") == "base64"  # engines answer floats
        result = await ctx.engine.embeddings(payload)
        if wants_base64:
            try:
                encode_embeddings_base64(result)
            except ValueError as exc:  # the upstream answered something that is not vectors
                raise UpstreamError(f"the embeddings backend answered unusable vectors: {exc}") from exc
        return signed_json(result, request_uuid, caller)

    @app.post(ATTESTATION_PATH)
    async def attestation(request: Request) -> Response:
        body = await read_body(request, limit)
        claims = await authenticate(ctx, request.headers, body)
        challenge = parse_body(AttestationChallenge, body)
        if ctx.enclave is None:
            raise NotFound("this miner has no enclave to attest", code="confidential_unavailable")
        evidence = await ctx.enclave.attest(bytes.fromhex(challenge.nonce))
        return signed_json(evidence.model_dump(mode="json"), claims.uuid, claims.signed_by)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": info.name, "object": "model", "owned_by": ctx.keypair.ss58_address,
                 "context_length": info.context_length}
                for info in served.values()
            ],
        }

    @app.get("/capacity")
    async def capacity() -> dict[str, Any]:
        s = ctx.settings
        return {
            "hotkey": ctx.keypair.ss58_address,
            "window_seconds": s.window_seconds,
            "synthetic_share": s.synthetic_share,
            "data_collection": s.data_collection,
            "confidential": None if ctx.enclave is None else {
                "platform": ctx.enclave.provider.platform, "keyset_digest": ctx.enclave.keyset_digest.hex(),
            },
            "models": [
                {
                    "id": info.name,
                    "capacity_per_window": s.capacity_per_window,
                    "price_input_per_million": s.price_input_per_million,
                    "price_output_per_million": s.price_output_per_million,
                    "context_length": info.context_length,
                    "embeddings": info.embeddings,
                    "supported_parameters": list(s.supported_parameters),
                }
                for info in served.values()
            ],
        }

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "hotkey": ctx.keypair.ss58_address, "models": list(served)})

    app.fast_routes.update({"/v1/chat/completions": chat_completions, "/v1/completions": completions,
                            "/v1/embeddings": embeddings})
    return app
