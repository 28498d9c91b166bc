"""``veilnet confidential-proxy``: a local OpenAI-compatible endpoint that makes every request confidential.

Point any OpenAI client at it (``base_url=http://127.0.0.1:8787/v1``, your gateway API key as usual): it
verifies attestation itself, seals each request to the attested enclave, and decrypts and checks the answer,
so the client gets the guarantees of :class:`~veilnet.client.confidential.ConfidentialClient` unchanged.
Run it on the machine you trust; it is the only place plaintext exists outside the enclave.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from veilnet.client.confidential import ConfidentialClient
from veilnet.edge import error_body, install_error_handlers, parse_body
from veilnet.errors import UpstreamError, VeilnetError
from veilnet.protocol import paths, sse
from veilnet.protocol.gateway import ConfidentialMinerList
from veilnet.protocol.headers import SIMULATED_HEADER
from veilnet.protocol.openai import ChatCompletionRequest, CompletionRequest, Model, ModelList
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

    async def run(request: Request, schema: type[BaseModel], endpoint: paths.Endpoint) -> Response:
        parsed = parse_body(schema, await request.body())
        payload = parsed.model_dump(exclude_unset=True)  # exactly what the app set, sealed as it is
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
                yield sse.json_event(error_body(exc)) + sse.DONE

        return EventStreamResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post(paths.CHAT_COMPLETIONS)
    async def chat(request: Request) -> Response:
        return await run(request, ChatCompletionRequest, "chat.completions")

    @app.post(paths.COMPLETIONS)
    async def completions(request: Request) -> Response:
        return await run(request, CompletionRequest, "completions")

    @app.get(paths.MODELS)
    async def models(request: Request) -> ModelList:
        """Models with at least one attested miner at the gateway."""
        answer = await client.get_json(paths.under_v1(paths.CONFIDENTIAL_MINERS), caller_key(request))
        try:
            listed = ConfidentialMinerList.model_validate(answer)
        except ValidationError as exc:
            raise UpstreamError(f"the gateway's list of attested miners is malformed: {exc.errors()[0]['msg']}") from exc
        ids = sorted({m for entry in listed.data for m in entry.models})
        return ModelList(data=[Model(id=m, owned_by="veilnet") for m in ids])

    @app.get(paths.HEALTH)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "gateway": client.base_url,
                "attested": [m.hotkey for m in client.sessions.fresh()]}

    return app
