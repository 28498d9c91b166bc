"""Confidential routing: attestation (evidence, verifiers, policy), sealing (HPKE requests, ordered
authenticated response frames), signed usage receipts, and the miner's enclave. No web framework here;
services call these functions (see docs/confidential.md)."""

from veilnet.confidential.challenge import ATTESTATION_PATH, fetch_evidence
from veilnet.confidential.claims import GpuClaims, PlatformClaims, VerifiedClaims
from veilnet.confidential.configfs import AmdKds, ConfigfsTsmProvider, certificates_from_table
from veilnet.confidential.enclave import (
    DevEnclaveProvider,
    Enclave,
    EvidenceProvider,
    dev_public_key_hex,
    file_sha256,
    load_or_create_dev_key,
    serving_code_sha256,
)
from veilnet.confidential.errors import (
    ATTESTATION_REASONS,
    AttestationFailed,
    AttestationReason,
    DecryptionFailed,
    EvidenceMalformed,
    PrivacyRestricted,
    ReceiptInvalid,
    RequestReplayed,
    ResponseTampered,
    StaleKeyset,
)
from veilnet.confidential.exchange import ReceiptWitness, SealedExchange, parse_stream_line
from veilnet.confidential.gpu import NvmlGpuEvidence
from veilnet.confidential.keyset import gpu_nonce_for, report_data_for, sign_keyset, verify_keyset_signature
from veilnet.confidential.nonces import NonceBook
from veilnet.confidential.policy import GpuRule, MeasurementPolicy, PlatformRule, load_policy
from veilnet.confidential.receipts import sign_receipt, verify_receipt
from veilnet.confidential.sealing import (
    EnclaveKeyPair,
    KeysetKeys,
    RequestOpener,
    ResponseOpener,
    ResponseSealer,
    open_request,
    seal_request,
)
from veilnet.confidential.sessions import AttestedMiner, AttestedSessions
from veilnet.confidential.verifiers import EvidenceVerifier, TdxCollateralSource, TrustAnchors

__all__ = [
    "ATTESTATION_PATH",
    "ATTESTATION_REASONS",
    "AmdKds",
    "AttestationFailed",
    "AttestationReason",
    "AttestedMiner",
    "AttestedSessions",
    "ConfigfsTsmProvider",
    "DecryptionFailed",
    "DevEnclaveProvider",
    "Enclave",
    "EnclaveKeyPair",
    "EvidenceMalformed",
    "EvidenceProvider",
    "EvidenceVerifier",
    "GpuClaims",
    "GpuRule",
    "KeysetKeys",
    "MeasurementPolicy",
    "NonceBook",
    "NvmlGpuEvidence",
    "PlatformClaims",
    "PlatformRule",
    "PrivacyRestricted",
    "ReceiptInvalid",
    "ReceiptWitness",
    "RequestOpener",
    "RequestReplayed",
    "ResponseOpener",
    "ResponseSealer",
    "ResponseTampered",
    "SealedExchange",
    "StaleKeyset",
    "TdxCollateralSource",
    "TrustAnchors",
    "VerifiedClaims",
    "certificates_from_table",
    "dev_public_key_hex",
    "fetch_evidence",
    "file_sha256",
    "gpu_nonce_for",
    "load_or_create_dev_key",
    "load_policy",
    "open_request",
    "parse_stream_line",
    "report_data_for",
    "seal_request",
    "serving_code_sha256",
    "sign_keyset",
    "sign_receipt",
    "verify_keyset_signature",
    "verify_receipt",
]
