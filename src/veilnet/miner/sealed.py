"""Serving a sealed (confidential) request inside the miner's enclave: open it, run it, seal the answer
frame by frame, and sign a usage receipt. Nothing here logs or returns plaintext outside the frames."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import Response
from pydantic import BaseModel
from pydantic_core import to_json

from veilnet.confidential.enclave import Enclave
from veilnet.confidential.sealing import ResponseSealer
from veilnet.edge import error_body, parse_body
from veilnet.errors import InvalidRequest, VeilnetError
from veilnet.miner.service import MinerContext
from veilnet.protocol.confidential import ENCRYPTION_SCHEME, SealedRequest, SealedResponse
from veilnet.protocol.epistula import StreamSigner, sign_response
from veilnet.protocol.headers import ENCRYPTION_HEADER, SIMULATED_HEADER
from veilnet.streaming import EventStreamResponse

__all__ = ["serve_sealed"]

log = logging.getLogger(__name__)


def _frame_line(sealer: ResponseSealer, plaintext: bytes, *, final: bool = False) -> bytes:
    return b"data: " + sealer.frame(plaintext, final=final).model_dump_json().encode() + b"\n\n"


async def serve_sealed(
    ctx: MinerContext,
    enclave: Enclave,
    sealed: SealedRequest,
    schema: type[BaseModel],
    once: Callable[[dict[str, Any]], Any],
    stream: Callable[[dict[str, Any]], AsyncIterator[dict[str, Any]]],
    request_uuid: str,
    caller: str,
) -> Response:
    opened = enclave.open(sealed)
    request = parse_body(schema, opened.plaintext)
    if request.model != sealed.model or bool(getattr(request, "stream", False)) != sealed.stream:
        raise InvalidRequest("the sealed request's model or stream flag differs from its envelope", param="model")
    payload = request.model_dump(exclude_none=True)
    prices = {"price_input": ctx.settings.price_input_per_million, "price_output": ctx.settings.price_output_per_million}
    headers = {ENCRYPTION_HEADER: ENCRYPTION_SCHEME, SIMULATED_HEADER: "true" if enclave.simulated else "false"}
    sealer = opened.sealer
    if not sealed.stream:
        result = await once(payload)
        usage = result.setdefault("usage", {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        frame = sealer.frame(to_json(result), final=True)
        receipt = enclave.receipt(sealed, sealer, usage, **prices)
        body = SealedResponse(request_id=sealed.request_id, frames=[frame], receipt=receipt).model_dump_json().encode()
        return Response(body, media_type="application/json",
                        headers={**headers, **sign_response(ctx.keypair, body, request_uuid, caller)})

    payload["stream_options"] = {"include_usage": True}  # the receipt needs the token counts
    chunks = stream(payload)
    first = await anext(chunks, None)  # errors before the first token are plain HTTP errors
    signer = StreamSigner(ctx.keypair, request_uuid, caller)

    async def events() -> AsyncIterator[bytes]:
        usage: dict[str, Any] = {}
        try:
            if first is not None:
                usage = first.get("usage") or usage
                yield signer.feed(_frame_line(sealer, to_json(first)))
            async for chunk in chunks:
                usage = chunk.get("usage") or usage
                yield signer.feed(_frame_line(sealer, to_json(chunk)))
        except VeilnetError as exc:  # in-band, and sealed like everything else the client reads
            yield signer.feed(_frame_line(sealer, json.dumps(error_body(exc)).encode()))
        except Exception:
            log.exception("sealed stream failed")
            error = b'{"error":{"message":"internal error","type":"server_error","code":"internal_error"}}'
            yield signer.feed(_frame_line(sealer, error))
        yield signer.feed(_frame_line(sealer, b"", final=True))
        receipt = enclave.receipt(sealed, sealer, usage, **prices)
        yield signer.feed(b'data: {"receipt":' + receipt.model_dump_json().encode() + b"}\n\n")
        yield signer.feed(b"data: [DONE]\n\n")
        yield signer.final_line()

    return EventStreamResponse(events(), media_type="text/event-stream",
                             headers={**headers, "Cache-Control": "no-cache",
                                      "Epistula-Signed-By": ctx.keypair.ss58_address})
