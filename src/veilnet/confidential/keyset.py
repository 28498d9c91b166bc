"""Binding a keyset to an attestation: the report_data formula and the hotkey's signature over the digest."""

from __future__ import annotations

import hashlib

from bittensor_wallet import Keypair

from veilnet.confidential.errors import AttestationFailed
from veilnet.protocol.confidential import Keyset

__all__ = ["gpu_nonce_for", "report_data_for", "sign_keyset", "verify_keyset_signature"]

_REPORT_DATA_DOMAIN = b"veilnet-attestation-v1"
_GPU_NONCE_DOMAIN = b"veilnet-gpu-v1"
_SIGNATURE_DOMAIN = "veilnet-keyset-v1:"


def report_data_for(keyset_digest: bytes, nonce: bytes) -> bytes:
    """The 64 bytes an enclave puts in its TEE report: SHA-512(domain ‖ keyset digest ‖ verifier nonce)."""
    return hashlib.sha512(_REPORT_DATA_DOMAIN + keyset_digest + nonce).digest()


def gpu_nonce_for(keyset_digest: bytes, nonce: bytes) -> bytes:
    """The 32-byte nonce an enclave asks its GPUs to sign: binds GPU evidence to the same challenge."""
    return hashlib.sha256(_GPU_NONCE_DOMAIN + keyset_digest + nonce).digest()


def _signed_message(keyset: Keyset) -> bytes:
    return (_SIGNATURE_DOMAIN + keyset.digest().hex()).encode()


def sign_keyset(keyset: Keyset, hotkey: Keypair) -> Keyset:
    """The keyset with ``hotkey``'s signature; the keyset must name that hotkey."""
    if keyset.hotkey != hotkey.ss58_address:
        raise ValueError(f"keyset names {keyset.hotkey}, not the signing hotkey {hotkey.ss58_address}")
    return keyset.model_copy(update={"hotkey_signature": "0x" + bytes(hotkey.sign(_signed_message(keyset))).hex()})


def verify_keyset_signature(keyset: Keyset) -> None:
    """AttestationFailed unless the keyset's own hotkey signed its digest (an enclave cannot be borrowed)."""
    try:
        signature = bytes.fromhex(keyset.hotkey_signature.removeprefix("0x"))
        ok = Keypair(ss58_address=keyset.hotkey).verify(_signed_message(keyset), signature)
    except (ValueError, TypeError) as exc:
        raise AttestationFailed(f"keyset signature by {keyset.hotkey} is malformed: {exc}",
                                code="keyset_signature_invalid") from exc
    if not ok:
        raise AttestationFailed(f"keyset is not signed by its hotkey {keyset.hotkey}", code="keyset_signature_invalid")
