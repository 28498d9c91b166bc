"""A request the client sealed to an enclave it attested itself: forwarded as ciphertext the gateway cannot
read, to the one miner the client chose. The gateway checks that miner's attestation (its own verification)
and bills from the enclave's signed receipt, which it checks against the frames it relayed
(:class:`~veilnet.confidential.exchange.ReceiptWitness`). The miner's answers are classified as for any
request (:mod:`veilnet.gateway.faults`); an enclave's verdict on the request (it cannot be opened, was
replayed, is stale) is the client's to hear.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from veilnet.confidential.errors import PrivacyRestricted, ResponseTampered, StaleKeyset
from veilnet.confidential.exchange import ReceiptWitness, SealedExchange
from veilnet.confidential.sessions import AttestedSessions
from veilnet.edge import parse_body, read_body
from veilnet.errors import (
    ConfidentialError,
    InvalidRequest,
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    UpstreamError,
    VeilnetError,
)
from veilnet.gateway.access import KeyGate
from veilnet.gateway.attempt import Attempts, MinerRefused, Opened, short, timed_out
from veilnet.gateway.breaker import CircuitBreaker
from veilnet.gateway.confidential import attested_for
from veilnet.gateway.directory import MinerDirectory
from veilnet.gateway.flow import new_generation_id
from veilnet.gateway.ledger import Ledger, LedgerEntry, estimated_usage, priced
from veilnet.gateway.router import Route
from veilnet.protocol import paths, sse
from veilnet.protocol.confidential import (
    ENCRYPTION_SCHEME,
    ConfidentialRelayRequest,
    SealedRequest,
    SealedResponse,
    UsageReceipt,
)
from veilnet.protocol.epistula import STREAM_SIGNATURE_PREFIX
from veilnet.protocol.headers import ENCRYPTION_HEADER, GENERATION_HEADER, SIMULATED_HEADER
from veilnet.protocol.usage import LedgerStatus, Usage
from veilnet.relay import MinerClient, RelayError
from veilnet.streaming import EventStreamResponse, SettledResponse

__all__ = ["SealedPassthrough"]

log = logging.getLogger(__name__)


class SealedPassthrough:
    def __init__(self, access: KeyGate, directory: MinerDirectory, sessions: AttestedSessions | None,
                 miners: MinerClient, breaker: CircuitBreaker, ledger: Ledger, *, max_body_bytes: int) -> None:
        self._access = access
        self._directory = directory
        self._sessions = sessions
        self._miners = miners
        self._breaker = breaker
        self._ledger = ledger
        self._max_body_bytes = max_body_bytes

    async def serve(self, request: Request, path: str) -> Response:
        started = time.perf_counter()
        key = await self._access.admit(request.headers.get("authorization"))
        if request.headers.get(ENCRYPTION_HEADER) != ENCRYPTION_SCHEME:
            raise InvalidRequest(f"{ENCRYPTION_HEADER} must be {ENCRYPTION_SCHEME}", param=ENCRYPTION_HEADER)
        relayed: ConfidentialRelayRequest = parse_body(ConfidentialRelayRequest,
                                                       await read_body(request, self._max_body_bytes))
        sealed = relayed.sealed
        route = self._route(relayed, path)
        entry = self._ledger.entry(key, new_generation_id(), sealed.model, started, sampled=False)
        # what the gateway cannot read it bounds by the model's context: that much is held before the miner is asked
        entry.hold(route.candidate, None)
        try:
            return await self._relayed(route, sealed, entry, path)
        except BaseException as exc:  # whatever no path recorded is recorded now, and its hold released
            entry.end(LedgerStatus.CLIENT_DISCONNECTED if isinstance(exc, asyncio.CancelledError) else LedgerStatus.ERROR,
                      f"the request ended: {type(exc).__name__}")
            raise

    async def _relayed(self, route: Route, sealed: SealedRequest, entry: LedgerEntry, path: str) -> Response:
        # the same rules as any request's attempt: whose fault an answer is, and what the breaker hears
        attempts = Attempts(self._miners, self._breaker, self._ledger, path, stream=sealed.stream, endpoint=None)
        opened = await self._open(attempts, route, sealed, entry)
        response, sent = opened.response, opened.sent_at
        headers = {GENERATION_HEADER: entry.generation, ENCRYPTION_HEADER: ENCRYPTION_SCHEME,
                   SIMULATED_HEADER: "true" if route.attested and route.attested.claims.simulated else "false"}
        assert route.attested is not None
        witness = ReceiptWitness(sealed, route.attested.keys)
        if sealed.stream:
            def unsent() -> None:  # the client left before the frames began: let the answer go, record it
                if not entry.done:
                    response.release()
                    entry.end(LedgerStatus.CLIENT_DISCONNECTED, "the client left before the stream began")

            return EventStreamResponse(self._frames(attempts, opened, witness, entry),
                                       headers={**headers, "Cache-Control": "no-cache"}, on_close=unsent)
        try:
            raw = await response.read()
        except TimeoutError as exc:
            self._failed(attempts, route, sent, entry, timed_out(route.candidate, exc), error="miner timed out")
            raise RequestTimeout(f"request timed out: {timed_out(route.candidate, exc).message}") from exc
        except RelayError as exc:
            self._failed(attempts, route, sent, entry, UpstreamError(str(exc)[:200]))
            raise ResponseTampered(f"miner {short(route.candidate.hotkey)} broke off its sealed answer") from exc
        finally:
            response.release()
        signed = _SIGNATURE_HEADER in response.headers

        async def settle() -> None:
            """Billed from the receipt once the answer is on its way: the client checks the same receipt and
            frames itself (and refuses them if they fail), so this check need not delay it."""
            try:
                witness.feed_response(SealedResponse.model_validate_json(raw))
                self._billed(attempts, opened, entry, witness.finish(), signed=signed)
            except (ValidationError, ConfidentialError) as exc:
                log.warning("sealed answer failed the receipt check",
                            extra={"miner": route.candidate.hotkey, "reason": str(exc)[:200]})
                self._failed(attempts, route, sent, entry, UpstreamError(f"unusable sealed answer: {str(exc)[:180]}"))

        return SettledResponse(raw, settle, media_type="application/json", headers=headers)

    def _route(self, relayed: ConfidentialRelayRequest, path: str) -> Route:
        """The client's miner, if this gateway holds a fresh verified attestation of it for the request."""
        sealed = relayed.sealed
        if paths.ENDPOINT_PATHS[sealed.endpoint] != path:
            raise InvalidRequest(f"sealed request is for {sealed.endpoint}, sent to {path}", param="sealed.endpoint")
        attested = attested_for(self._sessions, relayed.miner, sealed.model, None)
        if attested is None:
            raise PrivacyRestricted(f"miner {relayed.miner} has no fresh verified attestation for {sealed.model!r} "
                                    "at this gateway")
        if attested.claims.keyset_digest != sealed.keyset_digest:
            raise StaleKeyset("the request is sealed to a keyset the miner no longer attests; fetch its "
                              "attestation again")
        candidate = next((c for c in self._directory.candidates(sealed.model, {}) if c.hotkey == relayed.miner), None)
        if candidate is None:
            raise PrivacyRestricted(f"miner {relayed.miner} does not serve {sealed.model!r}")
        return Route(candidate, attested)

    async def _open(self, attempts: Attempts, route: Route, sealed: SealedRequest, entry: LedgerEntry) -> Opened:
        """The miner's 200 answer to the envelope; any other end raises the error the client gets."""
        candidate = route.candidate
        if not self._breaker.claim(candidate.hotkey):
            raise Overloaded(f"miner {short(candidate.hotkey)} is cooling down after failures", retry_after=1)
        body = sealed.model_dump_json().encode()
        if len(body) > candidate.max_body_bytes:
            self._breaker.release(candidate.hotkey)
            raise PayloadTooLarge(f"the sealed request is {len(body)} bytes; miner {short(candidate.hotkey)} takes at "
                                  f"most {candidate.max_body_bytes}")
        sent = time.perf_counter()
        try:
            response = await self._miners.send_sealed(candidate.url, candidate.hotkey, sealed)
        except TimeoutError as exc:
            self._failed(attempts, route, sent, entry, timed_out(candidate, exc), error="miner timed out")
            raise RequestTimeout(f"request timed out: {timed_out(candidate, exc).message}") from exc
        except RelayError as exc:
            self._failed(attempts, route, sent, entry, UpstreamError(str(exc)[:200]), error="miner unreachable")
            raise Overloaded(f"miner {short(candidate.hotkey)} unreachable: {exc}", retry_after=2) from exc
        except BaseException:
            self._breaker.release(candidate.hotkey)
            raise
        first_byte = time.perf_counter() - sent
        if response.status != 200:
            try:
                await attempts.refused(route, sealed.model, sent, response)
            except MinerRefused as refused:  # the enclave's verdict on the request
                entry.finish(candidate, None, LedgerStatus.ERROR, f"HTTP {response.status}")
                raise refused.error from None
            entry.finish(candidate, None, LedgerStatus.ERROR, f"HTTP {response.status}")
            failure = attempts.failures[-1]
            raise failure if isinstance(failure, Overloaded) else Overloaded(failure.message, retry_after=2)
        try:
            SealedExchange.check_encrypted(response.headers)
        except ConfidentialError as exc:
            response.release()
            self._failed(attempts, route, sent, entry, exc, error="plaintext downgrade")
            raise
        return Opened(route, sealed.model, b"", response, None, sent, first_byte)

    async def _frames(self, attempts: Attempts, opened: Opened, witness: ReceiptWitness,
                      entry: LedgerEntry) -> AsyncIterator[bytes]:
        response, route, sent = opened.response, opened.route, opened.sent_at
        status: LedgerStatus = LedgerStatus.OK
        failure: VeilnetError | None = None
        receipt: UsageReceipt | None = None
        signed = False
        try:
            async for block in response.blocks(whole_lines=True):
                out = []
                for line in sse.lines_of(block):
                    if line.startswith(sse.COMMENT):  # the miner's signature is for validators, not apps
                        signed = signed or line.startswith(STREAM_SIGNATURE_PREFIX)
                        continue
                    witness.feed(line)
                    out.append(line)
                if out:
                    yield b"".join(out)
            receipt = witness.finish()
        except (RelayError, TimeoutError, ConfidentialError) as exc:
            status = LedgerStatus.ERROR
            failure = timed_out(route.candidate, exc) if isinstance(exc, TimeoutError) else UpstreamError(str(exc)[:200])
            log.warning("sealed stream failed", extra={"miner": route.candidate.hotkey, "reason": str(exc)[:200]})
            # the client's own checks refuse the stream (no final frame or receipt); nothing is billed
        except (asyncio.CancelledError, GeneratorExit):  # the client went away
            status = LedgerStatus.CLIENT_DISCONNECTED
            raise
        finally:
            response.release()
            if receipt is not None:
                self._billed(attempts, opened, entry, receipt, signed=signed)
            elif failure is not None:
                self._failed(attempts, route, sent, entry, failure)
            else:  # the client left before the receipt: billed for the frames relayed
                usage = estimated_usage(witness.frames, route.candidate) if witness.frames else None
                entry.finish(route.candidate, usage, status,
                             "usage estimated: the client left before the enclave's receipt arrived" if usage else None)
                attempts.abandoned(opened, "the client left")

    def _billed(self, attempts: Attempts, opened: Opened, entry: LedgerEntry, receipt: UsageReceipt, *,
                signed: bool) -> None:
        usage = priced(Usage(prompt_tokens=receipt.prompt_tokens, completion_tokens=receipt.completion_tokens),
                       opened.candidate, None)
        entry.finish(opened.candidate, usage, LedgerStatus.OK)
        if not signed:  # answered and billed, but a miner that does not sign is failing its protocol
            attempts.failed(opened.route, entry.model, opened.sent_at, UpstreamError(
                f"miner {short(opened.candidate.hotkey)} sent a sealed answer without its signature"), status=200)
            return
        attempts.succeeded(opened, usage.prompt_tokens, usage.completion_tokens)

    def _failed(self, attempts: Attempts, route: Route, sent: float, entry: LedgerEntry, failure: VeilnetError,
                *, error: str | None = None) -> None:
        """The miner's fault: counted, and the request recorded unbilled."""
        attempts.failed(route, entry.model, sent, failure)
        entry.finish(route.candidate, None, LedgerStatus.ERROR, error or failure.message[:200])


_SIGNATURE_HEADER = "Epistula-Response-Signature"
