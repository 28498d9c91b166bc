"""Relaying one miner's stream to the app, plain or sealed by the gateway, with as little work per chunk as
the stream allows.

A plain stream goes through by network read (blocks of whole lines): per block, one ``bytes.replace`` gives
every chunk the request's one id (:class:`~veilnet.protocol.sse.ChunkIds`) and :func:`rewrite_lines` looks only
at comment lines (the miner's signature, kept from apps), the usage line (priced: ``usage.cost``) and error
lines (OpenRouter's shape for an error after streaming began). A stream the gateway sealed is opened frame
by frame, strictly in order, and billed from the enclave's receipt. The stream's end is recorded once: the
ledger row (estimated from what was relayed when no usage came), the miner's breaker (a stream that broke,
went silent or came unsigned is the miner's failure), and the attempt's outcome.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator

from pydantic import ValidationError
from pydantic_core import to_json

from veilnet.edge import error_body
from veilnet.errors import ConfidentialError, UpstreamError, VeilnetError
from veilnet.gateway.attempt import Attempts, Opened, short, timed_out
from veilnet.gateway.ledger import LedgerEntry, estimated_usage, priced
from veilnet.gateway.recount import billed_usage, own_usage
from veilnet.protocol import sse
from veilnet.protocol.epistula import STREAM_SIGNATURE_PREFIX
from veilnet.protocol.openai import MinerRequest
from veilnet.protocol.usage import LedgerStatus, Usage
from veilnet.relay import RelayError
from veilnet.tasks.stream import assemble_sse_body

__all__ = ["StreamRelay", "error_event"]

_NEEDLES = (b'"usage"', b'"error"')
_NO_USAGE = (b'"usage":null', b'"usage": null')


def _usage_in(block: bytes) -> bool:
    """Whether a block holds a usage line that is not ``"usage": null``."""
    if _NEEDLES[0] not in block:
        return False
    return any(_NEEDLES[0] in line and _NO_USAGE[0] not in line and _NO_USAGE[1] not in line
               for line in block.split(b"\n"))


def error_event(generation: str, model: str, error: VeilnetError) -> bytes:
    """OpenRouter's shape for an error after streaming began, then the end of the stream."""
    chunk = {"id": generation, "object": "chat.completion.chunk", "model": model,
             "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}], **error_body(error)}
    return sse.json_event(chunk) + sse.DONE


class StreamRelay:
    def __init__(self, opened: Opened, entry: LedgerEntry, attempts: Attempts, request: MinerRequest) -> None:
        self._opened = opened
        self._entry = entry
        self._attempts = attempts
        self._request = request
        self._ids = sse.ChunkIds(entry.generation)
        self.usage: Usage | None = None
        self.chunks = 0  # data lines relayed: what a client that leaves before the usage is billed from
        self.signed = False  # the miner's signature line came
        self.miner_error: str | None = None  # an error the miner reported in-band
        # the gateway's own count needs the answer's text: held with the model's tokenizer (not for sealed streams)
        self._tokenizer = entry.tokenizer(opened.model) if opened.exchange is None else None
        self._own: tuple[int, int] | None = None  # (prompt, completion) by the gateway's count, once counted
        # the stream's bytes as the miner signed them: kept for a request drawn for verification or recounted
        keep = opened.exchange is None and (entry.audited or self._tokenizer is not None)
        self._raw: list[bytes] | None = [] if keep else None

    async def events(self) -> AsyncGenerator[bytes, None]:
        opened = self._opened
        status: LedgerStatus = LedgerStatus.OK
        failure: VeilnetError | None = None
        try:
            relayed = self._plain() if opened.exchange is None else self._sealed()
            async for block in relayed:
                yield block
            if not self.signed:
                failure = UpstreamError(f"miner {short(opened.candidate.hotkey)} sent a stream without its signature")
        except (RelayError, TimeoutError, UpstreamError, ConfidentialError) as exc:
            status = LedgerStatus.ERROR
            if isinstance(exc, TimeoutError):
                failure = timed_out(opened.candidate, exc)
            elif isinstance(exc, RelayError):
                failure = UpstreamError(f"miner {short(opened.candidate.hotkey)} failed mid-stream: {exc}")
            else:
                failure = exc
            if isinstance(exc, ConfidentialError):
                self.usage = None  # tampered, truncated or unreceipted: the app is told, nothing billed
            yield error_event(self._entry.generation, opened.model, failure)
        except (asyncio.CancelledError, GeneratorExit):  # the client went away
            status = LedgerStatus.CLIENT_DISCONNECTED
            raise
        finally:
            opened.response.release()
            self._end(status, failure)

    async def _plain(self) -> AsyncIterator[bytes]:
        ids, rewrite = self._ids, self._line
        old, new = b"", ids.new
        raw = self._raw
        async for block in self._opened.response.blocks(whole_lines=True):
            if raw is not None:
                raw.append(block)
                if self._tokenizer is not None and self._own is None and _usage_in(block):
                    # the usage chunk comes after the answer's text: counted once, before it is priced
                    answer = assemble_sse_body(b"".join(raw))
                    self._own = await own_usage(self._tokenizer, self._request, answer) or (-1, -1)
            self.chunks += block.count(sse.JSON_DATA)
            if old:  # the hot path: one C call per block gives every chunk the request's id
                block = block.replace(old, new)
            elif not ids.settled:
                block = ids(block)
                old = ids.old
            block = sse.rewrite_lines(block, _NEEDLES, rewrite)
            if block:
                yield block

    async def _sealed(self) -> AsyncIterator[bytes]:
        """Open each frame, strictly in order; the receipt, checked at ``[DONE]``, is what is billed."""
        exchange = self._opened.exchange
        assert exchange is not None
        async for block in self._opened.response.blocks(whole_lines=True):
            out: list[bytes] = []
            for line in sse.lines_of(block):
                if line.startswith(sse.COMMENT):
                    self.signed = self.signed or line.startswith(STREAM_SIGNATURE_PREFIX)
                    continue
                if line.startswith(sse.DONE_MARK):
                    receipt = exchange.finish()
                    self.usage = priced(Usage(prompt_tokens=receipt.prompt_tokens,
                                              completion_tokens=receipt.completion_tokens),
                                        self._opened.candidate, self._request)
                    out.append(sse.DONE)
                    continue
                plain = exchange.open_line(line)
                if plain is not None:
                    self.chunks += 1
                    out.append(self._line(self._ids(sse.data_line(plain))) + b"\n")
            if out:
                yield b"".join(out)
        if exchange.receipt is None:
            exchange.finish()  # ended without its final frame and receipt: truncated, refused

    def _line(self, line: bytes) -> bytes:
        """A line worth a look: the miner's signature comment (for validators, not apps), the usage chunk
        (priced) or an error (OpenRouter's shape for an error after streaming began)."""
        if line.startswith(sse.COMMENT):
            if line.startswith(STREAM_SIGNATURE_PREFIX):
                self.signed = True
            return b""
        if not line.startswith(sse.JSON_DATA) or ((_NO_USAGE[0] in line or _NO_USAGE[1] in line) and b'"error"' not in line):
            return line
        try:
            chunk = json.loads(line[len(sse.DATA):])
            usage = chunk.get("usage")
            if usage:
                own = self._own if self._own is not None and self._own[0] >= 0 else None
                self.usage = priced(billed_usage(Usage.model_validate(usage), own), self._opened.candidate,
                                    self._request)
                chunk["usage"] = self.usage.model_dump(exclude_none=True)
                chunk["id"] = self._entry.generation
                return sse.data_line(to_json(chunk))
        except (ValueError, TypeError, AttributeError, ValidationError) as exc:  # not JSON, or usage not counts
            raise UpstreamError(f"miner {short(self._opened.candidate.hotkey)} sent an unreadable chunk: "
                                f"{str(exc)[:200]}") from exc
        if "error" not in chunk or "choices" in chunk:
            return line
        self.miner_error = str(chunk["error"])[:200]
        chunk = {"id": self._entry.generation, "object": "chat.completion.chunk", "model": self._opened.model,
                 "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}], "error": chunk["error"]}
        return sse.data_line(to_json(chunk))

    def _end(self, status: LedgerStatus, failure: VeilnetError | None) -> None:
        """Record the stream's end: the ledger row, the breaker, the attempt's outcome."""
        opened, attempts = self._opened, self._attempts
        if self.miner_error is not None and failure is None:
            status, failure = LedgerStatus.ERROR, UpstreamError(f"miner failed mid-stream: {self.miner_error}")
        note = None
        usage = self.usage
        if usage is None and self.chunks and status is not LedgerStatus.ERROR:  # leaving early is not free
            usage = estimated_usage(self.chunks, opened.candidate, self._request if opened.exchange is None else None)
            who = "the enclave's receipt" if opened.exchange is not None else "the miner's usage"
            note = (f"usage estimated: the client left before {who} arrived" if status is LedgerStatus.CLIENT_DISCONNECTED
                    else "usage estimated: the miner sent no usage")
        if status is LedgerStatus.ERROR:
            usage = usage if opened.exchange is None else None
        signed = (self._entry.signed("stream", b"".join(self._raw), opened.uuid)
                  if self._raw is not None and status is LedgerStatus.OK and failure is None else None)
        self._entry.finish(opened.candidate, usage, status, note or (failure.message[:200] if failure else None),
                           model=opened.model, request=opened.body if opened.exchange is None else None,
                           signed=signed)
        if failure is not None:
            attempts.failed(opened.route, opened.model, opened.sent_at, failure, status=200)
        elif status is LedgerStatus.CLIENT_DISCONNECTED:
            attempts.abandoned(opened, "the client left")
        else:
            attempts.succeeded(opened, usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)

