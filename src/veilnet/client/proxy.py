"""``veilnet confidential-proxy``: a local OpenAI-compatible endpoint that makes every request confidential.

Point any OpenAI client at it (``base_url=http://127.0.0.1:8787/v1``, your gateway API key as usual): it
verifies attestation itself, seals each request to the attested enclave, and decrypts and checks the answer,
so the client gets the guarantees of :class:`~veilnet.client.confidential.ConfidentialClient` unchanged.
Run it on the machine you trust; it is the only place plaintext exists outside the enclave.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from veilnet.client.confidential import ConfidentialClient
from veilnet.edge import error_body, install_error_handlers, parse_body
from veilnet.errors import VeilnetError
from veilnet.protocol.headers import SIMULATED_HEADER
from veilnet.protocol.openai import ChatCompletionRequest, CompletionRequest
from veilnet.streaming import EventStreamResponse

__all__ = ["create_proxy_app"]

log = logging.getLogger(__name__)


def create_proxy_app(client: ConfidentialClient) -> FastAPI:
    """The proxy over an opened ``client`` (its owner closes it)."""
    app = FastAPI(title="veilnet confidential proxy", docs_url=None, redoc_url=None)
    install_error_handlers(app)

    def caller_key(request: Request) -> str | None:
        auth = request.headers.get("authorization") or ""
        return auth[7:].strip() if auth.lower().startswith("bearer ") and auth[7:].strip() else None

    async def run(request: Request, schema: type[BaseModel],
                  endpoint: Literal["chat.completions", "completions"]) -> Response:
        parsed = parse_body(schema, await request.body())
        payload = parsed.model_dump(exclude_none=True)
        result = await client.open(endpoint, payload, api_key=caller_key(request))
        if isinstance(result, dict):
            simulated = bool(result.get("veilnet", {}).get("simulated"))
            return JSONResponse(result, headers={SIMULATED_HEADER: "true" if simulated else "false"})
        lines = result
        first = await anext(lines, None)  # attestation and sealing errors are plain HTTP errors

        async def events() -> AsyncIterator[bytes]:
            if first is not None:
                yield first
            try:
                async for line in lines:
                    yield line
            except VeilnetError as exc:  # tampering or truncation after the stream began: in-band, then end
                log.warning("confidential stream refused: %s", exc.message)
                yield b"data: " + json.dumps(error_body(exc)).encode() + b"\n\n"
                yield b"data: [DONE]\n\n"

        return EventStreamResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await run(request, ChatCompletionRequest, "chat.completions")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await run(request, CompletionRequest, "completions")

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        """Models with at least one attested miner at the gateway."""
        listed = await client.get_json("/confidential/miners", caller_key(request))
        ids = sorted({m for entry in listed.get("data", []) for m in entry.get("models", [])})
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "veilnet"} for m in ids]}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "gateway": client.base_url,
                "attested": [m.hotkey for m in client.sessions.fresh()]}

    return app
