"""Single use, short-lived: verifier nonces, and the sealed requests an enclave has served."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from veilnet.confidential.errors import AttestationFailed, RequestReplayed

__all__ = ["NonceBook", "ServedRequests"]


@dataclass
class NonceBook:
    """Issues 32-byte nonces and accepts each once, within ``ttl`` seconds of issue.

    Lives in the verifier that issued the nonce (it checks the evidence that answers its own challenge),
    so an in-process book is enough; a replayed attestation answers a nonce already spent or never issued.
    """

    ttl: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _issued: dict[bytes, float] = field(default_factory=dict)

    def issue(self) -> bytes:
        now = self.clock()
        self._forget_expired(now)
        nonce = os.urandom(32)
        self._issued[nonce] = now + self.ttl
        return nonce

    def consume(self, nonce: bytes) -> None:
        """AttestationFailed unless ``nonce`` was issued here, has not expired and was not used before."""
        expires = self._issued.pop(nonce, None)
        if expires is None:
            raise AttestationFailed("attestation nonce was not issued by this verifier or was already used",
                                    code="nonce_replayed")
        if self.clock() > expires:
            raise AttestationFailed("attestation nonce expired before the evidence arrived", code="nonce_expired")

    def _forget_expired(self, now: float) -> None:
        if len(self._issued) > 1024:
            self._issued = {n: t for n, t in self._issued.items() if t >= now}


@dataclass
class ServedRequests:
    """An enclave serves each sealed request once: its id is remembered for as long as its ``issued_at``
    (bound in the associated data) is within ``window`` seconds of the enclave's clock, and a request outside
    that window is refused, so the memory is bounded and a replay (by the gateway that relayed it, say) is
    refused however late it comes."""

    window: float = 120.0
    _served: dict[str, float] = field(default_factory=dict)  # request id -> when it can be forgotten
    _prune_at: int = 4096

    def check_fresh(self, issued_at: int, now: float) -> None:
        if abs(now - issued_at) > self.window:
            raise RequestReplayed(f"sealed request was issued {now - issued_at:+.0f} s from the enclave's clock; "
                                  f"it serves requests within {self.window:g} s (check the client's clock)",
                                  code="request_expired")

    def admit(self, request_id: str, issued_at: int, now: float) -> None:
        """Remember ``request_id`` (call once the request opened); RequestReplayed when it was served before."""
        if request_id in self._served:
            raise RequestReplayed(f"sealed request {request_id} was already served (replayed)")
        self._served[request_id] = issued_at + self.window
        if len(self._served) > self._prune_at:
            self._served = {rid: until for rid, until in self._served.items() if until >= now}
            self._prune_at = max(4096, 2 * len(self._served))
