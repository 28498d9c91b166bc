"""One try of a request at one miner: sent plain, or sealed to the enclave routing chose for it; the
miner's answer classified (:mod:`veilnet.gateway.faults`) and its consequences applied to the miner's
breaker and the attempt's outcome record. What comes out is an :class:`Opened` answer (a 200 that looks
right) or nothing, with the reason kept for the request's final error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from veilnet.confidential.exchange import SealedExchange
from veilnet.errors import (
    ConfidentialError,
    Overloaded,
    PayloadTooLarge,
    UpstreamError,
    UpstreamTimeout,
    VeilnetError,
)
from veilnet.gateway.breaker import CircuitBreaker
from veilnet.gateway.faults import AttemptOutcome, Fault, classify_refusal
from veilnet.gateway.ledger import Ledger
from veilnet.gateway.router import Route
from veilnet.gateway.routing import Candidate
from veilnet.protocol.errors import error_from_answer, retry_after_seconds
from veilnet.protocol.paths import Endpoint
from veilnet.relay import MinerClient, RelayError, RelayResponse, RelayTimeout

__all__ = ["Attempts", "MinerRefused", "Opened", "short", "timed_out"]


def short(hotkey: str) -> str:
    return f"{hotkey[:8]}…"


def timed_out(candidate: Candidate, exc: TimeoutError) -> UpstreamTimeout:
    """The error for a miner that missed a deadline, saying which."""
    who = f"miner {short(candidate.hotkey)}"
    if isinstance(exc, RelayTimeout) and exc.phase == "first_byte":
        return UpstreamTimeout(f"{who} did not start answering within {exc.seconds:g} s")
    if isinstance(exc, RelayTimeout) and exc.phase == "idle":
        return UpstreamTimeout(f"{who} went silent for {exc.seconds:g} s mid-answer")
    seconds = f" within {exc.seconds:g} s" if isinstance(exc, RelayTimeout) else ""
    return UpstreamTimeout(f"{who} did not answer{seconds}")


class MinerRefused(Exception):
    """A miner found the request invalid (the client's fault): ``error`` goes to the client as it is."""

    def __init__(self, candidate: Candidate, error: VeilnetError) -> None:
        super().__init__(error.message)
        self.candidate = candidate
        self.error = error


@dataclass(slots=True)
class Opened:
    """A miner's 200 answer, its body still to read."""

    route: Route
    model: str
    body: bytes  # the request as sent to the miner (plain), for the organic sample
    response: RelayResponse
    exchange: SealedExchange | None  # set when the request went sealed
    sent_at: float  # perf_counter
    first_byte_s: float
    uuid: str = ""  # the request's Epistula uuid: what the miner's answer is signed for

    @property
    def candidate(self) -> Candidate:
        return self.route.candidate


class Attempts:
    """Opens attempts for one request (``stream``: whether it streams; ``endpoint``: what a sealed request is
    for, None when it cannot be sealed) and keeps what each failed one said in ``failures``."""

    def __init__(self, miners: MinerClient, breaker: CircuitBreaker, ledger: Ledger, path: str, *, stream: bool,
                 endpoint: Endpoint | None) -> None:
        self._miners = miners
        self._breaker = breaker
        self._ledger = ledger
        self._path = path
        self._stream = stream
        self._endpoint = endpoint
        self.failures: list[VeilnetError] = []

    async def open(self, route: Route, model: str, body: bytes) -> Opened | None:
        """Send ``body`` to the route's miner; the opened answer, or None (the reason kept). MinerRefused
        when the miner found the request invalid."""
        candidate = route.candidate
        hotkey = candidate.hotkey
        if not self._breaker.claim(hotkey):  # another request is probing it
            self.failures.append(Overloaded(f"miner {short(hotkey)} is cooling down after failures", retry_after=1))
            return None
        exchange, wire = None, body
        if route.attested is not None and self._endpoint is not None:
            exchange = SealedExchange.of_body(route.attested, body, self._endpoint, model=model, stream=self._stream)
            wire = exchange.body()
        if len(wire) > candidate.max_body_bytes:
            self._breaker.release(hotkey)
            self.failures.append(PayloadTooLarge(
                f"the request is {len(wire)} bytes as sent to a miner ({'sealed' if exchange else 'plain'}); "
                f"the miners serving {model!r} take at most {candidate.max_body_bytes}"))
            return None
        sent = time.perf_counter()
        try:
            uuid, response = await self._miners.post_with_uuid(candidate.url, hotkey, self._path, wire,
                                                               sealed=exchange is not None)
        except TimeoutError as exc:
            self.failed(route, model, sent, timed_out(candidate, exc))
            return None
        except RelayError as exc:
            self.failed(route, model, sent, UpstreamError(f"miner {short(hotkey)} unreachable: {exc}"))
            return None
        except BaseException:  # cancelled: the client left while the miner had not answered
            self._breaker.release(hotkey)
            raise
        first_byte = time.perf_counter() - sent
        if response.status != 200:
            await self.refused(route, model, sent, response)
            return None
        if exchange is not None:
            try:
                exchange.check_encrypted(response.headers)
            except ConfidentialError as exc:
                response.release()
                self.failed(route, model, sent, exc, status=200)
                return None
        return Opened(route, model, body, response, exchange, sent, first_byte, uuid)

    async def refused(self, route: Route, model: str, sent: float, response: RelayResponse) -> None:
        """A non-200 answer, read and released: whose fault it is decides what follows (see
        :mod:`veilnet.gateway.faults`); MinerRefused when the request is invalid."""
        hotkey, status = route.candidate.hotkey, response.status
        try:
            answer = await response.read()
        except (RelayError, TimeoutError):
            answer = b""
        finally:
            response.release()
        retry_after = response.headers.get("Retry-After")
        error = error_from_answer(status, answer, retry_after=retry_after,
                                  default_message=f"miner {short(hotkey)} answered HTTP {status}")
        verdict = classify_refusal(status, error, retry_after_seconds(retry_after))
        self.outcome(route, model, sent, verdict.fault, status, error.message)
        if verdict.fault is Fault.CLIENT:
            self._breaker.release(hotkey)
            raise MinerRefused(route.candidate, error)
        if verdict.fault is Fault.GATEWAY:
            self._breaker.release(hotkey)
            self.failures.append(Overloaded(f"miner {short(hotkey)} refused this gateway: {error.message}",
                                            retry_after=1))
        elif verdict.pause is not None:
            self._breaker.pause(hotkey, verdict.pause)
            self.failures.append(Overloaded(f"miner {short(hotkey)} asked for a pause: {error.message}",
                                            retry_after=verdict.pause))
        else:
            self._breaker.failure(hotkey)
            self.failures.append(UpstreamError(f"miner {short(hotkey)} answered HTTP {status}: {error.message}"))

    def failed(self, route: Route, model: str, sent: float, error: VeilnetError, *, status: int | None = None) -> None:
        """The miner's fault: counted on its breaker, kept as a reason, recorded as the attempt's outcome."""
        self._breaker.failure(route.candidate.hotkey)
        self.failures.append(error)
        self.outcome(route, model, sent, Fault.MINER, status, error.message)

    def succeeded(self, opened: Opened, prompt_tokens: int, completion_tokens: int) -> None:
        """The miner served the request, answer and all (a breaker's probe closes it)."""
        self._breaker.success(opened.candidate.hotkey)
        self.outcome(opened.route, opened.model, opened.sent_at, None, 200, first_byte_s=opened.first_byte_s,
                     prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    def abandoned(self, opened: Opened, why: str) -> None:
        """The attempt ended for a reason that says nothing about the miner (its client left)."""
        self._breaker.release(opened.candidate.hotkey)
        self.outcome(opened.route, opened.model, opened.sent_at, None, 200, why, first_byte_s=opened.first_byte_s)

    def outcome(self, route: Route, model: str, sent: float, fault: Fault | None, status: int | None,
                error: str | None = None, *, first_byte_s: float | None = None, prompt_tokens: int = 0,
                completion_tokens: int = 0) -> None:
        self._ledger.attempt(AttemptOutcome(
            miner=route.candidate.hotkey, model=model, fault=fault, status=status,
            latency_s=time.perf_counter() - sent, first_byte_s=first_byte_s, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens, error=error))
