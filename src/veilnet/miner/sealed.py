"""Serving a sealed (confidential) request inside the miner's enclave: open it, run it, seal the answer
frame by frame, and sign a usage receipt. Nothing here logs or returns plaintext outside the frames."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi.responses import Response
from pydantic_core import to_json

from veilnet.confidential.enclave import Enclave
from veilnet.confidential.sealing import ResponseSealer
from veilnet.edge import parse_body
from veilnet.errors import InvalidRequest
from veilnet.miner.service import MinerContext
from veilnet.miner.stream import Framing, signed_stream
from veilnet.protocol import sse
from veilnet.protocol.confidential import ENCRYPTION_SCHEME, SealedRequest, SealedResponse
from veilnet.protocol.epistula import StreamSigner, sign_response
from veilnet.protocol.headers import ENCRYPTION_HEADER, SIMULATED_HEADER
from veilnet.protocol.openai import ChatCompletionRequest, CompletionRequest
from veilnet.streaming import EventStreamResponse

__all__ = ["serve_sealed"]


async def serve_sealed(
    ctx: MinerContext,
    enclave: Enclave,
    sealed: SealedRequest,
    schema: type[ChatCompletionRequest | CompletionRequest],
    once: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    stream: Callable[[dict[str, Any]], AsyncIterator[dict[str, Any]]],
    request_uuid: str,
    caller: str,
    *,
    check: Callable[[ChatCompletionRequest | CompletionRequest], None] = lambda _: None,
) -> Response:
    """``check``: what the miner checks of a plain request beyond its schema, run on the opened one."""
    opened = enclave.open(sealed)
    request = parse_body(schema, opened.plaintext)
    if request.model != sealed.model or request.stream != sealed.stream:
        raise InvalidRequest("the sealed request's model or stream flag differs from its envelope", param="model")
    check(request)
    payload = request.model_dump(exclude_none=True)
    prices = {"price_input": ctx.settings.price_input_per_million, "price_output": ctx.settings.price_output_per_million}
    headers = {ENCRYPTION_HEADER: ENCRYPTION_SCHEME, SIMULATED_HEADER: "true" if enclave.simulated else "false"}
    sealer = opened.sealer
    if not sealed.stream:
        result = await once(payload)
        counts = result.setdefault("usage", {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        whole = sealer.frame(to_json(result), final=True)
        receipt = enclave.receipt(sealed, sealer, counts, **prices)
        answer = SealedResponse(request_id=sealed.request_id, frames=[whole], receipt=receipt)
        data = answer.model_dump_json().encode()
        return Response(data, media_type="application/json",
                        headers={**headers, **sign_response(ctx.keypair, data, request_uuid, caller)})

    payload["stream_options"] = {"include_usage": True}  # the receipt needs the token counts
    chunks = stream(payload)
    first = await anext(chunks, None)  # errors before the first token are plain HTTP errors
    usage: dict[str, Any] = {}

    async def plaintexts() -> AsyncIterator[bytes]:
        nonlocal usage
        try:
            chunk = first
            while chunk is not None:
                usage = chunk.get("usage") or usage
                yield to_json(chunk)
                chunk = await anext(chunks, None)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    def epilogue() -> bytes:
        """The final frame, then the receipt over every frame before it."""
        final = _frame_event(sealer, b"", final=True)
        receipt = enclave.receipt(sealed, sealer, usage, **prices)
        return final + sse.event(b'{"receipt":' + receipt.model_dump_json().encode() + b"}")

    def frame(plaintext: bytes) -> bytes:  # chunks and the in-band error alike: sealed like everything else
        return _frame_event(sealer, plaintext)

    body = signed_stream(plaintexts(), StreamSigner(ctx.keypair, request_uuid, caller), Framing(frame, frame, epilogue))
    return EventStreamResponse(body, headers={**headers, "Cache-Control": "no-cache",
                                              "Epistula-Signed-By": ctx.keypair.ss58_address})


def _frame_event(sealer: ResponseSealer, plaintext: bytes, *, final: bool = False) -> bytes:
    return sse.event(sealer.frame(plaintext, final=final).model_dump_json().encode())
