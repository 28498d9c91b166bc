"""Confidential-computing errors (all derive from :class:`veilnet.errors.ConfidentialError`).

    ConfidentialError
    ├── AttestationFailed      evidence that does not verify, or claims the policy refuses (with a reason)
    │   └── EvidenceMalformed  evidence bytes that cannot be parsed (truncated, inconsistent lengths, garbage)
    ├── PrivacyRestricted      no miner with fresh verified attestation can serve the request
    ├── DecryptionFailed       a sealed request that cannot be opened (wrong key, associated data, bytes)
    │   ├── StaleKeyset        sealed to a keyset the enclave no longer holds
    │   └── RequestReplayed    a sealed request the enclave already served, or one too old (or new) to serve
    ├── ResponseTampered       response frames reordered, truncated, altered, or sent in plaintext
    └── ReceiptInvalid         a usage receipt whose signature or hashes do not match
"""

from __future__ import annotations

from typing import Literal, get_args

from veilnet.errors import ConfidentialError
from veilnet.protocol.errors import register

__all__ = [
    "ATTESTATION_REASONS",
    "AttestationFailed",
    "AttestationReason",
    "DecryptionFailed",
    "EvidenceMalformed",
    "PrivacyRestricted",
    "ReceiptInvalid",
    "RequestReplayed",
    "ResponseTampered",
    "StaleKeyset",
]


# Why evidence was refused: every refusal of evidence an untrusted party sent names one of these.
AttestationReason = Literal[
    "attestation_failed",  # generic: only where no finer reason applies (a client relaying a gateway's answer)
    "evidence_unavailable",  # the miner did not answer the challenge, or refused it
    "evidence_malformed",  # bytes that cannot be parsed: truncated, inconsistent lengths, garbage
    "unsupported_evidence",  # well-formed, but a format or version this verifier does not verify
    "nonce_replayed", "nonce_expired", "nonce_mismatch",
    "report_data_mismatch",
    "keyset_signature_invalid", "keyset_hotkey_mismatch", "model_not_attested",
    "signature_invalid",  # the report's own signature (TEE report, GPU measurement report, dev statement)
    "certificate_invalid",  # a certificate that cannot be used: not signed by its issuer, wrong key type
    "certificate_expired",  # a certificate outside its validity at the verifier's clock
    "untrusted_root", "no_trust_anchor",
    "collateral_missing", "collateral_malformed", "collateral_unavailable", "collateral_expired",
    "quote_invalid",  # dcap-qvl refused the TDX quote (its message says why)
    "tcb_mismatch",  # SEV-SNP: the report's TCB is not the one its VCEK/VLEK certifies
    "chip_id_mismatch",  # SEV-SNP: the report's chip is not the VCEK's
    "platform_not_accepted", "simulated_not_allowed", "debug_forbidden", "tcb_outdated",
    "unknown_measurement", "gpu_required", "vmpl_not_allowed", "service_td_not_allowed",
    "device_not_gpu",  # NVIDIA evidence from a device that is not a GPU (an NVSwitch)
    "gpu_model_not_accepted",
    "verifier_error",  # the last resort at the EvidenceVerifier boundary: a verifier bug, still a refusal
]
ATTESTATION_REASONS: frozenset[str] = frozenset(get_args(AttestationReason))


class AttestationFailed(ConfidentialError):
    """Evidence refused; ``code`` is the :data:`AttestationReason`."""

    code = "attestation_failed"

    def __init__(self, message: str, *, code: AttestationReason | None = None) -> None:
        super().__init__(message, code=code)


class EvidenceMalformed(AttestationFailed):
    code = "evidence_malformed"


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
register(AttestationFailed, 502, "upstream_error", codes=ATTESTATION_REASONS)  # a client tries another miner
register(PrivacyRestricted, 404, "not_found_error")
register(DecryptionFailed, 400, "invalid_request_error")
register(StaleKeyset, 400, "invalid_request_error")
register(RequestReplayed, 400, "invalid_request_error")
register(ResponseTampered, 502, "upstream_error")
register(ReceiptInvalid, 502, "upstream_error")
