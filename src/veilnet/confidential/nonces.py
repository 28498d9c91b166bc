"""Verifier nonces: fresh, single use, short-lived."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from veilnet.confidential.errors import AttestationFailed

__all__ = ["NonceBook"]


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
