"""The development "software enclave": a statement signed by a pinned local Ed25519 key.

It proves nothing about hardware — only that the holder of a key you pinned vouches for the keyset — so
its claims always say ``simulated`` and policies refuse it unless they allow simulated evidence. It lets a
laptop devnet exercise every other part of confidential routing (keysets, nonces, sealing, receipts).
Quote bytes: the 64-byte signature, then the canonical JSON statement.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from veilnet.confidential.claims import PlatformClaims
from veilnet.confidential.errors import AttestationFailed
from veilnet.protocol.confidential import canonical_json

__all__ = ["dev_statement", "verify_dev"]


def dev_statement(key: Ed25519PrivateKey, report_data: bytes, measurements: dict[str, str], *,
                  debug: bool = False, issued_at: int) -> bytes:
    statement = canonical_json({"platform": "dev", "version": 1, "report_data": report_data.hex(),
                                "measurements": measurements, "debug": debug, "issued_at": issued_at})
    return key.sign(statement) + statement


def verify_dev(quote: bytes, pinned: Sequence[Ed25519PublicKey]) -> PlatformClaims:
    if not pinned:
        raise AttestationFailed("development enclave evidence, but no development enclave key is pinned",
                                code="simulated_not_allowed")
    signature, statement = quote[:64], quote[64:]
    for key in pinned:
        try:
            key.verify(signature, statement)
            break
        except InvalidSignature:
            continue
    else:
        raise AttestationFailed("development enclave statement is not signed by a pinned key",
                                code="signature_invalid")
    try:
        data: dict[str, Any] = json.loads(statement)
        return PlatformClaims(
            platform="dev", simulated=True, measurements={str(k): str(v) for k, v in data["measurements"].items()},
            tcb_status="Simulated", debug=bool(data["debug"]), report_data=bytes.fromhex(data["report_data"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AttestationFailed(f"development enclave statement is malformed: {exc}",
                                code="evidence_malformed") from exc
