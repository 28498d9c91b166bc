"""Confidential-computing errors (all derive from :class:`veilnet.errors.ConfidentialError`).

    ConfidentialError
    ├── AttestationFailed      evidence that does not verify, or claims the policy refuses (with a reason)
    ├── PrivacyRestricted      no miner with fresh verified attestation can serve the request
    ├── DecryptionFailed       a sealed request that cannot be opened (wrong key, associated data, bytes)
    │   ├── StaleKeyset        sealed to a keyset the enclave no longer holds
    │   └── RequestReplayed    a sealed request the enclave already served, or one too old (or new) to serve
    ├── ResponseTampered       response frames reordered, truncated, altered, or sent in plaintext
    └── ReceiptInvalid         a usage receipt whose signature or hashes do not match
"""

from __future__ import annotations

from veilnet.errors import ConfidentialError
from veilnet.protocol.errors import register

__all__ = [
    "AttestationFailed",
    "DecryptionFailed",
    "PrivacyRestricted",
    "ReceiptInvalid",
    "RequestReplayed",
    "ResponseTampered",
    "StaleKeyset",
]


class AttestationFailed(ConfidentialError):
    code = "attestation_failed"


class PrivacyRestricted(ConfidentialError):
    code = "privacy_restricted"


class DecryptionFailed(ConfidentialError):
    code = "decryption_failed"


class StaleKeyset(DecryptionFailed):
    code = "stale_keyset"


class RequestReplayed(DecryptionFailed):
    code = "request_replayed"


class ResponseTampered(ConfidentialError):
    code = "response_tampered"


class ReceiptInvalid(ConfidentialError):
    code = "receipt_invalid"


# how they travel (veilnet.protocol.errors): a refused or tampered answer is the upstream's failure (502);
# a request that cannot be opened is the sender's (400); no attested miner is "nothing serves this" (404)
register(AttestationFailed, 502, "upstream_error")
register(PrivacyRestricted, 404, "not_found_error")
register(DecryptionFailed, 400, "invalid_request_error")
register(StaleKeyset, 400, "invalid_request_error")
register(RequestReplayed, 400, "invalid_request_error")
register(ResponseTampered, 502, "upstream_error")
register(ReceiptInvalid, 502, "upstream_error")
