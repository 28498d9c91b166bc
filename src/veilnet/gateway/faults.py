"""Whose fault a miner's answer is, and the record of each attempt (pure: no I/O).

The rule, for every answer but a good 200:

====================  ===================================================  ==============================
fault                 answers                                              the gateway
====================  ===================================================  ==============================
``client``            400 or 422: the miner found the request invalid      answers the client with the
                      (an over-long prompt, a parameter its engine         miner's error at once; tries no
                      refuses)                                             other miner; counts nothing
``gateway``           401 ``epistula_timestamp`` (the gateway's signature  tries the next miner; counts
                      went stale on its way), 403 ``not_registered`` or    nothing (each attempt is signed
                      ``no_validator_permit`` (the gateway's validator     afresh)
                      hotkey is not, or not yet, permitted there)
``dependency``        503 ``store_error``: the miner's own store (Redis)   skips the miner for its
                      is out                                               Retry-After (1 s if none, at
                                                                           most 5 s); counts nothing; tries
                                                                           the next miner
``busy``              429, or a 503 with Retry-After: the miner asks for   skips it for that long (at most
                      a pause (its quota for this validator is spent, its  the breaker's max_pause); counts
                      backend is full)                                     nothing; tries the next miner
``miner``             anything else: 5xx, 404 (it does not serve what it   counts against the miner's
                      declared), 413 for a body within its declared        breaker; tries the next miner
                      limit, a 429 without Retry-After, no answer within
                      a deadline, a broken or unsigned stream, an answer
                      that is not what was asked for
====================  ===================================================  ==============================

A dependency outage is kept apart from the miner's health so that a Redis blip costs about a second after it
ends, not a breaker's backoff; the gateway never sends a client's request to a miner when it can tell the
miner would refuse it (body size, NaN, content parts, input modalities: checked at the gateway), so a
``client`` answer is rare and never the gateway's doing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from veilnet.errors import VeilnetError

__all__ = ["AttemptOutcome", "Fault", "Verdict", "classify_refusal"]

DEPENDENCY_PAUSE = 1.0  # seconds, when a miner reporting a dependency outage does not say
MAX_DEPENDENCY_PAUSE = 5.0
_GATEWAY_CODES = frozenset({"epistula_timestamp", "not_registered", "no_validator_permit"})


class Fault(StrEnum):
    CLIENT = "client"
    MINER = "miner"
    GATEWAY = "gateway"
    DEPENDENCY = "dependency"
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class Verdict:
    fault: Fault
    pause: float | None = None  # seconds to skip the miner (dependency, busy)


def classify_refusal(status: int, error: VeilnetError, retry_after: float | None) -> Verdict:
    """Whose fault a miner's non-200 answer is (``error``: its body read back through the error registry)."""
    if status in (400, 422):
        return Verdict(Fault.CLIENT)
    if status in (401, 403) and error.code in _GATEWAY_CODES:
        return Verdict(Fault.GATEWAY)
    if status == 503 and error.code == "store_error":
        return Verdict(Fault.DEPENDENCY, min(retry_after if retry_after is not None else DEPENDENCY_PAUSE,
                                             MAX_DEPENDENCY_PAUSE))
    if status in (429, 503) and retry_after is not None:
        return Verdict(Fault.BUSY, retry_after)
    return Verdict(Fault.MINER)


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """One try of one request at one miner, as it ended: what a validator's scores or an operator's
    dashboard can learn from organic traffic. ``fault`` is None when the miner served the request."""

    miner: str  # hotkey
    model: str
    fault: Fault | None
    status: int | None  # the miner's HTTP status; None when it never answered
    latency_s: float  # from sending the request to the attempt's end
    first_byte_s: float | None  # from sending the request to the answer's start
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
