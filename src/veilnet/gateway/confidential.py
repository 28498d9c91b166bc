"""The gateway's confidential routing: keeping miners' attestations fresh, choosing attested miners,
and relaying client challenges. Plain functions over a :class:`GatewayContext`."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from veilnet.confidential.challenge import fetch_evidence
from veilnet.confidential.errors import AttestationFailed, PrivacyRestricted
from veilnet.confidential.sessions import AttestedMiner
from veilnet.protocol.confidential import Evidence
from veilnet.protocol.openai import AttestationPreferences

if TYPE_CHECKING:
    from veilnet.gateway.service import GatewayContext

__all__ = [
    "attest_forever",
    "attested_for",
    "describe",
    "fetch_miner_evidence",
    "refresh_attestations",
]

log = logging.getLogger(__name__)


async def fetch_miner_evidence(ctx: GatewayContext, hotkey: str, nonce: bytes) -> Evidence:
    url = ctx.directory.confidential_miners().get(hotkey)
    if url is None:
        raise PrivacyRestricted(f"miner {hotkey} does not offer confidential serving", code="privacy_restricted")
    return await fetch_evidence(ctx.http, ctx.keypair, url, hotkey, nonce)


async def refresh_attestations(ctx: GatewayContext, *, margin: float = 60.0) -> dict[str, str]:
    """Challenge every miner offering confidential serving whose attestation is missing or expires within
    ``margin`` seconds; returns hotkey -> failure reason for those that did not verify (they get no
    confidential traffic until they do)."""
    sessions = ctx.attestations
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
            await sessions.ensure(hotkey, lambda nonce: fetch_miner_evidence(ctx, hotkey, nonce))
        except (AttestationFailed, PrivacyRestricted) as exc:
            failures[hotkey] = exc.message
            log.warning("miner attestation failed", extra={"miner": hotkey, "reason": exc.message})

    await asyncio.gather(*(one(h) for h in ctx.directory.confidential_miners()))
    for hotkey in [m.hotkey for m in sessions.fresh()]:
        if hotkey not in ctx.directory.confidential_miners():
            sessions.forget(hotkey)
    return failures


async def attest_forever(ctx: GatewayContext, interval: float = 30.0) -> None:
    while True:
        try:
            await refresh_attestations(ctx)
        except Exception:  # keep the last verified set; the failure is logged
            log.warning("attestation refresh failed", exc_info=True)
        await asyncio.sleep(interval)


def _policy_version(policy_id: str) -> int:
    try:
        return int(policy_id.rsplit("@", 1)[1])
    except (IndexError, ValueError):
        return 0


def attested_for(ctx: GatewayContext, hotkey: str, model: str,
                 prefs: AttestationPreferences | None) -> AttestedMiner | None:
    """The miner's fresh attestation when it covers ``model`` and meets the request's attestation preferences."""
    if ctx.attestations is None:
        return None
    miner = ctx.attestations.get(hotkey)
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


def describe(miner: AttestedMiner, offer: dict[str, Any]) -> dict[str, Any]:
    claims = miner.claims
    return {"miner": miner.hotkey, "models": claims.models, "platform": claims.platform,
            "simulated": claims.simulated, "gpu_attested": claims.gpu_attested, "tcb_status": claims.tcb_status,
            "policy_id": claims.policy_id, "keyset_digest": claims.keyset_digest, "expires_at": claims.expires_at,
            **offer}
