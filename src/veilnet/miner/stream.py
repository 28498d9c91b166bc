"""The miner's one stream generator: every streamed answer a miner sends, plain, relayed raw from an upstream
or sealed in an enclave, is this signed SSE body.

Pieces go out as they come (each framed by the answer's :class:`Framing`); a source that fails after the
first byte ends the stream with an in-band error event; then the framing's epilogue (a sealed stream's final
frame and receipt), ``data: [DONE]`` and, in the same write, the Epistula signature line over every byte
sent before it (:class:`~veilnet.protocol.epistula.StreamSigner`). Errors before the first byte are not
streamed: the route raises them and the edge answers with their status.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from pydantic_core import to_json

from veilnet.edge import error_body
from veilnet.errors import UpstreamError, VeilnetError
from veilnet.protocol import sse
from veilnet.protocol.epistula import StreamSigner

__all__ = ["PLAIN", "RAW", "Framing", "signed_stream", "until_done"]

log = logging.getLogger(__name__)

_INTERNAL_ERROR = b'{"error":{"message":"internal error","type":"server_error","param":null,"code":"internal_error"}}'


def _as_is(piece: bytes) -> bytes:
    return piece


def _nothing() -> bytes:
    return b""


@dataclass(frozen=True, slots=True)
class Framing:
    """How a stream's bytes are made: ``piece`` turns what the source yields into wire bytes, ``payload``
    turns a JSON payload (the in-band error) into an event, ``epilogue`` gives what goes just before
    ``data: [DONE]``."""

    piece: Callable[[bytes], bytes]
    payload: Callable[[bytes], bytes]
    epilogue: Callable[[], bytes] = _nothing


PLAIN = Framing(sse.event, sse.event)  # the source yields JSON payloads (an engine's chunks)
RAW = Framing(_as_is, sse.event)  # the source yields an upstream's SSE bytes (see until_done)


async def signed_stream(source: AsyncIterator[bytes], signer: StreamSigner, framing: Framing = PLAIN,
                        ) -> AsyncIterator[bytes]:
    failure: bytes | None = None
    try:
        async for piece in source:
            yield signer.feed(framing.piece(piece))
    except VeilnetError as exc:  # after the first byte, errors travel in-band
        failure = to_json(error_body(exc))
    except Exception:
        log.exception("stream failed")
        failure = _INTERNAL_ERROR
    finally:
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()  # the engine's or upstream's stream (and its admission slot) go back now
    ending = (b"" if failure is None else framing.payload(failure)) + framing.epilogue() + sse.DONE
    yield signer.feed(ending) + signer.final_line()  # one write: the end and its signature


async def until_done(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """An upstream's raw SSE bytes, in whole lines, up to its ``data: [DONE]`` line: that line and anything
    after it stay behind (:func:`signed_stream` ends the stream itself). UpstreamError when the upstream ends
    before ``[DONE]``."""
    try:
        partial = b""
        data: bytes | None = first
        while data is not None:
            if partial:
                data, partial = partial + data, b""
            cut = data.rfind(b"\n") + 1
            if cut < len(data):  # a line still arriving waits for the rest of it
                data, partial = data[:cut], data[cut:]
            if data.startswith(sse.DONE_MARK):
                return
            at = data.find(b"\n" + sse.DONE_MARK)  # at a line's start: never a chunk's text
            if at >= 0:
                yield data[:at + 1]
                return
            if data:
                yield data
            data = await anext(rest, None)
        raise UpstreamError("upstream stream ended before [DONE]")
    finally:
        close = getattr(rest, "aclose", None)
        if close is not None:
            await close()
