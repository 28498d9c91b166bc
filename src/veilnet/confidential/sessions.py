"""Verified attestations kept per miner until they expire: attestation is verified once per session,
not once per request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from veilnet.confidential.claims import VerifiedClaims
from veilnet.confidential.sealing import KeysetKeys
from veilnet.confidential.verifiers import EvidenceVerifier
from veilnet.protocol.confidential import Evidence, Keyset

__all__ = ["AttestedMiner", "AttestedSessions"]


@dataclass(frozen=True)
class AttestedMiner:
    keyset: Keyset
    claims: VerifiedClaims
    # parsed once per session, not per request (AttestationFailed if unusable)
    keys: KeysetKeys = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", KeysetKeys.of(self.keyset))

    @property
    def hotkey(self) -> str:
        return self.keyset.hotkey


@dataclass
class AttestedSessions:
    verifier: EvidenceVerifier
    _miners: dict[str, AttestedMiner] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def get(self, hotkey: str) -> AttestedMiner | None:
        """The miner's verified attestation while it is fresh, else None."""
        miner = self._miners.get(hotkey)
        if miner is not None and not miner.claims.fresh(self.verifier.clock()):
            del self._miners[hotkey]
            return None
        return miner

    def fresh(self) -> list[AttestedMiner]:
        fresh = [self.get(hotkey) for hotkey in list(self._miners)]
        return [miner for miner in fresh if miner is not None]

    def forget(self, hotkey: str) -> None:
        self._miners.pop(hotkey, None)

    async def ensure(self, hotkey: str, fetch: Callable[[bytes], Awaitable[Evidence]],
                     *, model: str | None = None) -> AttestedMiner:
        """The cached attestation, or a fresh challenge: ``fetch(nonce)`` returns the miner's evidence.
        Concurrent callers for one miner share a single challenge. AttestationFailed when it does not verify."""
        cached = self.get(hotkey)
        if cached is not None and (model is None or model in cached.claims.models):
            return cached
        lock = self._locks.setdefault(hotkey, asyncio.Lock())
        async with lock:
            cached = self.get(hotkey)
            if cached is not None and (model is None or model in cached.claims.models):
                return cached
            self._miners.pop(hotkey, None)
            nonce = self.verifier.challenge()
            evidence = await fetch(nonce)
            claims = await self.verifier.verify(evidence, nonce, hotkey=hotkey, model=model)
            miner = AttestedMiner(evidence.keyset, claims)
            self._miners[hotkey] = miner
            return miner
