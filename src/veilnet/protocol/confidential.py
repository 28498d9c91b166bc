"""Wire models of confidential routing: keysets, attestation evidence, sealed requests, frames, receipts.

Only pydantic and the standard library. Bytes travel as standard base64 without newlines. Everything
here is public (no plaintext prompt or key material ever appears in these models); the logic that creates
and checks them lives in :mod:`veilnet.confidential`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator

__all__ = [
    "ENCRYPTION_SCHEME",
    "AttestationChallenge",
    "AttestationRelayRequest",
    "B64Bytes",
    "ConfidentialRelayRequest",
    "Evidence",
    "GpuEvidence",
    "Keyset",
    "ModelMeasurement",
    "Platform",
    "SealedFrame",
    "SealedRequest",
    "SealedResponse",
    "UsageReceipt",
    "canonical_json",
]

#: The value of ``X-Veilnet-Encryption`` on sealed requests and their responses.
ENCRYPTION_SCHEME = "hpke-v1"

Platform = Literal["tdx", "sev-snp", "dev"]


def _b64decode(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64: {exc}") from exc


B64Bytes = Annotated[
    bytes,
    PlainValidator(_b64decode),
    PlainSerializer(lambda b: base64.b64encode(b).decode(), return_type=str, when_used="json"),
]

_HEX64 = r"^[0-9a-f]{64}$"


def canonical_json(data: Any) -> bytes:
    """The one byte form that is hashed and signed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelMeasurement(_Strict):
    id: str = Field(min_length=1)
    weights_sha256: str = Field(pattern=_HEX64)


class Keyset(_Strict):
    """What a miner enclave publishes. Its digest goes into the TEE report_data (with a verifier nonce),
    and the miner's hotkey signs the digest, so the keys cannot be swapped or the enclave borrowed."""

    version: Literal[1] = 1
    hotkey: str = Field(min_length=1)
    hpke_public_key: B64Bytes  # X25519, 32 bytes: requests are sealed to it
    receipt_public_key: B64Bytes  # Ed25519, 32 bytes: usage receipts are signed with it
    models: list[ModelMeasurement] = Field(min_length=1)
    code_sha256: str = Field(pattern=_HEX64)  # the serving code
    created_at: int  # unix seconds
    hotkey_signature: str = ""  # sr25519 over "veilnet-keyset-v1:" + digest hex, by ``hotkey``

    def digest(self) -> bytes:
        """SHA-256 of the canonical JSON of every field but the hotkey signature. Computed every time on
        purpose: a cached value would survive ``model_copy(update=...)`` and vouch for changed keys."""
        return hashlib.sha256(canonical_json(self.model_dump(mode="json", exclude={"hotkey_signature"}))).digest()

    def model(self, model_id: str) -> ModelMeasurement | None:
        return next((m for m in self.models if m.id == model_id), None)


class GpuEvidence(_Strict):
    """An NVIDIA SPDM measurement report and the PEM certificate chain of its attestation key (leaf first)."""

    report: B64Bytes
    certificate_chain: str


class Evidence(_Strict):
    """What an enclave answers to an attestation challenge."""

    platform: Platform
    quote: B64Bytes  # TDX quote, SEV-SNP report, or the dev enclave's signed statement
    collateral: dict[str, Any] | None = None  # TDX: dcap-qvl collateral JSON (else the verifier fetches it)
    certificate_chain: str | None = None  # SEV-SNP: VCEK (and ASK) PEM, leaf first
    gpu: list[GpuEvidence] = Field(default_factory=list)
    keyset: Keyset


class AttestationChallenge(_Strict):
    nonce: str = Field(pattern=_HEX64)  # 32 fresh random bytes chosen by the verifier


class SealedRequest(_Strict):
    """An OpenAI request sealed with HPKE to an attested keyset. The gateway reads only these fields."""

    version: Literal["hpke-v1"] = "hpke-v1"
    endpoint: Literal["chat.completions", "completions"]
    model: str = Field(min_length=1)
    stream: bool = False
    request_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    issued_at: int = Field(ge=0)  # the sender's Unix time: an enclave serves a request once, and only when fresh
    keyset_digest: str = Field(pattern=_HEX64)
    enc: B64Bytes  # the HPKE encapsulated key
    ciphertext: B64Bytes

    def associated_data(self) -> bytes:
        """Everything the gateway can see is bound to the ciphertext: change one and it will not open."""
        return canonical_json(self.model_dump(mode="json", exclude={"enc", "ciphertext"}))

    def ciphertext_sha256(self) -> str:
        return hashlib.sha256(self.enc + self.ciphertext).hexdigest()


class SealedFrame(_Strict):
    seq: int = Field(ge=0)
    final: bool = False
    ct: B64Bytes


class UsageReceipt(_Strict):
    """Signed by the enclave's receipt key: what was served and what it costs, with no plaintext."""

    version: Literal[1] = 1
    request_id: str
    miner: str
    model: str
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    price_input_per_million: float = Field(ge=0)
    price_output_per_million: float = Field(ge=0)
    request_sha256: str = Field(pattern=_HEX64)
    response_sha256: str = Field(pattern=_HEX64)
    keyset_digest: str = Field(pattern=_HEX64)
    simulated: bool
    issued_at: int
    signature: str = ""

    def signed_bytes(self) -> bytes:
        return canonical_json(self.model_dump(mode="json", exclude={"signature"}))

    @property
    def cost_usd(self) -> float:
        return (self.prompt_tokens * self.price_input_per_million
                + self.completion_tokens * self.price_output_per_million) / 1_000_000


class SealedResponse(_Strict):
    """A sealed non-streaming answer: one final frame and the receipt."""

    object: Literal["veilnet.sealed_response"] = "veilnet.sealed_response"
    request_id: str
    frames: list[SealedFrame] = Field(min_length=1)
    receipt: UsageReceipt


class ConfidentialRelayRequest(_Strict):
    """What a client sends the gateway: the sealed request and the attested miner it is sealed to."""

    miner: str = Field(min_length=1)
    sealed: SealedRequest


class AttestationRelayRequest(_Strict):
    """A client's challenge, relayed by the gateway to one miner."""

    miner: str = Field(min_length=1)
    nonce: str = Field(pattern=_HEX64)
