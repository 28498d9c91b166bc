"""Asking a miner for attestation evidence over its signed HTTP API (the HTTP session is the caller's)."""

from __future__ import annotations

import json

import aiohttp
from bittensor_wallet import Keypair
from pydantic import ValidationError

from veilnet.confidential.errors import AttestationFailed
from veilnet.protocol import paths
from veilnet.protocol.confidential import AttestationChallenge, Evidence
from veilnet.protocol.epistula import sign_request

__all__ = ["ATTESTATION_PATH", "fetch_evidence"]

ATTESTATION_PATH = paths.ATTESTATION


async def fetch_evidence(http: aiohttp.ClientSession, keypair: Keypair, url: str, hotkey: str, nonce: bytes,
                         *, timeout: float = 30.0) -> Evidence:
    """POST the challenge to the miner at ``url`` (signed by ``keypair`` for ``hotkey``) and parse its evidence."""
    body = AttestationChallenge(nonce=nonce.hex()).model_dump_json().encode()
    headers = sign_request(keypair, body, hotkey)
    headers["Content-Type"] = "application/json"
    try:
        async with http.post(f"{url}{ATTESTATION_PATH}", data=body, headers=headers,
                             timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            data = await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise AttestationFailed(f"miner {hotkey[:8]}… did not answer the attestation challenge: {exc}",
                                code="evidence_unavailable") from exc
    if status != 200:
        raise AttestationFailed(f"miner {hotkey[:8]}… refused the attestation challenge (HTTP {status}): "
                                f"{data[:200].decode(errors='replace')}", code="evidence_unavailable")
    try:
        return Evidence.model_validate(json.loads(data))
    except (ValueError, ValidationError) as exc:
        raise AttestationFailed(f"miner {hotkey[:8]}… sent malformed evidence: {exc}",
                                code="evidence_malformed") from exc
