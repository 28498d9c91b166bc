"""Usage receipts: the enclave signs what it served (tokens, model, price, ciphertext hashes) with its
receipt key, so gateways and validators bill from a statement they can check rather than from plaintext."""

from __future__ import annotations

import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.exceptions import CryptoError

from veilnet.confidential.errors import ReceiptInvalid
from veilnet.confidential.sealing import KeysetKeys
from veilnet.protocol.confidential import UsageReceipt

__all__ = ["sign_receipt", "verify_receipt"]


def sign_receipt(key: Ed25519PrivateKey, receipt: UsageReceipt) -> UsageReceipt:
    return receipt.model_copy(update={"signature": key.sign(receipt.signed_bytes()).hex()})


def verify_receipt(receipt: UsageReceipt, keys: KeysetKeys, *, request_id: str, request_sha256: str,
                   response_sha256: str, model: str, max_age_seconds: float = 3600.0,
                   now: float | None = None) -> None:
    """ReceiptInvalid unless the attested enclave signed this receipt for exactly this exchange."""
    try:
        keys.receipt_public_key.verify(receipt.signed_bytes(), bytes.fromhex(receipt.signature))
    except (ValueError, CryptoError) as exc:
        raise ReceiptInvalid("usage receipt is not signed by the attested enclave's receipt key") from exc
    expected = {"request_id": request_id, "request_sha256": request_sha256, "response_sha256": response_sha256,
                "model": model, "miner": keys.hotkey, "keyset_digest": keys.digest_hex}
    for name, value in expected.items():
        if getattr(receipt, name) != value:
            raise ReceiptInvalid(f"usage receipt {name} is {getattr(receipt, name)!r}, expected {value!r}")
    if abs((time.time() if now is None else now) - receipt.issued_at) > max_age_seconds:
        raise ReceiptInvalid("usage receipt is too old or from the future")
