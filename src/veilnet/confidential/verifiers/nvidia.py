"""NVIDIA GPU evidence: an SPDM GET_MEASUREMENTS response signed by the GPU's attestation key.

The report is the SPDM request (whose bytes 4..36 are the verifier's 32-byte nonce) followed by the
response; its last 96 bytes are the ECDSA-P384 signature (r ‖ s, big-endian) over everything before,
with SHA-384. The attestation key's certificate chain must end at a pinned NVIDIA root.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veilnet.confidential.errors import AttestationFailed
from veilnet.confidential.verifiers.x509chain import load_certificates, verify_chain

__all__ = ["verify_nvidia_gpu"]

_NONCE = slice(4, 36)
_SIGNATURE_BYTES = 96


def verify_nvidia_gpu(report: bytes, certificate_chain: bytes, expected_nonce: bytes,
                      anchors: Sequence[x509.Certificate], now: float) -> None:
    """AttestationFailed unless the report is signed by a GPU chained to NVIDIA and answers ``expected_nonce``."""
    if len(report) < 36 + _SIGNATURE_BYTES:
        raise AttestationFailed(f"GPU report is too short ({len(report)} bytes)")
    chain = load_certificates(certificate_chain)
    verify_chain(chain, anchors, now, what="GPU attestation key")
    key = chain[0].public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise AttestationFailed("GPU attestation key is not a P-384 key")
    signature = report[-_SIGNATURE_BYTES:]
    r, s = int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big")
    try:
        key.verify(encode_dss_signature(r, s), report[:-_SIGNATURE_BYTES], ec.ECDSA(hashes.SHA384()))
    except InvalidSignature as exc:
        raise AttestationFailed("GPU measurement report signature does not verify", code="signature_invalid") from exc
    if not hmac.compare_digest(report[_NONCE], expected_nonce):
        raise AttestationFailed("GPU evidence answers another nonce (not this challenge)", code="nonce_mismatch")
