"""One app request through the gateway, from its parsed document to its answer.

The request is routed model by model (``model``, then OpenRouter's ``models`` fallback list), each model's
miners tried in order (:class:`~veilnet.gateway.attempt.Attempts`) until one answers; that answer is read
whole or relayed as a stream (:class:`~veilnet.gateway.streams.StreamRelay`). A miner's verdict that the
request is invalid ends it at once with that error. A stream whose miner is slow to answer starts at once and
carries SSE comments until the first chunk. Every request ends in exactly one ledger row under its one id
(``X-Generation-Id``, every chunk's and the answer's ``id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from fastapi.responses import Response
from pydantic import ValidationError
from pydantic_core import to_json

from veilnet.confidential.errors import ReceiptInvalid, ResponseTampered
from veilnet.errors import (
    ConfidentialError,
    InvalidRequest,
    Overloaded,
    PaymentRequired,
    RequestTimeout,
    UpstreamError,
    UpstreamTimeout,
    VeilnetError,
)
from veilnet.gateway.attempt import Attempts, MinerRefused, Opened, short, timed_out
from veilnet.gateway.breaker import CircuitBreaker
from veilnet.gateway.ledger import Ledger, priced
from veilnet.gateway.recount import billed_usage, own_usage
from veilnet.gateway.router import NO_PREFERENCES, Needs, Router
from veilnet.gateway.streams import StreamRelay, error_event
from veilnet.protocol import paths, sse
from veilnet.protocol.headers import GENERATION_HEADER, SIMULATED_HEADER
from veilnet.protocol.openai import (
    SAMPLING_PARAMETERS,
    ChatCompletionRequest,
    EmbeddingRequest,
    GatewayRequest,
    encode_embeddings_base64,
    functional_parameters,
    input_modalities,
    prompt_token_floor,
)
from veilnet.protocol.usage import LedgerStatus, Usage
from veilnet.relay import MinerClient, RelayError, encode_request
from veilnet.store.keys import ApiKey
from veilnet.store.validator_pipeline import SignedAnswer
from veilnet.streaming import EventStreamResponse

__all__ = ["Flow", "FlowParts", "new_generation_id", "requested_parameters"]

_SIGNATURE_HEADER = "Epistula-Response-Signature"
_ENDPOINTS: dict[str, paths.Endpoint] = {path: endpoint for endpoint, path in paths.ENDPOINT_PATHS.items()}


def new_generation_id() -> str:
    """A request's one id (``X-Generation-Id``, its chunks' and answer's ``id``, its ledger row): 128 random bits."""
    return "gen-" + os.urandom(16).hex()


def requested_parameters(request: GatewayRequest) -> frozenset[str]:
    """The sampling parameters a request sets (what ``provider.require_parameters`` asks miners to honour)."""
    return frozenset(name for name in request.model_fields_set & SAMPLING_PARAMETERS
                     if getattr(request, name) is not None)


@dataclass(frozen=True, slots=True)
class FlowParts:
    router: Router
    miners: MinerClient
    breaker: CircuitBreaker
    ledger: Ledger
    keepalive_seconds: float  # a stream whose miner has not answered by then starts with SSE comments


