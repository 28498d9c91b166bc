"""The gateway's confidential routing: keeping miners' attestations fresh, choosing attested miners, listing
them for clients and relaying clients' challenges. Plain functions over the parts they use."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import aiohttp
from bittensor_wallet import Keypair

from veilnet import cancelling
from veilnet.confidential.challenge import fetch_evidence
from veilnet.confidential.errors import AttestationFailed, PrivacyRestricted
from veilnet.confidential.sessions import AttestedMiner, AttestedSessions
from veilnet.gateway.directory import MinerDirectory
from veilnet.protocol.confidential import Evidence
from veilnet.protocol.gateway import ConfidentialMiner, ConfidentialMinerList, Pricing
from veilnet.protocol.openai import AttestationPreferences

__all__ = [
    "AttestationParts",
    "attest_forever",
    "attested_for",
    "attested_miners",
    "fetch_miner_evidence",
    "refresh_attestations",
]

log = logging.getLogger(__name__)


class AttestationParts(Protocol):
    """What keeping attestations fresh needs (a :class:`~veilnet.gateway.service.GatewayContext` has it)."""

    @property
    def attestations(self) -> AttestedSessions | None: ...

    @property
    def directory(self) -> MinerDirectory: ...

    @property
    def http(self) -> aiohttp.ClientSession: ...

    @property
    def keypair(self) -> Keypair: ...


async def fetch_miner_evidence(parts: AttestationParts, hotkey: str, nonce: bytes) -> Evidence:
    url = parts.directory.confidential_miners().get(hotkey)
    if url is None:
        raise PrivacyRestricted(f"miner {hotkey} does not offer confidential serving", code="privacy_restricted")
    return await fetch_evidence(parts.http, parts.keypair, url, hotkey, nonce)


async def refresh_attestations(parts: AttestationParts, *, margin: float = 60.0) -> dict[str, str]:
    """Challenge every miner offering confidential serving whose attestation is missing or expires within
    ``margin`` seconds; returns hotkey -> failure reason for those that did not verify (they get no
    confidential traffic until they do)."""
    sessions = parts.attestations
    if sessions is None:
        return {}
    now = sessions.verifier.clock()
    failures: dict[str, str] = {}

    async def one(hotkey: str) -> None:
        current = sessions.get(hotkey)
        if current is not None and current.claims.expires_at - now > margin:
            return
        sessions.forget(hotkey)
        try:
            await sessions.ensure(hotkey, lambda nonce: fetch_miner_evidence(parts, hotkey, nonce))
        except (AttestationFailed, PrivacyRestricted) as exc:
            failures[hotkey] = exc.message
            log.warning("miner attestation failed", extra={"miner": hotkey, "reason": exc.message})

    offering = parts.directory.confidential_miners()
    await asyncio.gather(*(one(h) for h in offering))
    for hotkey in [m.hotkey for m in sessions.fresh()]:
        if hotkey not in offering:
            sessions.forget(hotkey)
    return failures


async def attest_forever(parts: AttestationParts, interval: float = 30.0) -> None:
    while True:
        cancelling.raise_if_stopping()
        try:
            await refresh_attestations(parts)
        except Exception:  # keep the last verified set; the failure is logged
            log.warning("attestation refresh failed", exc_info=True)
        await asyncio.sleep(interval)


def _policy_version(policy_id: str) -> int:
    try:
        return int(policy_id.rsplit("@", 1)[1])
    except (IndexError, ValueError):
        return 0


def attested_for(sessions: AttestedSessions | None, hotkey: str, model: str,
                 prefs: AttestationPreferences | None) -> AttestedMiner | None:
    """The miner's fresh attestation when it covers ``model`` and meets the request's attestation preferences."""
    if sessions is None:
        return None
    miner = sessions.get(hotkey)
    if miner is None or model not in miner.claims.models:
        return None
    if prefs is not None:
        if prefs.platforms is not None and miner.claims.platform not in prefs.platforms:
            return None
        if prefs.gpu_required and not miner.claims.gpu_attested:
            return None
        if prefs.policy_version is not None and _policy_version(miner.claims.policy_id) < prefs.policy_version:
            return None
    return miner


def attested_miners(sessions: AttestedSessions | None, directory: MinerDirectory, scores: dict[str, float],
                    model: str | None) -> ConfidentialMinerList:
    """The miners this gateway verified attestation for that serve ``model`` (any model when None), best
    scored first, with the price of the first model each serves."""
    if sessions is None:
        return ConfidentialMinerList(data=[])
    offers = {(o.hotkey, o.model): o for o in directory.offers}
    data = []
    for miner in sessions.fresh():
        served = [m for m in miner.claims.models if (miner.hotkey, m) in offers and (model is None or m == model)]
        if not served:
            continue
        offer, claims = offers[(miner.hotkey, served[0])], miner.claims
        data.append(ConfidentialMiner(
            miner=miner.hotkey, models=claims.models, platform=claims.platform, simulated=claims.simulated,
            gpu_attested=claims.gpu_attested, tcb_status=claims.tcb_status, policy_id=claims.policy_id,
            keyset_digest=claims.keyset_digest, expires_at=claims.expires_at,
            price=Pricing(prompt=offer.price_input / 1e6, completion=offer.price_output / 1e6),
            score=scores.get(miner.hotkey, 0.0)))
    data.sort(key=lambda d: -d.score)
    return ConfidentialMinerList(data=data)