class Flow:
    def __init__(self, parts: FlowParts, key: ApiKey, request: GatewayRequest, started: float) -> None:
        prefs = request.provider or NO_PREFERENCES
        endpoint = _ENDPOINTS.get(request.PATH)
        if prefs.confidential == "required" and endpoint is None:
            raise InvalidRequest("provider.confidential=required covers chat and completions; embeddings are "
                                 "never sealed", param="provider.confidential")
        self._parts = parts
        self.request = request
        self.streamed = bool(getattr(request, "stream", False))
        self.generation = new_generation_id()
        # provider.data_collection=deny or confidential: nothing of the request goes to the organic stream
        sampled = prefs.data_collection != "deny" and prefs.confidential == "off"
        # chat answers not sealed may be verified by the validator's scorers (deny: held only until verified)
        verifiable = isinstance(request, ChatCompletionRequest) and prefs.confidential == "off"
        self.entry = parts.ledger.entry(key, self.generation, request.model, started, sampled=sampled,
                                        verifiable=verifiable, private=prefs.data_collection == "deny")
        self.attempts = Attempts(parts.miners, parts.breaker, parts.ledger, request.PATH, stream=self.streamed,
                                 endpoint=endpoint)
        self._needs = Needs(provider=prefs, embeddings=isinstance(request, EmbeddingRequest),
                            parameters=requested_parameters(request), functional=functional_parameters(request),
                            modalities=input_modalities(request), prompt_tokens=prompt_token_floor(request))
        # miners answer embeddings as floats; base64 (the openai SDK's default) is encoded here
        self._base64 = isinstance(request, EmbeddingRequest) and request.encoding_format == "base64"

    def _body(self, model: str) -> bytes:
        """The request as a miner gets it for ``model``: exactly the fields the app set."""
        request, update = self.request, {}
        if model != request.model:
            update["model"] = model
        if self._base64:
            update["encoding_format"] = "float"
        return encode_request(request.model_copy(update=update) if update else request)

    async def _opened(self) -> AsyncGenerator[Opened, None]:
        """Each miner that answered 200, in routing order over the models to try."""
        request = self.request
        models = dict.fromkeys([request.model, *(request.models or [])])
        for model in models:
            try:
                routes = await self._parts.router.route(model, self._needs)
            except VeilnetError as exc:
                self.attempts.failures.append(exc)
                continue
            body = self._body(model)
            for route in routes:
                try:  # the most this miner may bill is held before it is asked
                    self.entry.hold(route.candidate, self.request)
                except PaymentRequired as exc:
                    self.attempts.failures.append(exc)
                    continue
                try:
                    opened = await self.attempts.open(route, model, body)
                except MinerRefused as refused:  # the request is invalid: the app hears it at once
                    self.entry.finish(refused.candidate, None, LedgerStatus.ERROR, refused.error.message[:200],
                                      model=model)
                    raise refused.error from None
                if opened is not None:
                    yield opened

    def give_up(self) -> VeilnetError:
        """The error for a request no miner served (its ledger row written)."""
        failures = self.attempts.failures
        error = failures[-1] if failures else UpstreamError("no miner could serve the request")
        self.entry.finish(None, None, LedgerStatus.ERROR, error.message[:200])
        if failures and all(isinstance(f, UpstreamTimeout) for f in failures):
            return RequestTimeout(f"request timed out: {'; '.join(f.message for f in failures)}")
        if isinstance(error, UpstreamError | ResponseTampered | ReceiptInvalid):
            return Overloaded(f"no miner could serve the request: {error.message}", retry_after=2)
        return error

    # answered whole

    async def answer(self) -> Response:
        async with contextlib.aclosing(self._opened()) as tried:
            async for opened in tried:
                read = await self._read(opened)
                if read is not None:
                    data, usage, signed = read
                    tokenizer = self._parts.ledger.tokenizers.get(opened.model) if opened.exchange is None else None
                    if tokenizer is not None:  # billed from the gateway's own count (never above the claim)
                        usage = billed_usage(usage, await own_usage(tokenizer, self.request, data))
                    return self._answered(opened, data, usage, signed)
        raise self.give_up()

    async def _read(self, opened: Opened) -> tuple[dict[str, object], Usage, SignedAnswer | None] | None:
        """The miner's whole answer, its usage and (a request drawn for verification) its signed bytes; None
        when it is unusable (the miner's failure, counted)."""
        who = f"miner {short(opened.candidate.hotkey)}"
        signed = None
        try:
            raw = await opened.response.read()
            if opened.exchange is not None:
                data = opened.exchange.open_response(raw)  # frames and receipt checked
                receipt = opened.exchange.receipt
                assert receipt is not None
                usage = Usage(prompt_tokens=receipt.prompt_tokens, completion_tokens=receipt.completion_tokens)
            else:
                if _SIGNATURE_HEADER not in opened.response.headers:
                    raise UpstreamError(f"{who} sent an answer without its signature")
                data = json.loads(raw)
                if not isinstance(data, dict):
                    raise UpstreamError(f"{who} answered with a non-object")
                usage = Usage.model_validate(data.get("usage") or {})
                signed = self.entry.signed("body", raw, opened.uuid, dict(opened.response.headers))
            if self._base64:
                encode_embeddings_base64(data)
        except TimeoutError as exc:
            self.attempts.failed(opened.route, opened.model, opened.sent_at, timed_out(opened.candidate, exc),
                                 status=200)
            return None
        except (RelayError, ValueError, ValidationError) as exc:  # broken, not JSON, usage not token counts
            self.attempts.failed(opened.route, opened.model, opened.sent_at,
                                 UpstreamError(f"{who} sent an unreadable answer: {str(exc)[:200]}"), status=200)
            return None
        except (UpstreamError, ConfidentialError) as exc:  # tampered frames or a bad receipt: never billed
            self.attempts.failed(opened.route, opened.model, opened.sent_at, exc, status=200)
            return None
        finally:
            opened.response.release()
        return data, usage, signed

    def _answered(self, opened: Opened, data: dict[str, object], usage: Usage, signed: SignedAnswer | None,
                  ) -> Response:
        bill = priced(usage, opened.candidate, self.request)
        data["usage"] = bill.model_dump(exclude_none=True)
        if "choices" in data:
            data["id"] = self.generation
        headers = {GENERATION_HEADER: self.generation}
        if opened.exchange is not None and opened.exchange.receipt is not None:
            headers[SIMULATED_HEADER] = "true" if opened.exchange.receipt.simulated else "false"
        self.entry.finish(opened.candidate, bill, LedgerStatus.OK, model=opened.model,
                          request=opened.body if opened.exchange is None else None, response=data, signed=signed)
        self.attempts.succeeded(opened, bill.prompt_tokens, bill.completion_tokens)
        return Response(to_json(data), media_type="application/json", headers=headers)

    # streamed

    async def stream(self) -> Response:
        found = self._opened()
        first = asyncio.ensure_future(anext(found, None))
        done, _ = await asyncio.wait({first}, timeout=self._parts.keepalive_seconds)
        headers = {GENERATION_HEADER: self.generation, "Cache-Control": "no-cache"}
        if not done:  # the miner is slow to answer: start the stream and keep it alive with SSE comments
            return EventStreamResponse(self._kept_alive(first, found), headers=headers,
                                       on_close=lambda: self._unsent(first, None))
        try:
            opened = first.result()  # the miner's verdict on an invalid request is raised here
        finally:
            await found.aclose()  # later candidates are not needed once one answered
        if opened is None:
            raise self.give_up()
        if opened.route.attested is not None:
            headers[SIMULATED_HEADER] = "true" if opened.route.attested.claims.simulated else "false"
        return EventStreamResponse(self._relay(opened), headers=headers, on_close=lambda: self._unsent(None, opened))

    def _unsent(self, first: asyncio.Future[Opened | None] | None, opened: Opened | None) -> None:
        """A stream's response closed: when its relay never ran (the client left before it began), the miner's
        answer is let go and the request recorded (its hold released)."""
        if self.entry.done:
            return
        if first is not None:
            first.cancel()
            if first.done() and not first.cancelled() and first.exception() is None:
                opened = first.result()
        if opened is not None:
            opened.response.release()
        self.entry.end(LedgerStatus.CLIENT_DISCONNECTED, "the client left before the stream began")

    def _relay(self, opened: Opened) -> AsyncGenerator[bytes, None]:
        return StreamRelay(opened, self.entry, self.attempts, self.request).events()

    async def _kept_alive(self, first: asyncio.Future[Opened | None], found: AsyncGenerator[Opened, None],
                          ) -> AsyncIterator[bytes]:
        try:
            while not first.done():
                yield sse.KEEPALIVE
                await asyncio.wait({first}, timeout=self._parts.keepalive_seconds)
            opened = first.result()
        except (asyncio.CancelledError, GeneratorExit):  # the client went away before any miner answered
            first.cancel()
            self.entry.finish(None, None, LedgerStatus.CLIENT_DISCONNECTED)
            raise
        except VeilnetError as exc:  # refused after the stream began: in-band, then the end
            await found.aclose()
            yield error_event(self.generation, self.request.model, exc)
            return
        await found.aclose()
        if opened is None:
            yield error_event(self.generation, self.request.model, self.give_up())
            return
        async with contextlib.aclosing(self._relay(opened)) as relayed:
            async for block in relayed:
                yield block
